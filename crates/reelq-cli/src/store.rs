//! Where the workers store videos, for the commands that read them (`verify`, `serve`).

use anyhow::Context;
use clap::Args;
use reelq_storage::{S3Options, StoreConfig, VideoStore};

#[derive(Args)]
pub(crate) struct StoreArgs {
    /// The workers' store (their `[store] url`): a directory, `file:///dir` or
    /// `s3://bucket/prefix`. S3 credentials and region come from the standard `AWS_*`
    /// variables.
    #[arg(long, env = "REELQ_STORE_URL")]
    store: Option<String>,
    /// An S3-compatible server's endpoint, e.g. `http://127.0.0.1:9000`.
    #[arg(long, env = "REELQ_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// Allow a plain-http S3 endpoint (local servers only).
    #[arg(long)]
    s3_allow_http: bool,
}

impl StoreArgs {
    /// The store, if one was named.
    pub(crate) fn open(&self) -> anyhow::Result<Option<VideoStore>> {
        let Some(url) = &self.store else {
            return Ok(None);
        };
        let store = VideoStore::open(&StoreConfig {
            url: url.clone(),
            // Only read here; the part size bounds uploads.
            part_size: 8 * 1024 * 1024,
            s3: S3Options {
                endpoint: self.s3_endpoint.clone(),
                allow_http: self.s3_allow_http,
                ..S3Options::default()
            },
        })
        .with_context(|| format!("opening the store {url}"))?;
        Ok(Some(store))
    }
}
