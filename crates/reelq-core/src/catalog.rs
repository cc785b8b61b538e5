//! The model catalog: for each provider and model, which durations, aspects, qualities,
//! images, prompts and options a request may use, what it costs, and how reelq's neutral
//! fields become that provider's request fields. It is data: `catalog.toml` beside this
//! crate is compiled in, and an operator's file adds or replaces rows ([`Catalog::with_file`])
//! without a rebuild. Adding a model is adding a row.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    sync::OnceLock,
};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{
    ProviderKind,
    route::RouteRule,
    spec::{Aspect, Quality},
};

mod extra;
mod status;

pub use extra::ExtraRule;

pub use status::ModelStatus;

/// The built-in catalog's text (this crate's `catalog.toml`).
pub const BUILT_IN_CATALOG: &str = include_str!("../catalog.toml");

/// Image formats every provider that takes images documents: jpeg, png, webp.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp"];

/// How many input images a model takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageRule {
    #[default]
    None,
    Exactly(usize),
    AtMost(usize),
}

/// How a duration in seconds is written: `"10"`, `10` or `"10s"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DurationForm {
    String,
    Number,
    /// The seconds with an `s` after them, as fal's Veo endpoints take them.
    Seconds,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurationField {
    pub field: String,
    pub form: DurationForm,
}

/// A neutral choice (an aspect, a quality, an "aspect/quality" pair) written as the
/// provider's value in `field`; a choice without a value sends no field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChoiceField {
    pub field: String,
    pub values: BTreeMap<String, Value>,
}

/// A duration in a field, or `"omit"` for a model with one length and no field for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DurationRule {
    Omit(Omit),
    Send(DurationField),
}

/// `"omit"`: the contract's field is not sent for this model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Omit {
    Omit,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ChoiceRule {
    Omit(Omit),
    Send(ChoiceField),
}

impl ChoiceRule {
    fn field(&self) -> Option<&ChoiceField> {
        match self {
            ChoiceRule::Omit(_) => None,
            ChoiceRule::Send(field) => Some(field),
        }
    }
}

/// How the images go: a list of URLs, or the first alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImagesForm {
    List,
    One,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagesField {
    pub field: String,
    pub form: ImagesForm,
}

/// How a model's request is written. In a row, each key given replaces the contract's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestMap {
    pub duration: Option<DurationRule>,
    pub aspect: Option<ChoiceRule>,
    pub quality: Option<ChoiceRule>,
    /// Aspect and quality in one field, keyed `"<aspect>/<quality>"`.
    pub size: Option<ChoiceRule>,
    pub images: Option<ImagesField>,
    /// The path segment of the model's API family, for contracts with one per family.
    pub family: Option<String>,
    pub fixed: Option<Map<String, Value>>,
}

impl RequestMap {
    fn over(self, base: &RequestMap) -> RequestMap {
        RequestMap {
            duration: self.duration.or_else(|| base.duration.clone()),
            aspect: self.aspect.or_else(|| base.aspect.clone()),
            quality: self.quality.or_else(|| base.quality.clone()),
            size: self.size.or_else(|| base.size.clone()),
            images: self.images.or_else(|| base.images.clone()),
            family: self.family.or_else(|| base.family.clone()),
            fixed: self.fixed.or_else(|| base.fixed.clone()),
        }
    }
}

fn landscape_portrait() -> Vec<Aspect> {
    vec![Aspect::Landscape, Aspect::Portrait]
}

fn standard_only() -> Vec<Quality> {
    vec![Quality::Standard]
}

/// What one model accepts, what it costs and how its request is written. The first entry
/// of each list is the default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRule {
    pub provider: ProviderKind,
    pub model: String,
    pub durations: Vec<u32>,
    #[serde(default = "landscape_portrait")]
    pub aspects: Vec<Aspect>,
    #[serde(default = "standard_only")]
    pub qualities: Vec<Quality>,
    #[serde(default)]
    pub images: ImageRule,
    /// Images may be sent inline as `data:image/...;base64,` URLs, not only as http(s) URLs.
    #[serde(default)]
    pub inline_images: bool,
    /// The model can build a character from a reference video (`character_url`).
    #[serde(default)]
    pub character: bool,
    /// The most whitespace-separated words a prompt may have, where the provider counts
    /// tokens (reelq cannot count a provider's tokens, so it counts words as a bound).
    pub max_prompt_words: Option<usize>,
    /// The most characters a prompt may have, where the provider sets fewer than reelq's
    /// own limit.
    pub max_prompt_chars: Option<usize>,
    /// USD per second of video, by quality.
    #[serde(default)]
    pub price: BTreeMap<Quality, f64>,
    /// The contract's mapping with this row's keys over it.
    #[serde(default)]
    pub request: RequestMap,
    /// Provider options a job may pass through, by the field name they are sent as.
    #[serde(default)]
    pub extra: BTreeMap<String, ExtraRule>,
    /// Whether the provider still sells the model: `active` (the default), `deprecated`
    /// (sold, with an end announced: accepted with a warning), `paused` (not taking requests
    /// for now) or `retired` (gone); the last two are refused at enqueue.
    #[serde(default)]
    pub status: ModelStatus,
    /// Since when the status holds (as the provider dated it, `2026-09-24`).
    pub status_since: Option<String>,
    /// The model that replaces this one (of the same provider, or `provider:model`).
    pub replaced_by: Option<String>,
    /// The document this row is read from.
    pub source: String,
    /// What the row assumes where the document is silent.
    pub assumption: Option<String>,
    /// Where the row came from: `built-in`, or the operator's file.
    #[serde(default)]
    pub origin: String,
}

/// The request fields a job's spec sends, written at enqueue from its model's row, so the
/// request a worker sends is the one that was validated and priced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProviderRequest {
    /// Duration, aspect, quality, fixed fields and options, as the provider names them.
    pub fields: Map<String, Value>,
    /// Where the images go, when the job has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<ImagesField>,
    /// The model's API family path segment, for contracts with one per family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// No field carries the job's aspect (the row sends neither an aspect nor a size for
    /// it): the provider picks the frame (from the start image, or its one shape), so the
    /// stored video's shape is not held against the aspect.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub frame_unsent: bool,
}

impl ModelRule {
    /// What a user must know of this model's state, if it is not plainly active:
    /// `"sora-2 of openai is retired since 2026-09-24; use veo-3.1"`.
    pub fn lifecycle_notice(&self) -> Option<String> {
        if self.status == ModelStatus::Active {
            return None;
        }
        let since = self
            .status_since
            .as_deref()
            .map(|since| format!(" since {since}"))
            .unwrap_or_default();
        let instead = self
            .replaced_by
            .as_deref()
            .map(|model| format!("; use {model}"))
            .unwrap_or_default();
        Some(format!(
            "{} of {} is {}{since}{instead}",
            self.model, self.provider, self.status
        ))
    }

    /// The request fields for these choices and options (already checked against this row).
    pub fn provider_request(
        &self,
        duration_s: u32,
        aspect: Aspect,
        quality: Quality,
        extra: &Map<String, Value>,
    ) -> ProviderRequest {
        let request = &self.request;
        let mut fields = request.fixed.clone().unwrap_or_default();
        if let Some(DurationRule::Send(duration)) = &request.duration {
            let value = match duration.form {
                DurationForm::String => Value::from(duration_s.to_string()),
                DurationForm::Number => Value::from(duration_s),
                DurationForm::Seconds => Value::from(format!("{duration_s}s")),
            };
            fields.insert(duration.field.clone(), value);
        }
        let choices = [
            (&request.aspect, aspect.as_str().to_owned()),
            (&request.quality, quality.as_str().to_owned()),
            (&request.size, format!("{aspect}/{quality}")),
        ];
        let mut frame_sent = false;
        for (carries_frame, (rule, key)) in [true, false, true].into_iter().zip(choices) {
            if let Some(field) = rule.as_ref().and_then(ChoiceRule::field)
                && let Some(value) = field.values.get(&key)
            {
                fields.insert(field.field.clone(), value.clone());
                frame_sent |= carries_frame;
            }
        }
        fields.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        ProviderRequest {
            fields,
            images: request.images.clone(),
            family: request.family.clone(),
            frame_unsent: !frame_sent,
        }
    }

    /// USD per second at `quality`, if the row prices it.
    pub fn usd_per_second(&self, quality: Quality) -> Option<f64> {
        self.price.get(&quality).copied()
    }

    /// What is wrong with this row, if anything: every list non-empty, every choice it
    /// allows written somewhere (or deliberately not sent), prices not negative.
    fn problem(&self) -> Option<String> {
        if self.durations.is_empty() || self.aspects.is_empty() || self.qualities.is_empty() {
            return Some("durations, aspects and qualities must each name at least one".into());
        }
        match &self.request.duration {
            None => return Some("request.duration is not set (nor by its contract)".into()),
            Some(DurationRule::Omit(_)) if self.durations.len() != 1 => {
                return Some("a duration sent as no field allows one duration only".into());
            }
            _ => {}
        }
        if let Some(rule) = self.request.size.as_ref().and_then(ChoiceRule::field) {
            for aspect in &self.aspects {
                for quality in &self.qualities {
                    if !rule.values.contains_key(&format!("{aspect}/{quality}")) {
                        return Some(format!("request.size has no value for {aspect}/{quality}"));
                    }
                }
            }
        }
        if self.price.values().any(|&usd| usd.is_nan() || usd < 0.0) {
            return Some("a price must be a number of USD per second, not negative".into());
        }
        if let Some(field) = self
            .extra
            .keys()
            .find(|k| self.reserved_fields().contains(*k))
        {
            return Some(format!(
                "extra.{field} would overwrite a field reelq writes"
            ));
        }
        None
    }

    fn reserved_fields(&self) -> BTreeSet<String> {
        let r = &self.request;
        let choice = |rule: &Option<ChoiceRule>| {
            rule.as_ref()
                .and_then(ChoiceRule::field)
                .map(|f| f.field.clone())
        };
        [
            match &r.duration {
                Some(DurationRule::Send(d)) => Some(d.field.clone()),
                _ => None,
            },
            choice(&r.aspect),
            choice(&r.quality),
            choice(&r.size),
            r.images.as_ref().map(|i| i.field.clone()),
            Some("model".into()),
            Some("prompt".into()),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// A contract's defaults: its mapping and the document it is read from.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContractDefaults {
    source: String,
    request: RequestMap,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    contract: BTreeMap<ProviderKind, ContractDefaults>,
    #[serde(default)]
    model: Vec<ModelRule>,
    #[serde(default)]
    route: Vec<RouteRule>,
}

/// A catalog file that could not be read, naming the file and the row.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("catalog {origin}: {message}")]
pub struct CatalogError {
    pub origin: String,
    pub message: String,
}

/// The models reelq knows: the built-in rows, with an operator's rows over them.
#[derive(Clone, Debug)]
pub struct Catalog {
    contracts: BTreeMap<ProviderKind, ContractDefaults>,
    models: Vec<ModelRule>,
    routes: Vec<RouteRule>,
}

impl Catalog {
    /// The catalog compiled into reelq.
    pub fn built_in() -> &'static Catalog {
        static BUILT_IN: OnceLock<Catalog> = OnceLock::new();
        BUILT_IN.get_or_init(|| {
            let empty = Catalog {
                contracts: BTreeMap::new(),
                models: Vec::new(),
                routes: Vec::new(),
            };
            empty
                .with_file(BUILT_IN_CATALOG, "built-in")
                .expect("the built-in catalog is valid (a unit test reads it)")
        })
    }

    /// This catalog with `text`'s rows added, each replacing the row of the same provider
    /// and model; `origin` (the file's name) is recorded on each row and named in errors.
    /// The file may also replace a contract's default mapping.
    pub fn with_file(&self, text: &str, origin: &str) -> Result<Catalog, CatalogError> {
        let error = |message: String| CatalogError {
            origin: origin.to_owned(),
            message,
        };
        let file: CatalogFile = toml::from_str(text).map_err(|err| error(err.to_string()))?;
        let mut catalog = self.clone();
        catalog.contracts.extend(file.contract);
        let mut seen = BTreeSet::new();
        for mut row in file.model {
            let name = format!("{} model {:?}", row.provider, row.model);
            if !seen.insert((row.provider, row.model.clone())) {
                return Err(error(format!("{name} is listed twice")));
            }
            if let Some(contract) = catalog.contracts.get(&row.provider) {
                row.request = std::mem::take(&mut row.request).over(&contract.request);
            }
            row.origin = origin.to_owned();
            if let Some(problem) = row.problem() {
                return Err(error(format!("{name}: {problem}")));
            }
            match catalog
                .models
                .iter_mut()
                .find(|known| known.provider == row.provider && known.model == row.model)
            {
                Some(known) => *known = row,
                None => catalog.models.push(row),
            }
        }
        let mut seen = BTreeSet::new();
        for mut route in file.route {
            if !seen.insert(route.name.clone()) {
                return Err(error(format!("route {:?} is listed twice", route.name)));
            }
            if let Some(problem) = route.problem(&catalog) {
                return Err(error(format!("route {:?} {problem}", route.name)));
            }
            route.origin = origin.to_owned();
            catalog.routes.retain(|known| known.name != route.name);
            catalog.routes.push(route);
        }
        Ok(catalog)
    }

    pub fn models(&self) -> &[ModelRule] {
        &self.models
    }

    /// The routes: a kind of video several candidates sell (`[[route]]` rows).
    pub fn routes(&self) -> &[RouteRule] {
        &self.routes
    }

    pub fn route(&self, name: &str) -> Option<&RouteRule> {
        self.routes.iter().find(|route| route.name == name)
    }

    pub fn models_of(&self, provider: ProviderKind) -> impl Iterator<Item = &ModelRule> {
        self.models
            .iter()
            .filter(move |rule| rule.provider == provider)
    }

    /// This catalog with every row taking jobs, as each model was sold: for replaying what a
    /// provider documented of a model since retired (the contract fixtures), and for tests of
    /// the mapping that use the retired rows' shapes.
    pub fn as_once_sold(&self) -> Catalog {
        let mut catalog = self.clone();
        for rule in &mut catalog.models {
            rule.status = ModelStatus::Active;
        }
        catalog
    }

    /// [`Catalog::as_once_sold`] of the built-in catalog.
    #[cfg(test)]
    pub(crate) fn built_in_as_once_sold() -> &'static Catalog {
        static SOLD: OnceLock<Catalog> = OnceLock::new();
        SOLD.get_or_init(|| Catalog::built_in().as_once_sold())
    }

    /// The row for `provider`'s `model`, if the catalog has it.
    pub fn rule(&self, provider: ProviderKind, model: &str) -> Option<&ModelRule> {
        self.models_of(provider).find(|rule| rule.model == model)
    }

    /// The document a contract's default mapping is read from.
    pub fn contract_source(&self, provider: ProviderKind) -> Option<&str> {
        self.contracts.get(&provider).map(|c| c.source.as_str())
    }

    /// The request for a model this catalog does not list (a job enqueued by another
    /// deployment's catalog): its contract's mapping alone.
    pub(crate) fn contract_request(
        &self,
        provider: ProviderKind,
        duration_s: u32,
        aspect: Aspect,
        quality: Quality,
    ) -> ProviderRequest {
        let request = self
            .contracts
            .get(&provider)
            .map(|c| c.request.clone())
            .unwrap_or_default();
        let row = ModelRule {
            provider,
            model: String::new(),
            durations: vec![duration_s],
            aspects: vec![aspect],
            qualities: vec![quality],
            images: ImageRule::None,
            inline_images: false,
            character: false,
            max_prompt_words: None,
            max_prompt_chars: None,
            price: BTreeMap::new(),
            request,
            extra: BTreeMap::new(),
            status: ModelStatus::Active,
            status_since: None,
            replaced_by: None,
            source: String::new(),
            assumption: None,
            origin: String::new(),
        };
        row.provider_request(duration_s, aspect, quality, &Map::new())
    }
}

impl fmt::Display for ImageRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRule::None => f.write_str("none"),
            ImageRule::Exactly(n) => write!(f, "exactly {n}"),
            ImageRule::AtMost(n) => write!(f, "at most {n}"),
        }
    }
}

#[cfg(test)]
mod tests;
