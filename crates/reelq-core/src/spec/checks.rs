//! The checks of a request's content against its model's row: prompt, images, character.

use super::{Character, MAX_PROMPT_CHARS};
use super::{SpecError, check_url};
use crate::catalog::{IMAGE_EXTENSIONS, ImageRule, ModelRule};

pub(super) fn check_prompt(prompt: &str, rule: &ModelRule) -> Result<(), SpecError> {
    if prompt.trim().is_empty() {
        return Err(SpecError::new("prompt", "must not be empty"));
    }
    let n_chars = prompt.chars().count();
    let max_chars = rule
        .max_prompt_chars
        .map_or(MAX_PROMPT_CHARS, |max| max.min(MAX_PROMPT_CHARS));
    if n_chars > max_chars {
        return Err(SpecError::new(
            "prompt",
            format!("{n_chars} characters is over the limit of {max_chars}"),
        ));
    }
    let n_words = prompt.split_whitespace().count();
    match rule.max_prompt_words {
        Some(max_words) if n_words > max_words => Err(SpecError::new(
            "prompt",
            format!(
                "{n_words} words is over the limit of {max_words} for {} model {:?}",
                rule.provider, rule.model
            ),
        )),
        _ => Ok(()),
    }
}

pub(super) fn check_images(image_urls: &[String], rule: &ModelRule) -> Result<(), SpecError> {
    let n_images = image_urls.len();
    let problem = match rule.images {
        ImageRule::None if n_images > 0 => Some("takes no images".to_owned()),
        ImageRule::Exactly(n) if n_images != n => Some(format!("needs exactly {n}")),
        ImageRule::AtMost(n) if n_images > n => Some(format!("takes at most {n}")),
        _ => None,
    };
    if let Some(problem) = problem {
        return Err(SpecError::new(
            "image_urls",
            format!(
                "{} model {:?} {problem} (got {n_images})",
                rule.provider, rule.model
            ),
        ));
    }
    image_urls
        .iter()
        .try_for_each(|url| check_image(url, rule.inline_images))
}

/// An image is an http(s) URL or, where the provider takes them, an inline `data:` URL; its
/// format, where the URL shows it, is one every provider documents.
fn check_image(url: &str, inline_allowed: bool) -> Result<(), SpecError> {
    let allowed = || IMAGE_EXTENSIONS.join(", ");
    if let Some(data) = url.strip_prefix("data:") {
        let mime = data.split([';', ',']).next().unwrap_or_default();
        let format = mime.strip_prefix("image/").unwrap_or_default();
        return match (inline_allowed, IMAGE_EXTENSIONS.contains(&format)) {
            (false, _) => Err(SpecError::new(
                "image_urls",
                "inline data: images are not accepted by this provider; give an http(s) URL",
            )),
            (true, false) => Err(SpecError::new(
                "image_urls",
                format!(
                    "inline image type {mime:?} is not allowed (allowed: {})",
                    allowed()
                ),
            )),
            (true, true) => Ok(()),
        };
    }
    check_url("image_urls", url)?;
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let file = path.rsplit('/').next().unwrap_or_default();
    match file.rsplit_once('.') {
        Some((_, ext)) if !IMAGE_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()) => {
            Err(SpecError::new(
                "image_urls",
                format!("{url:?} is a .{ext} file (allowed: {})", allowed()),
            ))
        }
        _ => Ok(()),
    }
}

pub(super) fn character(
    url: Option<String>,
    start: Option<f64>,
    end: Option<f64>,
    rule: &ModelRule,
) -> Result<Option<Character>, SpecError> {
    let Some(url) = url else {
        return match (start, end) {
            (None, None) => Ok(None),
            _ => Err(SpecError::new(
                "character_url",
                "is required with character_start or character_end",
            )),
        };
    };
    if !rule.character {
        return Err(SpecError::new(
            "character_url",
            format!(
                "{} model {:?} does not build characters",
                rule.provider, rule.model
            ),
        ));
    }
    check_url("character_url", &url)?;
    for (field, value) in [("character_start", start), ("character_end", end)] {
        if value.is_some_and(|v| !(v >= 0.0 && v.is_finite())) {
            return Err(SpecError::new(
                field,
                "must be a number of seconds, not negative",
            ));
        }
    }
    if let (Some(start), Some(end)) = (start, end)
        && start > end
    {
        return Err(SpecError::new(
            "character_end",
            format!("{end} is before character_start {start}"),
        ));
    }
    Ok(Some(Character { url, start, end }))
}
