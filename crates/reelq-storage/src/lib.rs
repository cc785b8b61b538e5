//! Where finished videos go. [`VideoStore`] streams a body into an object store (a local
//! directory or S3-compatible, chosen by URL) in bounded parts, hashing on the way, so memory
//! does not grow with the video's size. Only this crate talks to object storage.

mod config;
pub mod history;
mod store;

pub use config::{S3Options, StoreConfig};
pub use history::{ArchivedId, HistoryLine, HistoryStore, Segment};
pub use store::{
    ByteRange, CHECKSUM_SUFFIX, ReadBack, StorageError, StoredVideo, VideoMeta, VideoRead,
    VideoStore,
};
