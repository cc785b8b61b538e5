//! Reading a [`JobRequest`] from JSON so that a value of the wrong type or range names its
//! field, as validation errors do.

use crate::JobRequest;

/// Why a job request's JSON could not be read: the field whose value has the wrong type or
/// range, when there is one, or the syntax error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default())]
pub struct RequestJsonError {
    /// The field at fault (`duration_s`, `image_urls[1]`); None for a syntax error or an
    /// unknown field (the message names it).
    pub field: Option<String>,
    pub message: String,
}

impl RequestJsonError {
    fn from_path(err: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let field = err.path().to_string();
        let err = err.into_inner();
        // Only a value of the wrong type or range has a field to blame; `.` is the whole
        // value, `?` a place serde could not name.
        let named = err.classify() == serde_json::error::Category::Data
            && !matches!(field.as_str(), "" | "." | "?");
        RequestJsonError {
            field: named.then_some(field),
            message: err.to_string(),
        }
    }
}

impl JobRequest {
    /// Reads a request from JSON, naming the field of a type or range error (`"duration_s":
    /// -10` is `duration_s: invalid value: integer -10, expected u32`).
    pub fn from_json(text: &str) -> Result<JobRequest, RequestJsonError> {
        let mut reader = serde_json::Deserializer::from_str(text);
        let request =
            serde_path_to_error::deserialize(&mut reader).map_err(RequestJsonError::from_path)?;
        reader.end().map_err(|err| RequestJsonError {
            field: None,
            message: err.to_string(),
        })?;
        Ok(request)
    }

    /// Like [`JobRequest::from_json`], from an already parsed value (an item of an array).
    pub fn from_value(value: serde_json::Value) -> Result<JobRequest, RequestJsonError> {
        serde_path_to_error::deserialize(value).map_err(RequestJsonError::from_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_and_range_errors_name_their_field() {
        let read = |json: &str| JobRequest::from_json(json).unwrap_err();
        let negative = read(r#"{"provider":"kie","duration_s":-10}"#);
        assert_eq!(negative.field.as_deref(), Some("duration_s"), "{negative}");
        let quoted = read(r#"{"duration_s":"8"}"#);
        assert_eq!(quoted.field.as_deref(), Some("duration_s"), "{quoted}");
        let nested = read(r#"{"image_urls":["https://a/x.png",7]}"#);
        assert_eq!(nested.field.as_deref(), Some("image_urls[1]"), "{nested}");
        let syntax = read(r#"{"prompt":"#);
        assert_eq!(syntax.field, None, "{syntax}");
        let unknown = read(r#"{"colour":"red"}"#);
        assert!(unknown.to_string().contains("colour"), "{unknown}");
        let trailing = read(r#"{"prompt":"p"} {}"#);
        assert_eq!(trailing.field, None, "{trailing}");
    }
}
