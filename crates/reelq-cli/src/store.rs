//! Where the workers store videos and archived history, for the commands that read them
//! (`status`, `jobs`, `batch`, `verify`, `serve`).

use anyhow::Context;
use clap::Args;
use reelq_core::Secret;
use reelq_storage::{HistoryStore, S3Options, StoreConfig, VideoStore};

#[derive(Args)]
pub(crate) struct StoreArgs {
    /// The workers' store (their `[store] url`): a directory, `file:///dir` or
    /// `s3://bucket/prefix`. Without it, the workers' own spelling is read too
    /// (`REELQ_STORE__URL`, with `REELQ_STORE__S3__ENDPOINT`, `__REGION`,
    /// `__ACCESS_KEY_ID`, `__SECRET_ACCESS_KEY`, `__ALLOW_HTTP`), so one environment serves
    /// workers and `reelq serve` alike; otherwise S3 credentials and region come from the
    /// standard `AWS_*` variables.
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
    /// The store, if one was named (here, or in the workers' `REELQ_STORE__URL`).
    pub(crate) fn open(&self) -> anyhow::Result<Option<VideoStore>> {
        self.store
            .clone()
            .or_else(|| worker_setting("URL"))
            .map(|url| self.open_url(&url))
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
                endpoint: self
                    .s3_endpoint
                    .clone()
                    .or_else(|| worker_setting("S3__ENDPOINT")),
                region: worker_setting("S3__REGION"),
                access_key_id: worker_setting("S3__ACCESS_KEY_ID"),
                secret_access_key: worker_setting("S3__SECRET_ACCESS_KEY").map(Secret::new),
                allow_http: self.s3_allow_http
                    || worker_setting("S3__ALLOW_HTTP").is_some_and(|value| value == "true"),
            },
        })
        .with_context(|| format!("opening the store {url}"))?;
        Ok(store)
    }
}

/// A `[store]` setting as the workers read it from the environment (`REELQ_STORE__<name>`).
fn worker_setting(name: &str) -> Option<String> {
    std::env::var(format!("REELQ_STORE__{name}"))
        .ok()
        .filter(|value| !value.is_empty())
}
