//! The producer side of reelq: a [`Client`] that validates and enqueues jobs, reads their
//! records and waits for them to settle, the JSONL manifest format for batches, and the HTTP
//! enqueue API ([`api`]) for services in other languages.

mod api;
mod client;
pub mod display;
mod manifest;
mod report;

pub use api::{Asset, Videos, app as api, video_link, video_response};
pub use client::{
    BatchReceipt, Client, Period, ProducerError, ProviderStats, Receipt, Stats, Usage, now_ms,
    write_usage_csv,
};
pub use manifest::{LineProblem, ManifestError, parse_json_batch, parse_manifest};
/// How a [`Client`] reaches the ledger and what durability it demands.
pub use reelq_queue::{Durability, LedgerConfig};
pub use report::{report_json, write_report_csv};
