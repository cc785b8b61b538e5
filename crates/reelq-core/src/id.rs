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

            /// A fresh id of partition `partition` of a ledger of `partitions`: a ULID whose
            /// low 16 random bits are chosen so [`Self::partition`] gives it back.
            pub fn new_in(partition: u16, partitions: u16) -> Self {
                Self::new_in_since(partition, partitions, 0)
            }

            /// [`Self::new_in`], made no earlier than `since_ms` (unix ms) whatever this
            /// host's clock says: a ledger partitioned at `since_ms` takes ids made before for
            /// its legacy partition's.
            pub fn new_in_since(partition: u16, partitions: u16, since_ms: u64) -> Self {
                let ulid = ulid::Ulid::new();
                let ulid = match ulid.timestamp_ms() < since_ms {
                    true => ulid::Ulid::from_parts(since_ms, ulid.random()),
                    false => ulid,
                };
                Self(ulid::Ulid(
                    (ulid.0 & !0xffff)
                        | u128::from(partition_bits(ulid.0 as u16, partition, partitions)),
                ))
            }

            /// Which of a ledger's `partitions` the id belongs to: its low 16 bits modulo
            /// `partitions` (every id is in partition 0 of a one-partition ledger).
            pub fn partition(&self, partitions: u16) -> u16 {
                (self.0.0 as u16) % partitions.max(1)
            }

            /// When the id was made: a ULID carries its creation time.
            pub fn created_at(&self) -> std::time::SystemTime {
                self.0.datetime()
            }

            /// When the id was made, in unix ms.
            pub fn created_ms(&self) -> u64 {
                self.0.timestamp_ms()
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

/// A hash of `text` that is the same in every process and release (FNV-1a, 64 bits): where
/// an idempotency key's record lives, a weighted route's draw for a job.
pub fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Low 16 bits near `random` that are `partition` modulo `partitions`.
fn partition_bits(random: u16, partition: u16, partitions: u16) -> u16 {
    let partitions = partitions.max(1);
    let partition = partition % partitions;
    let base = random - random % partitions;
    match base.checked_add(partition) {
        Some(bits) => bits,
        None => base - partitions + partition,
    }
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
    fn an_id_made_in_a_partition_belongs_to_it() {
        for partitions in [1, 3, 16, 1000, u16::MAX] {
            for partition in [0, 1, partitions / 2, partitions - 1] {
                let job_id = JobId::new_in(partition, partitions);
                assert_eq!(job_id.partition(partitions), partition % partitions);
                let batch_id = BatchId::new_in(partition, partitions);
                assert_eq!(batch_id.partition(partitions), partition % partitions);
            }
        }
        for random in [0, 1, u16::MAX - 1, u16::MAX] {
            assert_eq!(partition_bits(random, 6, 7) % 7, 6);
        }
        // Ids made before partitions keep their place: all in partition 0 of one.
        assert_eq!(JobId::new().partition(1), 0);
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
