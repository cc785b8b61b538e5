//! The producer side of reelq: a [`Client`] that validates and enqueues jobs, reads their
//! records and waits for them to settle, plus the JSONL manifest format for batches.

mod client;
mod manifest;

pub use client::{BatchReceipt, Client, ProducerError};
pub use manifest::{LineProblem, ManifestError, parse_manifest};
