//! Where finished videos go. [`VideoStore`] streams a body into an object store in bounded
//! chunks, hashing on the way, so memory does not grow with the video's size. Only this crate
//! talks to object storage.

mod store;

pub use store::{StorageError, StoredVideo, VideoStore};
