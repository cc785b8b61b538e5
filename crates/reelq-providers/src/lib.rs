//! Provider adapters: each turns a [`reelq_core::JobSpec`] into one provider's create call,
//! reads its task status, and classes its every documented error into a
//! [`reelq_core::ErrorClass`]. Only this crate speaks provider HTTP.

mod acedata;
mod ark;
mod dashscope;
mod error;
mod evolink;
mod fal;
mod gemini;
mod http;
mod kie;
mod kling;
mod openai;
mod provider;
mod replicate;
mod request;
mod standard_webhooks;

use std::sync::Arc;

pub use acedata::Acedata;
pub use ark::Ark;
pub use dashscope::Dashscope;
pub use error::ProviderError;
pub use evolink::Evolink;
pub use fal::Fal;
pub use gemini::Gemini;
pub use http::AccountConfig;
pub use kie::{Kie, kie_signature};
pub use kling::{Kling, bearer_token as kling_token};
pub use openai::Openai;
pub use provider::{
    AccountCheck, ByteStream, CallbackError, CallbackHint, CallbackScope, CancelAnswer, Download,
    Provider, ProviderTask, RecentTasks, Submission, TaskEcho, TaskStatus,
};
use reelq_core::ProviderKind;
pub use replicate::Replicate;
pub use reqwest::header::HeaderMap;
pub use standard_webhooks::{BadWebhookSecret, WebhookKey};

/// The adapter for one account of `kind`: which provider is a matter of configuration.
pub fn adapter(
    kind: ProviderKind,
    account: AccountConfig,
) -> Result<Arc<dyn Provider>, ProviderError> {
    Ok(match kind {
        ProviderKind::Kie => Arc::new(Kie::new(account)?),
        ProviderKind::Acedata => Arc::new(Acedata::new(account)?),
        ProviderKind::Evolink => Arc::new(Evolink::new(account)?),
        ProviderKind::Openai => Arc::new(Openai::new(account)?),
        ProviderKind::Replicate => Arc::new(Replicate::new(account)?),
        ProviderKind::Gemini => Arc::new(Gemini::new(account)?),
        ProviderKind::Fal => Arc::new(Fal::new(account)?),
        ProviderKind::Kling => Arc::new(Kling::new(account)?),
        ProviderKind::Ark => Arc::new(Ark::new(account)?),
        ProviderKind::Dashscope => Arc::new(Dashscope::new(account)?),
    })
}
