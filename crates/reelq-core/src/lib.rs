//! reelq's vocabulary: what a job is, which requests are valid, which states a job moves
//! through and how errors are classed. This crate does no I/O, so every other crate can share it.

mod account;
mod batch;
mod catalog;
mod error_class;
mod id;
mod price;
mod provider;
mod request_json;
mod route;
mod scope;
mod secret;
mod spec;
mod state;
mod tenant;
mod webhook_target;

pub use account::AccountName;
pub use batch::{BatchOptions, micros_to_usd, usd_to_micros};
pub use catalog::{
    BUILT_IN_CATALOG, Catalog, CatalogError, ChoiceField, ChoiceRule, DurationField, DurationForm,
    DurationRule, ExtraRule, IMAGE_EXTENSIONS, ImageRule, ImagesField, ImagesForm, ModelRule,
    ModelStatus, Omit, ProviderRequest, RequestMap,
};
pub use error_class::{ErrorClass, local_exhaustion};
pub use id::{BatchId, IdError, JobId, stable_hash};
pub use price::{PriceRule, PriceTable};
pub use provider::ProviderKind;
pub use request_json::RequestJsonError;
pub use route::{
    Candidate, CandidateRule, FallbackReason, LeftCandidate, RouteHold, RoutePolicy, RouteRule,
    RouteState,
};
pub use scope::Scope;
pub use secret::{ApiToken, ApiTokenError, MIN_API_TOKEN_CHARS, Secret};
pub use spec::{
    Aspect, Character, JOB_EVENTS, JobRequest, JobSpec, MAX_PROMPT_CHARS, MAX_URL_CHARS, Quality,
    SpecError, check_url, parse_deadline,
};
pub use state::{JobState, UnknownState};
pub use tenant::TenantName;
pub use webhook_target::{WebhookTargets, is_public};
