//! Finished jobs' history, kept in the object store beside the videos: gzip-compressed JSON
//! Lines segments, one line per job, partitioned by the UTC day the job was made (its id is a
//! ULID, so the day is read from the id itself):
//!
//! ```text
//! <store prefix>/history/v1/day=2026-12-07/<first id>-<last id>-<digest>.jsonl.gz
//! ```
//!
//! A segment holds jobs of one day sorted by id, and its name says the first and last: a
//! reader looking for a job lists the day's segments (one `LIST` per thousand) and opens only
//! those whose range holds the id. The digest (of the content) makes a segment written twice
//! with the same jobs one object, and two different ones two objects, never one replacing
//! another. A job may be in two segments (a writer that died between writing a segment and
//! removing the jobs from Redis wrote them again later): readers keep the line with the
//! latest `updated_ms`. Any tool that reads gzip JSON Lines reads a day (DuckDB:
//! `read_json('.../history/v1/day=*/*.jsonl.gz', hive_partitioning = true)`).
//!
//! Finished batches are kept the same way under `history/v1/batches/day=.../`, keyed by
//! `batch_id`. Lines are the callers' JSON objects; this module reads only the id
//! (`job_id` or `batch_id`) and `updated_ms`. How long history is kept is the bucket's
//! lifecycle rule, not reelq's.

use std::{
    collections::{HashMap, HashSet},
    fmt::Display,
    hash::Hash,
    io::Write,
    str::FromStr,
    sync::Arc,
};

use chrono::{DateTime, NaiveDate};
use flate2::{Compression, read::MultiGzDecoder, write::GzEncoder};
use futures_util::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path as ObjectPath};
use reelq_core::{BatchId, JobId};
use sha2::{Digest, Sha256};

use crate::{StorageError, StoreConfig, VideoStore};

/// The history's root under the store's prefix; `v1` is the line format.
pub const HISTORY_ROOT: &str = "history/v1";

/// Most jobs in one segment.
pub const SEGMENT_JOBS_MAX: usize = 2_000;

/// Most time (by the jobs' ids) one segment spans, so a job that finished long after the
/// others of its time lands in a segment of its own time instead of widening one that
/// readers would then open for every id in between.
pub const SEGMENT_SPAN_MS: u64 = 10 * 60 * 1000;

/// What history is kept by: a job id or a batch id, both ULIDs (which carry their time).
pub trait ArchivedId: Copy + Ord + Hash + Display + FromStr + Send + Sync + 'static {
    /// The line's field that holds the id.
    const FIELD: &'static str;
    /// Where its day partitions are, under [`HISTORY_ROOT`] (ending in `/`, or empty).
    const DIR: &'static str;
    /// When the id was made, unix ms.
    fn made_ms(&self) -> u64;
}

impl ArchivedId for JobId {
    const FIELD: &'static str = "job_id";
    const DIR: &'static str = "";
    fn made_ms(&self) -> u64 {
        (self.to_u128() >> 80) as u64
    }
}

impl ArchivedId for BatchId {
    const FIELD: &'static str = "batch_id";
    const DIR: &'static str = "batches/";
    fn made_ms(&self) -> u64 {
        (self.to_u128() >> 80) as u64
    }
}

/// One line: its id, when its record last changed, and the whole JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryLine<I = JobId> {
    pub id: I,
    pub updated_ms: u64,
    pub json: String,
}

impl<I: ArchivedId> HistoryLine<I> {
    /// The line of `value` (a JSON object holding `I::FIELD` = `id`), last changed at
    /// `updated_ms`.
    pub fn of(id: I, updated_ms: u64, value: &impl serde::Serialize) -> Self {
        HistoryLine {
            id,
            updated_ms,
            json: serde_json::to_string(value).expect("a record serializes to JSON"),
        }
    }

    /// Reads the id (`I::FIELD`) and `updated_ms` from a line's JSON object.
    pub fn parse(json: String) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        struct Head<'a> {
            #[serde(borrow, default)]
            job_id: Option<&'a str>,
            #[serde(borrow, default)]
            batch_id: Option<&'a str>,
            #[serde(default)]
            updated_ms: u64,
            #[serde(default)]
            archived_ms: u64,
        }
        let head: Head = serde_json::from_str(&json).map_err(|err| err.to_string())?;
        let id = match I::FIELD {
            "job_id" => head.job_id,
            _ => head.batch_id,
        }
        .ok_or_else(|| format!("no {}", I::FIELD))?;
        let id = id
            .parse()
            .map_err(|_| format!("{} {id:?} is not an id", I::FIELD))?;
        Ok(HistoryLine {
            id,
            // A batch line has no change time of its own: when it was archived.
            updated_ms: head.updated_ms.max(head.archived_ms),
            json,
        })
    }
}

/// A segment as its name describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment<I = JobId> {
    /// The object's full key, store prefix included.
    pub key: String,
    pub first: I,
    pub last: I,
    /// Its size in the store, compressed.
    pub bytes: u64,
}

impl<I: ArchivedId> Segment<I> {
    /// The segment from a key `.../day=<day>/<first>-<last>-<digest>.jsonl.gz`; None for
    /// any other object.
    fn from_key(key: &str, bytes: u64) -> Option<Self> {
        let name = key.rsplit('/').next()?.strip_suffix(".jsonl.gz")?;
        let mut parts = name.splitn(3, '-');
        let first = parts.next()?.parse().ok()?;
        let last = parts.next()?.parse().ok()?;
        parts.next()?;
        Some(Segment {
            key: key.to_owned(),
            first,
            last,
            bytes,
        })
    }

    pub fn holds(&self, id: I) -> bool {
        self.first <= id && id <= self.last
    }
}

/// The UTC day an id was made.
pub fn day_of<I: ArchivedId>(id: I) -> NaiveDate {
    DateTime::from_timestamp_millis(id.made_ms() as i64)
        .unwrap_or_default()
        .date_naive()
}

/// Cuts lines into segments: by day, sorted by id, at most [`SEGMENT_JOBS_MAX`] lines and
/// [`SEGMENT_SPAN_MS`] of id time each.
pub fn cut_segments<I: ArchivedId>(mut lines: Vec<HistoryLine<I>>) -> Vec<Vec<HistoryLine<I>>> {
    lines.sort_by_key(|line| line.id);
    let mut segments: Vec<Vec<HistoryLine<I>>> = Vec::new();
    for line in lines {
        let starts_new = match segments.last().and_then(|segment| segment.first()) {
            None => true,
            Some(first) => {
                segments.last().map_or(0, Vec::len) >= SEGMENT_JOBS_MAX
                    || day_of(first.id) != day_of(line.id)
                    || line.id.made_ms() - first.id.made_ms() > SEGMENT_SPAN_MS
            }
        };
        if starts_new {
            segments.push(Vec::new());
        }
        segments.last_mut().expect("pushed above").push(line);
    }
    segments
}

/// The history part of a store (see the module doc).
#[derive(Clone, Debug)]
pub struct HistoryStore {
    store: Arc<dyn ObjectStore>,
    /// The store's own key prefix (S3 URL path), empty for a local directory.
    prefix: String,
}

impl HistoryStore {
    pub fn open(config: &StoreConfig) -> Result<Self, StorageError> {
        Ok(Self::beside(&VideoStore::open(config)?))
    }

    /// The history kept in the same store (and under the same prefix) as `videos`.
    pub fn beside(videos: &VideoStore) -> Self {
        HistoryStore {
            store: videos.object_store(),
            prefix: videos.prefix().to_owned(),
        }
    }

    fn day_prefix<I: ArchivedId>(&self, day: NaiveDate) -> String {
        let day = format!("{HISTORY_ROOT}/{}day={day}", I::DIR);
        match self.prefix.as_str() {
            "" => day,
            prefix => format!("{prefix}/{day}"),
        }
    }

    /// Writes `lines` (one day's, sorted by id: a piece of [`cut_segments`]) as one segment,
    /// acknowledged by the store when this returns.
    pub async fn put_segment<I: ArchivedId>(
        &self,
        lines: &[HistoryLine<I>],
    ) -> Result<Segment<I>, StorageError> {
        let (Some(first), Some(last)) = (lines.first(), lines.last()) else {
            return Err(StorageError::Body("an empty history segment".into()));
        };
        let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
        let mut digest = Sha256::new();
        for line in lines {
            digest.update(line.json.as_bytes());
            gzip.write_all(line.json.as_bytes())
                .and_then(|()| gzip.write_all(b"\n"))
                .map_err(|err| StorageError::Body(Box::new(err)))?;
        }
        let body = gzip
            .finish()
            .map_err(|err| StorageError::Body(Box::new(err)))?;
        let digest = hex::encode(&digest.finalize()[..8]);
        let key = format!(
            "{}/{}-{}-{digest}.jsonl.gz",
            self.day_prefix::<I>(day_of(first.id)),
            first.id,
            last.id
        );
        let bytes = body.len() as u64;
        self.store
            .put(&ObjectPath::from(key.as_str()), PutPayload::from(body))
            .await?;
        Ok(Segment {
            key,
            first: first.id,
            last: last.id,
            bytes,
        })
    }

    /// Writes `lines` (any days, any order) as the segments [`cut_segments`] makes of them.
    pub async fn put_lines<I: ArchivedId>(
        &self,
        lines: Vec<HistoryLine<I>>,
    ) -> Result<Vec<Segment<I>>, StorageError> {
        let mut written = Vec::new();
        for segment in cut_segments(lines) {
            written.push(self.put_segment(&segment).await?);
        }
        Ok(written)
    }

    /// The segments of a day.
    pub async fn segments<I: ArchivedId>(
        &self,
        day: NaiveDate,
    ) -> Result<Vec<Segment<I>>, StorageError> {
        let prefix = ObjectPath::from(self.day_prefix::<I>(day));
        let objects: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        Ok(objects
            .iter()
            .filter_map(|meta| Segment::from_key(meta.location.as_ref(), meta.size))
            .collect())
    }

    /// The lines of one segment.
    pub async fn read<I: ArchivedId>(
        &self,
        segment: &Segment<I>,
    ) -> Result<Vec<HistoryLine<I>>, StorageError> {
        let body = self
            .store
            .get(&ObjectPath::from(segment.key.as_str()))
            .await?
            .bytes()
            .await?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut MultiGzDecoder::new(&body[..]), &mut text)
            .map_err(|err| corrupt(&segment.key, err))?;
        let mut lines = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            // A line that cannot be read costs that line, not the segment or the day.
            match HistoryLine::parse(line.to_owned()) {
                Ok(line) => lines.push(line),
                Err(err) => {
                    tracing::warn!(segment = %segment.key, line = n + 1, %err, "unreadable history line skipped")
                }
            }
        }
        Ok(lines)
    }

    /// The archived lines of `ids` (the latest of each, where one was written twice); ids in
    /// no segment are left out. Opens each segment at most once.
    pub async fn find<I: ArchivedId>(
        &self,
        ids: &[I],
    ) -> Result<HashMap<I, HistoryLine<I>>, StorageError> {
        let mut by_day: HashMap<NaiveDate, HashSet<I>> = HashMap::new();
        for &id in ids {
            by_day.entry(day_of(id)).or_default().insert(id);
        }
        let mut found = HashMap::new();
        for (day, wanted) in by_day {
            for segment in self.segments::<I>(day).await? {
                if !wanted.iter().any(|&id| segment.holds(id)) {
                    continue;
                }
                for line in self.read(&segment).await? {
                    if wanted.contains(&line.id) {
                        keep_latest(&mut found, line);
                    }
                }
            }
        }
        Ok(found)
    }

    /// Every line archived for `day` (made that day), once each, sorted by id.
    pub async fn day<I: ArchivedId>(
        &self,
        day: NaiveDate,
    ) -> Result<Vec<HistoryLine<I>>, StorageError> {
        let mut found = HashMap::new();
        for segment in self.segments::<I>(day).await? {
            for line in self.read(&segment).await? {
                keep_latest(&mut found, line);
            }
        }
        let mut lines: Vec<_> = found.into_values().collect();
        lines.sort_by_key(|line| line.id);
        Ok(lines)
    }
}

/// Keeps the line written last of one written twice.
fn keep_latest<I: ArchivedId>(found: &mut HashMap<I, HistoryLine<I>>, line: HistoryLine<I>) {
    match found.get(&line.id) {
        Some(kept) if kept.updated_ms >= line.updated_ms => {}
        _ => {
            found.insert(line.id, line);
        }
    }
}

fn corrupt(key: &str, err: impl std::fmt::Display) -> StorageError {
    StorageError::Body(format!("history segment {key}: {err}").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(job_id: JobId, updated_ms: u64) -> HistoryLine<JobId> {
        HistoryLine::parse(format!(
            r#"{{"job_id":"{job_id}","updated_ms":{updated_ms},"state":"stored"}}"#
        ))
        .unwrap()
    }

    fn id_at(ms: u64) -> JobId {
        let ulid = ulid::Ulid::from_parts(ms, rand_bits(ms));
        ulid.to_string().parse().unwrap()
    }

    fn rand_bits(seed: u64) -> u128 {
        u128::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    #[test]
    fn segments_are_cut_by_day_count_and_span() {
        let day_start = 1_796_601_600_000; // 2026-12-07T00:00:00Z
        let mut lines: Vec<_> = (0..2_500).map(|n| line(id_at(day_start + n), 1)).collect();
        lines.push(line(id_at(day_start - 1), 1)); // the day before
        lines.push(line(id_at(day_start + 3 * 3_600_000), 1)); // three hours later
        let segments = cut_segments(lines);
        let sizes: Vec<_> = segments.iter().map(Vec::len).collect();
        assert_eq!(sizes, [1, SEGMENT_JOBS_MAX, 500, 1]);
        assert_eq!(day_of(segments[0][0].id).to_string(), "2026-12-06");
        assert_eq!(day_of(segments[1][0].id).to_string(), "2026-12-07");
        for segment in &segments {
            assert!(segment.windows(2).all(|w| w[0].id < w[1].id));
        }
    }

    #[test]
    fn a_segment_key_names_its_range_and_other_objects_are_not_segments() {
        let (a, b) = (id_at(1_000), id_at(2_000));
        let key = format!("p/history/v1/day=1970-01-01/{a}-{b}-0011223344556677.jsonl.gz");
        let segment = Segment::<JobId>::from_key(&key, 9).unwrap();
        assert_eq!((segment.first, segment.last), (a, b));
        assert!(segment.holds(a) && segment.holds(b) && !segment.holds(id_at(3_000)));
        assert_eq!(
            Segment::<JobId>::from_key("p/history/v1/day=1970-01-01/x.mp4", 9),
            None
        );
    }

    #[test]
    fn a_job_written_twice_reads_as_its_latest_line() {
        let id = id_at(5);
        let mut found = HashMap::new();
        keep_latest(&mut found, line(id, 7));
        keep_latest(&mut found, line(id, 3));
        assert_eq!(found[&id].updated_ms, 7);
    }
}
