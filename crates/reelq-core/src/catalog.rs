//! The model catalog: for each provider and model, which durations, aspects, qualities,
//! images and prompts a request may use (`docs/providers.md`). Adding a model is adding a row.

use crate::{
    ProviderKind,
    spec::{Aspect, Quality},
};

/// How many input images a model takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageRule {
    None,
    Exactly(usize),
    AtMost(usize),
}

/// What one model accepts. The first entry of each list is the default.
#[derive(Debug)]
pub struct ModelRule {
    pub provider: ProviderKind,
    pub model: &'static str,
    pub durations: &'static [u32],
    pub aspects: &'static [Aspect],
    pub qualities: &'static [Quality],
    pub images: ImageRule,
    /// Images may be sent inline as `data:image/...;base64,` URLs, not only as http(s) URLs.
    pub inline_images: bool,
    /// The model can build a character from a reference video (`character_url`).
    pub character: bool,
    /// The most whitespace-separated words a prompt may have, where the provider counts
    /// tokens (reelq cannot count a provider's tokens, so it counts words as a bound).
    pub max_prompt_words: Option<usize>,
}

/// Image formats every provider that takes images documents: jpeg, png, webp.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp"];

const LANDSCAPE_PORTRAIT: &[Aspect] = &[Aspect::Landscape, Aspect::Portrait];
const ALL_ASPECTS: &[Aspect] = &[Aspect::Landscape, Aspect::Portrait, Aspect::Square];
const BOTH_QUALITIES: &[Quality] = &[Quality::Standard, Quality::High];

/// A row with the fields most rows share; each constructor below fills in its provider's.
const fn row(provider: ProviderKind, model: &'static str, durations: &'static [u32]) -> ModelRule {
    ModelRule {
        provider,
        model,
        durations,
        aspects: LANDSCAPE_PORTRAIT,
        qualities: BOTH_QUALITIES,
        images: ImageRule::None,
        inline_images: false,
        character: false,
        max_prompt_words: None,
    }
}

/// kie: `n_frames` "10" | "15"; `aspect_ratio` landscape | portrait; `size` standard | high;
/// image-to-video models take exactly one image.
const fn kie(model: &'static str, images: ImageRule) -> ModelRule {
    ModelRule {
        images,
        ..row(ProviderKind::Kie, model, &[10, 15])
    }
}

/// acedata: `duration` 10 | 15 (25 for sora-2-pro); `orientation` adds square; `size`
/// small | large; reference images as URLs or base64; characters from a reference video.
const fn acedata(model: &'static str, durations: &'static [u32]) -> ModelRule {
    ModelRule {
        aspects: ALL_ASPECTS,
        // The docs do not bound the count; four keeps a request (and its base64) sane.
        images: ImageRule::AtMost(4),
        inline_images: true,
        character: true,
        ..row(ProviderKind::Acedata, model, durations)
    }
}

/// evolink: `duration` 4 | 8 | 12; `aspect_ratio` 16:9 | 9:16; `quality` 720p | 1080p; at
/// most one image; prompts of at most 5000 tokens.
const fn evolink(model: &'static str) -> ModelRule {
    ModelRule {
        images: ImageRule::AtMost(1),
        max_prompt_words: Some(5000),
        ..row(ProviderKind::Evolink, model, &[4, 8, 12])
    }
}

/// OpenAI-compatible: `seconds` "4" | "8" | "12"; `size` 1280x720 | 720x1280 (standard) or
/// 1792x1024 | 1024x1792 (high). Image input (multipart `input_reference`) is not offered.
const fn openai(model: &'static str) -> ModelRule {
    row(ProviderKind::Openai, model, &[4, 8, 12])
}

static MODELS: &[ModelRule] = &[
    kie("sora-2-text-to-video", ImageRule::None),
    kie("sora-2-pro-text-to-video", ImageRule::None),
    kie("sora-2-image-to-video", ImageRule::Exactly(1)),
    kie("sora-2-pro-image-to-video", ImageRule::Exactly(1)),
    acedata("sora-2", &[10, 15]),
    acedata("sora-2-pro", &[10, 15, 25]),
    evolink("sora-2-preview"),
    evolink("sora-2-pro-preview"),
    openai("sora-2"),
    openai("sora-2-pro"),
];

pub fn models_of(provider: ProviderKind) -> impl Iterator<Item = &'static ModelRule> {
    MODELS.iter().filter(move |rule| rule.provider == provider)
}

/// The row for `provider`'s `model`, if reelq knows it.
pub fn model_rule(provider: ProviderKind, model: &str) -> Option<&'static ModelRule> {
    models_of(provider).find(|rule| rule.model == model)
}
