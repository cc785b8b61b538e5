//! Where the workers store videos and archived history, for the commands that read them
//! (`status`, `jobs`, `batch`, `verify`, `serve`).

use anyhow::Context;
use clap::Args;
use reelq_storage::{HistoryStore, S3Options, StoreConfig, VideoStore};

#[derive(Args)]
pub(crate) struct StoreArgs {
    /// The workers' store (their `[store] url`): a directory, `file:///dir` or
    /// `s3://bucket/prefix`. S3 credentials and region come from the standard `AWS_*`
    /// variables.
    #[arg(long, env = "REELQ_STORE_URL", global = true)]
    store: Option<String>,
    /// An S3-compatible server's endpoint, e.g. `http://127.0.0.1:9000`.
    #[arg(long, env = "REELQ_S3_ENDPOINT", global = true)]
    s3_endpoint: Option<String>,
    /// Allow a plain-http S3 endpoint (local servers only).
    #[arg(long, global = true)]
    s3_allow_http: bool,
    /// The workers' `[history] url`, if their history is not kept in the store.
    #[arg(long, env = "REELQ_HISTORY_URL", global = true)]
    history: Option<String>,
}

impl StoreArgs {
    /// The store, if one was named.
    pub(crate) fn open(&self) -> anyhow::Result<Option<VideoStore>> {
        self.store
            .as_deref()
            .map(|url| self.open_url(url))
            .transpose()
    }

    /// The archived history: `--history`, or the store's.
    pub(crate) fn history(&self) -> anyhow::Result<Option<HistoryStore>> {
        let store = match &self.history {
            Some(url) => Some(self.open_url(url)?),
            None => self.open()?,
        };
        Ok(store.as_ref().map(HistoryStore::beside))
    }

    fn open_url(&self, url: &str) -> anyhow::Result<VideoStore> {
        let store = VideoStore::open(&StoreConfig {
            url: url.to_owned(),
            // Only read here; the part size bounds uploads.
            part_size: 8 * 1024 * 1024,
            s3: S3Options {
                endpoint: self.s3_endpoint.clone(),
                allow_http: self.s3_allow_http,
                ..S3Options::default()
            },
        })
        .with_context(|| format!("opening the store {url}"))?;
        Ok(store)
    }
}
