//! The options a model's row lets a job pass through (`extra`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One provider option a job may pass through (`extra`), and what values it takes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExtraRule {
    String { max_chars: Option<usize> },
    Number { min: Option<f64>, max: Option<f64> },
    Integer { min: Option<i64>, max: Option<i64> },
    Bool,
    Choice { values: Vec<String> },
}

impl ExtraRule {
    /// Why `value` is not one this option takes, if it is not.
    pub fn problem(&self, value: &Value) -> Option<String> {
        let out_of = |v: f64, min: Option<f64>, max: Option<f64>| {
            (min.is_some_and(|min| v < min) || max.is_some_and(|max| v > max)).then(|| {
                let bound = |b: Option<f64>| b.map_or("any".to_owned(), |b| b.to_string());
                format!("{v} is outside {}..{}", bound(min), bound(max))
            })
        };
        match (self, value) {
            (ExtraRule::String { max_chars }, Value::String(s)) => max_chars
                .filter(|&max| s.chars().count() > max)
                .map(|max| format!("is over the limit of {max} characters")),
            (ExtraRule::Number { min, max }, Value::Number(n)) => {
                out_of(n.as_f64().unwrap_or(f64::NAN), *min, *max)
            }
            (ExtraRule::Integer { min, max }, Value::Number(n)) if n.is_i64() => out_of(
                n.as_i64().unwrap_or_default() as f64,
                min.map(|m| m as f64),
                max.map(|m| m as f64),
            ),
            (ExtraRule::Bool, Value::Bool(_)) => None,
            (ExtraRule::Choice { values }, Value::String(s)) if values.contains(s) => None,
            (ExtraRule::Choice { values }, _) => {
                Some(format!("must be one of {}", values.join(", ")))
            }
            (rule, _) => Some(format!("must be {}", rule.kind())),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ExtraRule::String { .. } => "a string",
            ExtraRule::Number { .. } => "a number",
            ExtraRule::Integer { .. } => "an integer",
            ExtraRule::Bool => "true or false",
            ExtraRule::Choice { .. } => "a choice",
        }
    }
}
