//! A job's create request as its catalog row wrote it at enqueue
//! ([`reelq_core::ProviderRequest`]): the fields every adapter sends, with the prompt and
//! images added, and what a provider's record would echo of them.

use reelq_core::{ImagesForm, JobSpec};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};

use crate::TaskEcho;

/// The job's request fields, prompt and images, as its model's row names them (each
/// contract puts them at the top of its body, or, for kie, in `input`).
pub(crate) fn request_fields(spec: &JobSpec) -> Map<String, Value> {
    let request = spec.provider_request();
    let mut fields = request.fields.clone();
    fields.insert("prompt".into(), Value::from(spec.prompt.as_str()));
    if let (Some(images), Some(first)) = (&request.images, spec.image_urls.first()) {
        let value = match images.form {
            ImagesForm::List => json!(spec.image_urls),
            ImagesForm::One => json!(first),
        };
        fields.insert(images.field.clone(), value);
    }
    fields
}

/// The model and the scalar fields of a request, written as text: what a provider's
/// record of the create can be compared on.
pub(crate) fn echo_of(model: &Value, fields: &Map<String, Value>) -> TaskEcho {
    let text = |value: &Value| match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    std::iter::once(("model", model))
        .chain(fields.iter().map(|(k, v)| (k.as_str(), v)))
        .filter_map(|(field, value)| Some((field.to_owned(), text(value)?)))
        .collect()
}

/// Reads a field that providers sometimes send as `null` as its default (an empty list,
/// `false`, ""), so a `null` where a value was expected never turns a billed answer into
/// an unreadable one.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}
