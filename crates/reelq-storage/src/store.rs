//! The video store: a local directory by default (object_store's `LocalFileSystem`, which
//! writes to a temp file and renames on completion, so readers never see half a video).

use std::{
    error::Error as StdError,
    path::{Path, PathBuf},
    sync::Arc,
};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use object_store::{
    ObjectStore, ObjectStoreExt, WriteMultipart, local::LocalFileSystem, path::Path as ObjectPath,
};
use sha2::{Digest, Sha256};

/// Parts are buffered up to this size before they are handed to the store: the bound on
/// memory per upload (times the in-flight parts below).
const CHUNK_BYTES: usize = 5 * 1024 * 1024;
const MAX_PARTS_IN_FLIGHT: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("creating the store directory {path}: {source}")]
    Directory {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The body being stored failed mid-way; nothing was stored.
    #[error("reading the body: {0}")]
    Body(#[source] Box<dyn StdError + Send + Sync>),
}

/// What was stored: the ledger records all three.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVideo {
    pub key: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Clone, Debug)]
pub struct VideoStore {
    store: Arc<dyn ObjectStore>,
    /// Set for a local directory, whose staging files (`<key>#<n>`) a killed upload leaves
    /// behind; the next complete upload of the same key removes them.
    local_root: Option<PathBuf>,
}

impl VideoStore {
    /// A store rooted at a local directory, created if missing.
    pub fn local(root: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(root).map_err(|source| StorageError::Directory {
            path: root.display().to_string(),
            source,
        })?;
        Ok(VideoStore {
            store: Arc::new(LocalFileSystem::new_with_prefix(root)?),
            local_root: Some(root.to_owned()),
        })
    }

    /// Streams `body` to `key`. Writing the same key again replaces the object, so a
    /// repeated fetch of the same job is harmless.
    pub async fn put_stream<E>(
        &self,
        key: &str,
        body: impl Stream<Item = Result<Bytes, E>>,
    ) -> Result<StoredVideo, StorageError>
    where
        E: StdError + Send + Sync + 'static,
    {
        let upload = self.store.put_multipart(&ObjectPath::from(key)).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK_BYTES);
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
        writer.finish().await?;
        if let Some(root) = &self.local_root {
            remove_staging_leftovers(root, key);
        }
        Ok(StoredVideo {
            key: key.to_owned(),
            bytes,
            sha256: hex::encode(hasher.finalize()),
        })
    }
}

/// Best effort: a leftover costs disk space, never correctness, so failures are ignored.
fn remove_staging_leftovers(root: &Path, key: &str) {
    let target = root.join(key);
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return;
    };
    let prefix = format!("{}#", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
