//! Settings come from flags, then environment variables, then the `Values`
//! of `local.settings.json` in the working directory (the Azure Functions
//! convention), in that order of precedence. A setting has one name, used
//! both as the environment variable and as the key in `Values`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};
use serde::Deserialize;

pub const LOCAL_SETTINGS_FILE: &str = "local.settings.json";

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct LocalSettings {
    #[serde(default)]
    values: HashMap<String, serde_json::Value>,
}

/// The `Values` of `local.settings.json`, if the file exists.
pub struct Settings {
    values: HashMap<String, String>,
}

impl Settings {
    pub fn load(dir: &Path) -> anyhow::Result<Settings> {
        let path = dir.join(LOCAL_SETTINGS_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings { values: HashMap::new() }),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let file: LocalSettings =
            serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
        let mut values = HashMap::new();
        for (name, value) in file.values {
            let text = match value {
                serde_json::Value::String(text) => text,
                serde_json::Value::Number(_) | serde_json::Value::Bool(_) => value.to_string(),
                _ => bail!("{}: Values.{name} must be a string", path.display()),
            };
            values.insert(name, text);
        }
        Ok(Settings { values })
    }

    /// Where a setting's value comes from, if it has one.
    pub fn source(&self, name: &str) -> Option<&'static str> {
        if std::env::var(name).is_ok_and(|v| !v.is_empty()) {
            Some("environment")
        } else if self.values.get(name).is_some_and(|v| !v.is_empty()) {
            Some(LOCAL_SETTINGS_FILE)
        } else {
            None
        }
    }

    /// A setting from the environment, else from `local.settings.json`; an
    /// empty value is no value. (Flags are applied by the caller, before this.)
    pub fn get(&self, name: &str) -> Option<String> {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| self.values.get(name).filter(|v| !v.is_empty()).cloned())
    }
}
