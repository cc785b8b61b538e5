//! Batch manifests: one JSON [`JobRequest`] per line; blank lines and `#` comments are
//! skipped. A manifest is all or nothing: every bad line is reported, with its line number,
//! and none of its jobs is enqueued, so a fixed manifest can simply be submitted again.

use std::fmt;

use reelq_core::{Catalog, JobRequest, JobSpec};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineProblem {
    /// 1-based, as editors show it.
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    pub problems: Vec<LineProblem>,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{n} bad line{} in manifest, nothing enqueued",
            if n == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            write!(f, "\n  line {}: {}", problem.line, problem.message)?;
        }
        Ok(())
    }
}

/// Parses and validates every line; `now_ms` is the validation clock (unix ms).
pub fn parse_manifest(
    text: &str,
    catalog: &Catalog,
    now_ms: u64,
) -> Result<Vec<JobSpec>, ManifestError> {
    let lines = text.lines().enumerate().filter_map(|(line_idx, line)| {
        let line_text = line.trim();
        let skipped = line_text.is_empty() || line_text.starts_with('#');
        let request = JobRequest::from_json(line_text).map_err(|err| match err.field {
            Some(_) => err.to_string(),
            None => format!("malformed JSON: {err}"),
        });
        (!skipped).then_some((line_idx + 1, request))
    });
    validate_all(lines, catalog, now_ms)
}

/// Validates a JSON array of job requests; problems name the item (1-based) as `line`.
pub fn parse_json_batch(
    text: &str,
    catalog: &Catalog,
    now_ms: u64,
) -> Result<Vec<JobSpec>, ManifestError> {
    let items: Vec<serde_json::Value> =
        serde_json::from_str(text).map_err(|err| ManifestError {
            problems: vec![LineProblem {
                line: 0,
                message: format!("malformed JSON array: {err}"),
            }],
        })?;
    let requests = items.into_iter().enumerate().map(|(item_idx, item)| {
        let request = JobRequest::from_value(item).map_err(|err| match err.field {
            Some(_) => err.to_string(),
            None => format!("malformed job: {err}"),
        });
        (item_idx + 1, request)
    });
    validate_all(requests, catalog, now_ms)
}

/// Validates every request, collecting every problem; all or nothing.
fn validate_all(
    requests: impl Iterator<Item = (usize, Result<JobRequest, String>)>,
    catalog: &Catalog,
    now_ms: u64,
) -> Result<Vec<JobSpec>, ManifestError> {
    let mut specs = Vec::new();
    let mut problems = Vec::new();
    for (line, request) in requests {
        let checked = request.and_then(|request| {
            request
                .validate(catalog, now_ms)
                .map_err(|err| err.to_string())
        });
        match checked {
            Ok(spec) => specs.push(spec),
            Err(message) => problems.push(LineProblem { line, message }),
        }
    }
    if problems.is_empty() && specs.is_empty() {
        problems.push(LineProblem {
            line: 0,
            message: "manifest has no jobs".into(),
        });
    }
    if problems.is_empty() {
        Ok(specs)
    } else {
        Err(ManifestError { problems })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_780_000_000_000;

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let manifest = r#"# demo
{"provider":"kie","model":"kling-3.0/video","prompt":"ok"}
{"provider":"kie","model":"kling-3.0/video","prompt":"ok"
{"provider":"kie","model":"kling-3.0/video"}

{"provider":"kie","model":"kling-3.0/video","prompt":"x","duration_s":25}
"#;
        let err = parse_manifest(manifest, Catalog::built_in(), NOW_MS).unwrap_err();
        let lines: Vec<usize> = err.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [3, 4, 6]);
        assert!(
            err.problems[0]
                .message
                .starts_with("malformed JSON: EOF while parsing"),
            "{err}"
        );
        assert_eq!(err.problems[1].message, "prompt: is required");
        assert!(
            err.to_string()
                .starts_with("3 bad lines in manifest, nothing enqueued\n  line 3: ")
        );
    }

    #[test]
    fn an_empty_manifest_is_an_error() {
        let err = parse_manifest("\n# nothing\n", Catalog::built_in(), NOW_MS).unwrap_err();
        assert_eq!(err.problems[0].message, "manifest has no jobs");
    }

    #[test]
    fn good_lines_keep_their_order() {
        let manifest = "{\"provider\":\"kie\",\"model\":\"kling-3.0/video\",\"prompt\":\"a\"}\n\
                        {\"provider\":\"kie\",\"model\":\"kling-3.0/video\",\"prompt\":\"b\"}";
        let prompts: Vec<String> = parse_manifest(manifest, Catalog::built_in(), NOW_MS)
            .unwrap()
            .into_iter()
            .map(|s| s.prompt)
            .collect();
        assert_eq!(prompts, ["a", "b"]);
    }

    /// A manifest line: a valid job, one with random values in its fields, or noise.
    fn line() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let value = prop_oneof![
            Just("null".to_owned()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| serde_json::json!(f).to_string()),
            "[ -~]{0,16}".prop_map(|s| serde_json::json!(s).to_string()),
            Just("[]".to_owned()),
        ];
        let field = prop_oneof![
            Just("duration_s"),
            Just("aspect"),
            Just("quality"),
            Just("prompt"),
            Just("image_urls"),
            Just("character_start"),
            Just("notify_url"),
            Just("deadline"),
            Just("model"),
        ];
        prop_oneof![
            Just(r#"{"provider":"kie","model":"kling-3.0/video","prompt":"ok"}"#.to_owned()),
            (field, value).prop_map(|(field, value)| format!(
                r#"{{"provider":"kie","model":"kling-3.0/video","prompt":"p","{field}":{value}}}"#
            )),
            "[ -~]{0,60}",
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Never panics, and a manifest is accepted exactly when each of its lines would be
        /// on its own: one bad line refuses the whole batch, and says which.
        #[test]
        fn a_manifest_is_all_or_none(lines in proptest::collection::vec(line(), 1..12)) {
            let manifest = lines.join("\n");
            let alone: Vec<Option<bool>> = lines
                .iter()
                .map(|line| {
                    let text = line.trim();
                    (!text.is_empty() && !text.starts_with('#'))
                        .then(|| parse_manifest(text, Catalog::built_in(), NOW_MS).is_ok())
                })
                .collect();
            match parse_manifest(&manifest, Catalog::built_in(), NOW_MS) {
                Ok(specs) => {
                    proptest::prop_assert!(alone.iter().flatten().all(|ok| *ok));
                    proptest::prop_assert_eq!(specs.len(), alone.iter().flatten().count());
                }
                Err(err) => {
                    let bad: Vec<usize> = alone
                        .iter()
                        .enumerate()
                        .filter(|(_, ok)| **ok == Some(false))
                        .map(|(i, _)| i + 1)
                        .collect();
                    let reported: Vec<usize> = err.problems.iter().map(|p| p.line).collect();
                    if bad.is_empty() {
                        proptest::prop_assert_eq!(reported, vec![0], "only an empty manifest");
                    } else {
                        proptest::prop_assert_eq!(reported, bad);
                    }
                }
            }
        }
    }

    #[test]
    fn the_demo_manifest_is_valid_against_the_catalog_the_demo_runs_with() {
        let demo = include_str!("../../../examples/demo-batch.jsonl");
        let catalog = Catalog::built_in()
            .with_file(
                include_str!("../../../examples/catalog/models.toml"),
                "examples/catalog/models.toml",
            )
            .unwrap();
        let specs = parse_manifest(demo, &catalog, NOW_MS).unwrap();
        assert_eq!(
            specs.len(),
            demo.lines().filter(|l| !l.trim().is_empty()).count()
        );
    }
}
