use super::*;

const NOW_MS: u64 = 1_780_000_000_000;

fn request(json: &str) -> JobRequest {
    serde_json::from_str(json).expect("test request parses")
}

#[track_caller]
fn check_err(json: &str, expect: &str) {
    let err = request(json)
        .validate(Catalog::built_in_as_once_sold(), NOW_MS)
        .unwrap_err();
    assert_eq!(err.to_string(), expect);
}

#[test]
fn the_built_in_sora_rows_are_refused_naming_their_successors_and_unknown_models_list_live_ones() {
    let refused = |json: &str| {
        request(json)
            .validate(Catalog::built_in(), NOW_MS)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        refused(r#"{"provider":"openai","model":"sora-2","prompt":"p"}"#),
        "model: model sora-2 of openai is retired since 2026-09-24"
    );
    assert_eq!(
        refused(r#"{"provider":"kie","model":"sora-2-text-to-video","prompt":"p"}"#),
        "model: model sora-2-text-to-video of kie is paused; use bytedance/seedance-2"
    );
    assert_eq!(
        refused(r#"{"provider":"kie","model":"sora-3","prompt":"p"}"#),
        r#"model: unknown model "sora-3" for provider kie (known: kling-3.0/video, bytedance/seedance-2, wan/2-6-text-to-video, hailuo/2-3-image-to-video-pro)"#
    );
    for rule in Catalog::built_in().models() {
        if rule.model.starts_with("sora-") {
            assert!(
                !rule.status.takes_jobs(),
                "{} of {}",
                rule.model,
                rule.provider
            );
        }
    }
}

#[test]
fn defaults_come_from_the_model_rule() {
    let spec = request(r#"{"provider":"kie","model":"sora-2-text-to-video","prompt":"a cat"}"#)
        .validate(Catalog::built_in_as_once_sold(), NOW_MS)
        .unwrap();
    assert_eq!(spec.duration_s, 10);
    assert_eq!(spec.aspect, Aspect::Landscape);
    assert_eq!(spec.quality, Quality::Standard);
    assert_eq!(spec.deadline_ms, None);
}

#[test]
fn bad_requests_name_the_field_and_the_allowed_values() {
    check_err(
        r#"{"provider":"sora","model":"m","prompt":"p"}"#,
        r#"provider: unknown provider "sora" (known: kie, acedata, evolink, openai, replicate, gemini, fal, kling, ark, dashscope)"#,
    );
    check_err(
        r#"{"provider":"kie","model":"sora-3","prompt":"p"}"#,
        r#"model: unknown model "sora-3" for provider kie (known: kling-3.0/video, bytedance/seedance-2, wan/2-6-text-to-video, hailuo/2-3-image-to-video-pro, sora-2-text-to-video, sora-2-pro-text-to-video, sora-2-image-to-video, sora-2-pro-image-to-video)"#,
    );
    check_err(
        r#"{"provider":"kie","model":"sora-2-text-to-video"}"#,
        "prompt: is required",
    );
    check_err(
        r#"{"provider":"kie","model":"sora-2-text-to-video","prompt":"  "}"#,
        "prompt: must not be empty",
    );
    check_err(
        r#"{"provider":"kie","model":"sora-2-text-to-video","prompt":"p","duration_s":12}"#,
        r#"duration_s: 12 is not allowed for kie model "sora-2-text-to-video" (allowed: 10, 15)"#,
    );
    check_err(
        r#"{"provider":"kie","model":"sora-2-text-to-video","prompt":"p","aspect":"square"}"#,
        r#"aspect: "square" is not allowed for kie model "sora-2-text-to-video" (allowed: landscape, portrait)"#,
    );
    check_err(
        r#"{"provider":"kie","model":"sora-2-image-to-video","prompt":"p"}"#,
        r#"image_urls: kie model "sora-2-image-to-video" needs exactly 1 (got 0)"#,
    );
    check_err(
        r#"{"provider":"kie","model":"sora-2-text-to-video","prompt":"p","deadline":"2020-01-01T00:00:00Z"}"#,
        r#"deadline: "2020-01-01T00:00:00Z" is in the past"#,
    );
    check_err(
        r#"{"provider":"kie","model":"sora-2-text-to-video","prompt":"p","notify_events":["job.stored"]}"#,
        "notify_events: needs a notify_url",
    );
    check_err(
        r#"{"provider":"kie","model":"sora-2-text-to-video","prompt":"p","notify_url":"https://x/h","notify_events":["job.done"]}"#,
        r#"notify_events: "job.done" is not an event (events: job.stored, job.failed, job.rejected, job.expired, job.cancelled)"#,
    );
    check_err(
        r#"{"provider":"kie","model":"sora-2-text-to-video","prompt":"p","notify_url":"ftp://x"}"#,
        r#"notify_url: "ftp://x" is not an http(s) URL"#,
    );
}

#[test]
fn an_account_is_named_apart_from_any_provider() {
    let with = |account: &str| {
        request(&format!(
            r#"{{"provider":"kie","account":"{account}","model":"sora-2-text-to-video","prompt":"p"}}"#
        ))
        .validate(Catalog::built_in_as_once_sold(), NOW_MS)
    };
    assert_eq!(
        with("kie_night").unwrap().account.unwrap().as_str(),
        "kie_night"
    );
    assert!(
        with("kie")
            .unwrap_err()
            .message
            .contains("any of its accounts")
    );
    assert!(
        with("openai")
            .unwrap_err()
            .message
            .contains("not a kie account")
    );
    assert_eq!(with("Kie Night").unwrap_err().field, "account");
}

#[test]
fn options_are_those_the_row_declares_with_values_it_takes() {
    let catalog = Catalog::built_in_as_once_sold()
        .with_file(
            r#"[[model]]
provider = "evolink"
model = "seedance"
durations = [5]
source = "s"
extra = { generate_audio = { type = "bool" }, style = { type = "choice", values = ["anime"] } }
"#,
            "models.toml",
        )
        .unwrap();
    let with = |extra: &str| {
        request(&format!(
            r#"{{"provider":"evolink","model":"seedance","prompt":"p","extra":{extra}}}"#
        ))
        .validate(&catalog, NOW_MS)
    };
    let spec = with(r#"{"generate_audio":true,"style":"anime"}"#).unwrap();
    let fields = &spec.request.as_ref().unwrap().fields;
    assert_eq!(
        (&fields["generate_audio"], &fields["style"]),
        (&true.into(), &"anime".into())
    );
    assert_eq!(fields["duration"], 5);
    let err = |extra| with(extra).unwrap_err().to_string();
    assert_eq!(
        err(r#"{"generate_audio":"yes"}"#),
        "extra: generate_audio: must be true or false"
    );
    assert_eq!(
        err(r#"{"style":"noir"}"#),
        "extra: style: must be one of anime"
    );
    assert_eq!(
        err(r#"{"seed":1}"#),
        r#"extra: "seed" is not an option of evolink model "seedance" (options: generate_audio, style)"#
    );
    let built_in = request(
        r#"{"provider":"kie","model":"sora-2-text-to-video","prompt":"p","extra":{"seed":1}}"#,
    )
    .validate(Catalog::built_in_as_once_sold(), NOW_MS)
    .unwrap_err();
    assert!(
        built_in.to_string().ends_with("(options: none)"),
        "{built_in}"
    );
}

#[test]
fn each_provider_has_its_own_durations_aspects_and_images() {
    check_err(
        r#"{"provider":"acedata","model":"sora-2","prompt":"p","duration_s":25}"#,
        r#"duration_s: 25 is not allowed for acedata model "sora-2" (allowed: 10, 15)"#,
    );
    request(r#"{"provider":"acedata","model":"sora-2-pro","prompt":"p","duration_s":25,"aspect":"portrait"}"#)
        .validate(Catalog::built_in_as_once_sold(), NOW_MS)
        .unwrap();
    check_err(
        r#"{"provider":"evolink","model":"sora-2-preview","prompt":"p","duration_s":10}"#,
        r#"duration_s: 10 is not allowed for evolink model "sora-2-preview" (allowed: 4, 8, 12)"#,
    );
    check_err(
        r#"{"provider":"acedata","model":"sora-2","prompt":"p","aspect":"square"}"#,
        r#"aspect: "square" is not allowed for acedata model "sora-2" (allowed: landscape, portrait)"#,
    );
    check_err(
        r#"{"provider":"openai","model":"sora-2","prompt":"p","quality":"high"}"#,
        r#"quality: "high" is not allowed for openai model "sora-2" (allowed: standard)"#,
    );
    check_err(
        r#"{"provider":"openai","model":"sora-2","prompt":"p","aspect":"square"}"#,
        r#"aspect: "square" is not allowed for openai model "sora-2" (allowed: landscape, portrait)"#,
    );
    check_err(
        r#"{"provider":"evolink","model":"sora-2-preview","prompt":"p","image_urls":["https://i/a.png","https://i/b.png"]}"#,
        r#"image_urls: evolink model "sora-2-preview" takes at most 1 (got 2)"#,
    );
    check_err(
        r#"{"provider":"evolink","model":"sora-2-preview","prompt":"p","image_urls":["https://i/a.gif"]}"#,
        r#"image_urls: "https://i/a.gif" is a .gif file (allowed: jpg, jpeg, png, webp)"#,
    );
    check_err(
        r#"{"provider":"evolink","model":"sora-2-preview","prompt":"p","image_urls":["data:image/png;base64,AAAA"]}"#,
        "image_urls: inline data: images are not accepted by this provider; give an http(s) URL",
    );
    request(r#"{"provider":"acedata","model":"sora-2","prompt":"p","image_urls":["data:image/webp;base64,AAAA","https://i/x?sig=1"]}"#)
        .validate(Catalog::built_in_as_once_sold(), NOW_MS)
        .unwrap();
    check_err(
        r#"{"provider":"acedata","model":"sora-2","prompt":"p","image_urls":["data:image/gif;base64,AAAA"]}"#,
        r#"image_urls: inline image type "image/gif" is not allowed (allowed: jpg, jpeg, png, webp)"#,
    );
}

#[test]
fn a_character_needs_a_model_that_builds_one_and_an_ordered_span_of_seconds() {
    let spec = request(
        r#"{"provider":"acedata","model":"sora-2","prompt":"p","character_url":"https://v/c.mp4","character_start":1,"character_end":3}"#,
    )
    .validate(Catalog::built_in_as_once_sold(), NOW_MS)
    .unwrap();
    assert_eq!(
        spec.character,
        Some(Character {
            url: "https://v/c.mp4".into(),
            start: Some(1.0),
            end: Some(3.0)
        })
    );
    check_err(
        r#"{"provider":"acedata","model":"sora-2","prompt":"p","character_url":"https://v/c.mp4","character_start":0.7,"character_end":0.6}"#,
        "character_end: 0.6 is before character_start 0.7",
    );
    check_err(
        r#"{"provider":"acedata","model":"sora-2","prompt":"p","character_url":"https://v/c.mp4","character_end":-1}"#,
        "character_end: must be a number of seconds, not negative",
    );
    check_err(
        r#"{"provider":"acedata","model":"sora-2","prompt":"p","character_start":0.1}"#,
        "character_url: is required with character_start or character_end",
    );
    check_err(
        r#"{"provider":"kie","model":"sora-2-text-to-video","prompt":"p","character_url":"https://v/c.mp4"}"#,
        r#"character_url: kie model "sora-2-text-to-video" does not build characters"#,
    );
}

#[test]
fn evolink_prompts_are_bounded_in_words_and_urls_in_length() {
    let err = JobRequest {
        provider: Some("evolink".into()),
        model: Some("sora-2-preview".into()),
        prompt: Some("w ".repeat(5001)),
        ..JobRequest::default()
    }
    .validate(Catalog::built_in_as_once_sold(), NOW_MS)
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"prompt: 5001 words is over the limit of 5000 for evolink model "sora-2-preview""#
    );
    let err = JobRequest {
        provider: Some("openai".into()),
        model: Some("sora-2".into()),
        prompt: Some("p".into()),
        notify_url: Some(format!("https://n/{}", "x".repeat(2048))),
        ..JobRequest::default()
    }
    .validate(Catalog::built_in_as_once_sold(), NOW_MS)
    .unwrap_err();
    assert_eq!(err.field, "notify_url");
}

#[test]
fn over_long_prompt_is_refused() {
    let prompt = "a".repeat(MAX_PROMPT_CHARS + 1);
    let err = JobRequest {
        provider: Some("kie".into()),
        model: Some("sora-2-text-to-video".into()),
        prompt: Some(prompt),
        ..JobRequest::default()
    }
    .validate(Catalog::built_in_as_once_sold(), NOW_MS)
    .unwrap_err();
    assert_eq!(err.field, "prompt");
}

#[test]
fn unknown_fields_are_refused_by_name() {
    let err = serde_json::from_str::<JobRequest>(
        r#"{"provider":"kie","model":"m","prompt":"p","duraton_s":10}"#,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("unknown field `duraton_s`"),
        "{err}"
    );
}

#[test]
fn future_deadline_is_kept_in_ms() {
    let spec = request(
        r#"{"provider":"kie","model":"sora-2-text-to-video","prompt":"p","deadline":"2099-01-01T00:00:00Z"}"#,
    )
    .validate(Catalog::built_in_as_once_sold(), NOW_MS)
    .unwrap();
    assert_eq!(spec.deadline_ms, Some(4_070_908_800_000));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// Whatever a producer sends, reading and validating it ends in a spec or an error
    /// naming a field, never a panic.
    #[test]
    fn no_request_panics_the_reader_or_the_validator(
        text in "[ -~]{0,200}",
        duration in proptest::option::of(proptest::prelude::any::<u32>()),
        start in proptest::option::of(proptest::prelude::any::<f64>()),
        end in proptest::option::of(proptest::prelude::any::<f64>()),
        words in "[ -~]{0,40}",
    ) {
        let _ = JobRequest::from_json(&text);
        let request = JobRequest {
            provider: Some("acedata".into()),
            model: Some("sora-2".into()),
            prompt: Some(words.clone()),
            duration_s: duration,
            aspect: Some(words.clone()),
            character_url: Some(format!("https://example.com/{words}.mp4")),
            character_start: start,
            character_end: end,
            deadline: Some(words),
            ..JobRequest::default()
        };
        if let Err(err) = request.validate(Catalog::built_in_as_once_sold(), 1_780_000_000_000) {
            proptest::prop_assert!(!err.field.is_empty());
        }
    }
}
