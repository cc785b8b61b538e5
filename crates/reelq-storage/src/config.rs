//! Where the store is: a URL, plus what S3-compatible servers need besides.

use reelq_core::Secret;

/// The store, by URL: `file:///abs/dir`, a plain path (local), or `s3://bucket/prefix`.
/// object_store also offers `gs://` and `az://` behind its `gcp` and `azure` features, which
/// this build leaves out to keep the dependency tree lean.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub url: String,
    /// Multipart part size in bytes: the bound on buffered memory per upload (S3 needs at
    /// least 5 MiB for every part but the last).
    pub part_size: usize,
    pub s3: S3Options,
}

/// Settings for `s3://` URLs. Unset fields fall back to the standard `AWS_*` environment
/// variables.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// e.g. `http://127.0.0.1:9000` for an S3-compatible server; requests are then path-style.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    /// Allow a plain-HTTP endpoint (local servers only).
    pub allow_http: bool,
}
