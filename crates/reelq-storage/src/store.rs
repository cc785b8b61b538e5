//! The video store over object_store. Local directories use `LocalFileSystem`, which writes a
//! staging file and renames it on completion; S3-compatible stores use a multipart upload,
//! aborted on any failure. Either way a reader never sees half a video.

use std::{
    error::Error as StdError,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use object_store::{
    Attribute, Attributes, GetOptions, GetRange, ObjectStore, PutMultipartOptions, PutOptions,
    WriteMultipart,
    aws::{AmazonS3, AmazonS3Builder, Checksum},
    local::LocalFileSystem,
    path::Path as ObjectPath,
    signer::{Method, Signer},
};
use reelq_media::{Mp4Inspector, NotAVideo, VideoFacts};
use sha2::{Digest, Sha256};

use crate::StoreConfig;

/// Parts handed to the store but not yet acknowledged; with the part size, the bound on
/// memory per upload.
const MAX_PARTS_IN_FLIGHT: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("store url {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("creating the store directory {path}: {source}")]
    Directory {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The body being stored failed mid-way; nothing was stored.
    #[error("reading the body: {0}")]
    Body(#[source] Box<dyn StdError + Send + Sync>),
    /// The body ended before its announced length; nothing was stored.
    #[error("truncated body: {received} of {expected} bytes")]
    Truncated { expected: u64, received: u64 },
}

impl StorageError {
    /// Whether the store said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            StorageError::Store(object_store::Error::NotFound { .. })
        )
    }
}

/// The directory a store URL names, None for `s3://`. Refuses other schemes and what looks
/// like a mistyped URL (`s3//bucket`, `s3:/bucket`, `file:/dir`), which would otherwise
/// become a local directory of that name.
fn local_path(url: &str) -> Result<Option<&str>, StorageError> {
    if url.starts_with("s3://") {
        return Ok(None);
    }
    let refuse = |reason: &str| {
        Err(StorageError::Url {
            url: url.into(),
            reason: reason.into(),
        })
    };
    let path = url.strip_prefix("file://").unwrap_or(url);
    if path.is_empty() {
        return refuse("empty");
    }
    if path.contains("://") {
        return refuse("unsupported scheme (supported: file://, s3://, or a plain path)");
    }
    let first = path.split('/').next().unwrap_or_default();
    let scheme_like = !first.is_empty()
        && first
            .trim_end_matches(':')
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '.' || c == '-');
    let mistyped = first.ends_with(':') || (scheme_like && path[first.len()..].starts_with("//"));
    if scheme_like && mistyped {
        return refuse(
            "looks like a mistyped URL: write s3://bucket/prefix, file:///dir, or a plain path",
        );
    }
    Ok(Some(path))
}

/// What was stored: the ledger records all three.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVideo {
    /// The object's full key in the store, prefix included.
    pub key: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Which bytes of an object to read, as an HTTP `Range` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// From this offset to the end.
    From(u64),
    /// From the first offset to the second, inclusive.
    Between(u64, u64),
    /// The last n bytes.
    Last(u64),
}

/// An object opened for reading: its whole size, the bytes this read covers, and them.
pub struct VideoRead {
    pub total: u64,
    pub range: std::ops::Range<u64>,
    pub body: futures_util::stream::BoxStream<'static, Result<Bytes, StorageError>>,
}

/// What a stored object holds, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadBack {
    pub bytes: u64,
    pub sha256: String,
    pub video: Result<VideoFacts, NotAVideo>,
}

/// Written as object metadata where the store keeps it (S3: `job-id`, `provider`,
/// `task-id`), so an object names its job.
#[derive(Debug, Clone)]
pub struct VideoMeta {
    pub job_id: String,
    pub provider: String,
    pub task_id: String,
}

#[derive(Clone, Debug)]
pub struct VideoStore {
    store: Arc<dyn ObjectStore>,
    /// The same S3 store, which can presign links; None for a local directory.
    signer: Option<Arc<AmazonS3>>,
    /// Key prefix taken from the URL's path (S3); empty for a local directory.
    prefix: String,
    part_size: usize,
    /// Set for a local directory, whose staging files (`<key>#<n>`) a killed upload leaves
    /// behind; the next complete upload of the same key removes them. Local files also keep
    /// no attributes, so metadata is written only when this is `None`; their checksum goes in
    /// a file beside them ([`CHECKSUM_SUFFIX`]).
    local_root: Option<PathBuf>,
}

impl VideoStore {
    /// Opens the store a URL names: `s3://bucket/prefix`, `file:///dir` or a plain path.
    /// Checks `config` as [`VideoStore::open`] would, without touching the disk or the
    /// network (for `--check-config`).
    pub fn check(config: &StoreConfig) -> Result<(), StorageError> {
        match local_path(&config.url)? {
            Some(_) => Ok(()),
            None => Self::open(config).map(drop),
        }
    }

    pub fn open(config: &StoreConfig) -> Result<Self, StorageError> {
        let url = config.url.as_str();
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StorageError::Url {
                    url: url.into(),
                    reason: "no bucket".into(),
                });
            }
            // Every part is sent with its SHA-256 (`x-amz-checksum-sha256`), which the server
            // checks before accepting it and keeps with the object (a composite checksum of
            // the parts, `ChecksumSHA256` "<base64>-<parts>").
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_checksum_algorithm(Checksum::SHA256);
            let s3 = &config.s3;
            if let Some(endpoint) = &s3.endpoint {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_virtual_hosted_style_request(false);
            }
            if let Some(region) = &s3.region {
                builder = builder.with_region(region);
            }
            if let Some(key_id) = &s3.access_key_id {
                builder = builder.with_access_key_id(key_id);
            }
            if let Some(secret) = &s3.secret_access_key {
                builder = builder.with_secret_access_key(secret.expose());
            }
            let store = Arc::new(builder.with_allow_http(s3.allow_http).build()?);
            return Ok(VideoStore {
                store: store.clone(),
                signer: Some(store),
                prefix: prefix.trim_matches('/').to_owned(),
                part_size: config.part_size,
                local_root: None,
            });
        }
        let path = local_path(url)?.expect("not s3://, so a local path");
        let mut store = Self::local(Path::new(path))?;
        store.part_size = config.part_size;
        Ok(store)
    }

    /// A store rooted at a local directory, created if missing.
    pub fn local(root: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(root).map_err(|source| StorageError::Directory {
            path: root.display().to_string(),
            source,
        })?;
        Ok(VideoStore {
            store: Arc::new(LocalFileSystem::new_with_prefix(root)?),
            signer: None,
            prefix: String::new(),
            part_size: 8 * 1024 * 1024,
            local_root: Some(root.to_owned()),
        })
    }

    /// Streams `body` to `key` (under the store's prefix). Writing the same key again replaces
    /// the object, so a repeated fetch of the same job never makes a second one. If
    /// `expected_len` is given, a body of another length is refused and nothing is stored.
    pub async fn put_stream<E>(
        &self,
        key: &str,
        meta: &VideoMeta,
        expected_len: Option<u64>,
        body: impl Stream<Item = Result<Bytes, E>>,
    ) -> Result<StoredVideo, StorageError>
    where
        E: StdError + Send + Sync + 'static,
    {
        let full_key = self.full_key(key);
        let location = ObjectPath::from(full_key.as_str());
        let upload = self
            .store
            .put_multipart_opts(&location, self.upload_options(meta))
            .await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_size);
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(err) => {
                    let _ = writer.abort().await;
                    return Err(StorageError::Body(Box::new(err)));
                }
            };
            if let Err(err) = writer.wait_for_capacity(MAX_PARTS_IN_FLIGHT).await {
                let _ = writer.abort().await;
                return Err(err.into());
            }
            hasher.update(&chunk);
            bytes += chunk.len() as u64;
            writer.write(&chunk);
        }
        if let Some(expected) = expected_len.filter(|&expected| expected != bytes) {
            let _ = writer.abort().await;
            return Err(StorageError::Truncated {
                expected,
                received: bytes,
            });
        }
        writer.finish().await?;
        let sha256 = hex::encode(hasher.finalize());
        if let Some(root) = &self.local_root {
            remove_staging_leftovers(root, &full_key);
            write_checksum_file(root, &full_key, &sha256).map_err(|source| {
                StorageError::Directory {
                    path: format!("{full_key}{CHECKSUM_SUFFIX}"),
                    source,
                }
            })?;
        }
        Ok(StoredVideo {
            key: full_key,
            bytes,
            sha256,
        })
    }

    /// Writes a small object whole (a video's thumbnail) under `key` (and the store's
    /// prefix); returns its full key.
    pub async fn put_small(
        &self,
        key: &str,
        content_type: &str,
        bytes: Bytes,
    ) -> Result<String, StorageError> {
        let full_key = self.full_key(key);
        let mut attributes = Attributes::new();
        if self.local_root.is_none() {
            attributes.insert(Attribute::ContentType, content_type.to_owned().into());
        }
        let options = PutOptions {
            attributes,
            ..PutOptions::default()
        };
        self.store
            .put_opts(&ObjectPath::from(full_key.as_str()), bytes.into(), options)
            .await?;
        Ok(full_key)
    }

    /// The object store itself, for the history kept beside the videos.
    pub(crate) fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The key prefix from the store's URL (S3), empty for a local directory.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// Reads a stored object back whole (streamed: memory stays flat) and says what it holds:
    /// its size, its SHA-256, and whether it is a whole video, for `reelq verify`. A missing
    /// object is [`StorageError::Store`] with object_store's "not found".
    pub async fn read_back(&self, full_key: &str) -> Result<ReadBack, StorageError> {
        let mut body = self.read(full_key, None).await?.body;
        let mut hasher = Sha256::new();
        let mut inspector = Mp4Inspector::default();
        let mut bytes = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            inspector.feed(&chunk);
            bytes += chunk.len() as u64;
        }
        Ok(ReadBack {
            bytes,
            sha256: hex::encode(hasher.finalize()),
            video: inspector.finish(),
        })
    }

    /// Opens a stored object for reading, whole or one byte range of it (HTTP `Range`
    /// semantics: a range past the end is cut at the end; one starting past it is an error),
    /// streamed.
    pub async fn read(
        &self,
        full_key: &str,
        range: Option<ByteRange>,
    ) -> Result<VideoRead, StorageError> {
        let options = GetOptions {
            range: range.map(|range| match range {
                ByteRange::From(start) => GetRange::Offset(start),
                ByteRange::Between(start, last) => GetRange::Bounded(start..last + 1),
                ByteRange::Last(n) => GetRange::Suffix(n),
            }),
            ..GetOptions::default()
        };
        let object = self
            .store
            .get_opts(&ObjectPath::from(full_key), options)
            .await?;
        let (total, range) = (object.meta.size, object.range.clone());
        let body = object
            .into_stream()
            .map(|chunk| chunk.map_err(StorageError::from));
        Ok(VideoRead {
            total,
            range,
            body: Box::pin(body),
        })
    }

    /// A link anyone holding it can download the object from until `lifetime` has passed:
    /// a presigned S3 GET (SigV4 allows at most 7 days). None for a local directory, which
    /// has no URL of its own.
    pub async fn link(
        &self,
        full_key: &str,
        lifetime: Duration,
    ) -> Result<Option<String>, StorageError> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let url = signer
            .signed_url(Method::GET, &ObjectPath::from(full_key), lifetime)
            .await?;
        Ok(Some(url.to_string()))
    }

    /// Reads the store without writing to it, for readiness probes (which Kubernetes sends
    /// every few seconds): a local store's directory must exist; an S3 store must list the
    /// top level of its prefix (with a delimiter: a few `yyyy/` names, not the videos).
    /// Unreachable, refused credentials or no such bucket are errors. Needs `s3:ListBucket`.
    pub async fn check_readable(&self) -> Result<(), StorageError> {
        if let Some(root) = &self.local_root {
            return match std::fs::metadata(root) {
                Ok(meta) if meta.is_dir() => Ok(()),
                Ok(_) => Err(StorageError::Directory {
                    path: root.display().to_string(),
                    source: std::io::Error::other("not a directory"),
                }),
                Err(source) => Err(StorageError::Directory {
                    path: root.display().to_string(),
                    source,
                }),
            };
        }
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        self.store.list_with_delimiter(prefix.as_ref()).await?;
        Ok(())
    }

    fn upload_options(&self, meta: &VideoMeta) -> PutMultipartOptions {
        let mut attributes = Attributes::new();
        if self.local_root.is_none() {
            attributes.insert(Attribute::ContentType, "video/mp4".into());
            // Hyphenated names: some S3-compatible servers drop metadata keys with `_`.
            attributes.insert(
                Attribute::Metadata("job-id".into()),
                meta.job_id.clone().into(),
            );
            attributes.insert(
                Attribute::Metadata("provider".into()),
                meta.provider.clone().into(),
            );
            attributes.insert(
                Attribute::Metadata("task-id".into()),
                meta.task_id.clone().into(),
            );
        }
        PutMultipartOptions {
            attributes,
            ..PutMultipartOptions::default()
        }
    }
}

/// A local video's checksum file: `<key>.sha256`, in `sha256sum`'s format, so
/// `sha256sum -c *.sha256` in a day's directory checks its videos without reelq.
pub const CHECKSUM_SUFFIX: &str = ".sha256";

/// Writes the checksum file beside a stored video, whole or not at all (a temporary name,
/// renamed), after the video itself.
fn write_checksum_file(root: &Path, key: &str, sha256: &str) -> std::io::Result<()> {
    let video = root.join(key);
    let name = video
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut target = video.clone().into_os_string();
    target.push(CHECKSUM_SUFFIX);
    let mut staging = target.clone();
    staging.push(".tmp");
    std::fs::write(&staging, format!("{sha256}  {name}\n"))?;
    std::fs::rename(&staging, &target)
}

/// How many staging names a cleanup tries. object_store names a staging file `<key>#<n>`
/// with the lowest free `n` from 1, so leftovers of killed uploads of one key sit at the low
/// numbers; trying names avoids listing the directory, which holds a whole day's videos.
const STAGING_SUFFIXES_TRIED: u32 = 16;

/// Best effort: a leftover costs disk space, never correctness, so failures are ignored.
/// Killed uploads of a key leave consecutive low numbers (each took the lowest free one, and
/// this removes them all at once), so the first absent number ends the search: the usual
/// upload, with no leftovers, costs one lookup.
fn remove_staging_leftovers(root: &Path, key: &str) {
    let target = root.join(key);
    for n in 1..=STAGING_SUFFIXES_TRIED {
        let mut staging = target.clone().into_os_string();
        staging.push(format!("#{n}"));
        // A lookup first: an unlink locks the directory even when the name is absent, and
        // every upload of the day shares that directory.
        if std::fs::symlink_metadata(&staging).is_err() {
            return;
        }
        let _ = std::fs::remove_file(staging);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mistyped_store_url_is_refused_not_made_a_directory() {
        for url in [
            "./data",
            "/var/lib/reelq",
            "videos",
            "file:///srv/videos",
            "data/2026",
        ] {
            assert!(local_path(url).unwrap().is_some(), "{url}");
        }
        assert_eq!(local_path("s3://bucket/prefix").unwrap(), None);
        for url in [
            "s3//bucket",
            "s3:/bucket",
            "file:/dir",
            "gs://bucket",
            "S3://b",
            "",
        ] {
            assert!(local_path(url).is_err(), "{url}");
        }
    }
}
