//! Identifiers for jobs and batches: ULIDs, so ids sort by creation time and stay short in keys.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {kind} id {value:?}: expected a 26-character ULID")]
pub struct IdError {
    kind: &'static str,
    value: String,
}

macro_rules! ulid_id {
    ($name:ident, $kind:literal) => {
        #[doc = concat!("A ", $kind, " id (a ULID).")]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(ulid::Ulid);

        impl $name {
            pub fn new() -> Self {
                Self(ulid::Ulid::new())
            }

            /// When the id was made: a ULID carries its creation time.
            pub fn created_at(&self) -> std::time::SystemTime {
                self.0.datetime()
            }

            /// The id's 128 bits (a job's trace id is its id).
            pub fn to_u128(&self) -> u128 {
                self.0.0
            }

            /// The id as an OpenTelemetry trace id: its 128 bits in hex, as collectors
            /// show trace ids (a job's spans are in this trace).
            pub fn trace_id(&self) -> String {
                format!("{:032x}", self.0.0)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                ulid::Ulid::from_string(s).map(Self).map_err(|_| IdError {
                    kind: $kind,
                    value: s.to_owned(),
                })
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.to_string()
            }
        }

        /// A ULID: 26 characters of Crockford's base 32.
        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some("^[0-7][0-9A-HJKMNP-TV-Z]{25}$"))
                    .description(Some(concat!("A ", $kind, " id (a ULID)")))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}
    };
}

ulid_id!(JobId, "job");

impl JobId {
    /// The job's video key in the store: `yyyy/mm/dd/<job id>.mp4`, dated by the job's
    /// creation, so fetching the same job twice always targets the same object.
    pub fn video_key(&self) -> String {
        let stamp = humantime::format_rfc3339(self.created_at()).to_string();
        format!(
            "{}/{}/{}/{self}.mp4",
            &stamp[0..4],
            &stamp[5..7],
            &stamp[8..10]
        )
    }
}
ulid_id!(BatchId, "batch");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_id_round_trips_through_its_string_form() {
        let job_id = JobId::new();
        assert_eq!(job_id.to_string().parse::<JobId>(), Ok(job_id));
    }

    #[test]
    fn video_keys_are_dated_by_the_job_and_stable() {
        let job_id: JobId = "01KQGDBJ00ABCDEFGHJKMNPQRS".parse().unwrap();
        assert_eq!(
            job_id.video_key(),
            "2026/05/01/01KQGDBJ00ABCDEFGHJKMNPQRS.mp4"
        );
        assert_eq!(job_id.video_key(), job_id.video_key());
    }

    #[test]
    fn malformed_id_names_its_kind() {
        let err = "nope".parse::<BatchId>().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid batch id "nope": expected a 26-character ULID"#
        );
    }
}
