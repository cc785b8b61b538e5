//! Durations in the config are written as people say them: `"30s"`, `"5m"`, `"1h 30m"`,
//! `"7days"` (humantime's forms). Configs written for releases before name them in
//! milliseconds under a `_ms` suffix (`lease_ms = 60000`); those still read, as if written
//! `lease = "60000ms"`, so an upgrade needs no config change.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use figment::{
    Metadata, Profile, Provider,
    value::{Dict, Map, Value},
};
use serde::{Deserialize, Deserializer, de::Error as _};

/// A duration setting: a humantime string.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(value: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(value)?;
    humantime::parse_duration(&text).map_err(|err| {
        D::Error::custom(format!(
            "{text:?} is not a duration ({err}); write e.g. \"30s\", \"5m\" or \"7days\""
        ))
    })
}

/// A config source whose `<name>_ms = <integer>` keys (at any level) read as
/// `<name> = "<integer>ms"`, noting each one it found in `found` (for a warning once
/// logging runs). A source that sets both forms of one setting is refused.
pub(crate) struct MillisecondKeys<P> {
    pub(crate) source: P,
    pub(crate) found: Arc<Mutex<Vec<String>>>,
}

impl<P: Provider> Provider for MillisecondKeys<P> {
    fn metadata(&self) -> Metadata {
        self.source.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut data = self.source.data()?;
        let mut found = Vec::new();
        for dict in data.values_mut() {
            rename_millisecond_keys(dict, "", &mut found).map_err(figment::Error::from)?;
        }
        self.found
            .lock()
            .expect("only this loader holds it")
            .extend(found);
        Ok(data)
    }
}

fn rename_millisecond_keys(
    dict: &mut Dict,
    path: &str,
    found: &mut Vec<String>,
) -> Result<(), String> {
    let keys: Vec<String> = dict.keys().cloned().collect();
    for key in keys {
        if let Some(Value::Dict(_, inner)) = dict.get_mut(&key) {
            rename_millisecond_keys(inner, &format!("{path}{key}."), found)?;
            continue;
        }
        let Some(name) = key.strip_suffix("_ms") else {
            continue;
        };
        // TOML's integers are signed; a negative one is no duration.
        let Some(ms) = dict[&key].to_num().and_then(|n| n.to_u128_lossy()) else {
            return Err(format!(
                "{key} is in milliseconds and must be a whole number (or write {name} = \"30s\")"
            ));
        };
        if dict.contains_key(name) {
            return Err(format!("both {name} and {key} are set; keep {name}"));
        }
        dict.remove(&key);
        dict.insert(name.to_owned(), Value::from(format!("{ms}ms")));
        found.push(format!("{path}{key}"));
    }
    Ok(())
}
