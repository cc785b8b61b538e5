//! Why a worker could not start or keep running.

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("config: {0}")]
    Config(String),
    #[error(transparent)]
    Queue(#[from] reelq_queue::QueueError),
    #[error(transparent)]
    Storage(#[from] reelq_storage::StorageError),
    #[error("provider setup: {0}")]
    Provider(#[from] reelq_providers::ProviderError),
}
