//! The connection checks' settings: greylisting, DNSBL and URIBL zones, FCrDNS. The
//! configuration file (`[greylist]`, `[dnsbl]`, `[fcrdns]`) gives their values; a key
//! changed here (console, API, `portcullis settings set`) is kept in the store over the
//! file's value, reaches every node with the next policy reload (seconds), and is given
//! back to the file by `reset`. Each value is shown with the key that sets it and where
//! it came from.

use crate::{Access, Ops, OpsError, Result, Scope};
use portcullis_filter::dnsbl::DnsblZone;
use portcullis_filter::greylist::GreylistMode;
use portcullis_gateway::checks::{ChangeError, Checks, SECTIONS};
use portcullis_queue::spool::now;
use portcullis_store::ConfigOverride;
use serde_json::Value;

/// One setting in force.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Setting {
    /// `[greylist] delay_secs`.
    pub key: String,
    pub value: String,
    /// `greylist`.
    pub section: String,
    /// `delay_secs`.
    pub name: String,
    /// Who changed it in the store; `None`: the configuration file's value.
    pub changed_by: Option<String>,
    /// When (unix seconds).
    pub changed_at: Option<i64>,
}

/// One DNSBL or URIBL zone in force.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Zone {
    pub zone: String,
    /// The finding it gives: `dnsbl.<name>` or `uribl.<name>`.
    pub finding: String,
    pub weight: f64,
    /// Answers that count as a listing; empty: any in 127.0.0.0/8.
    pub codes: String,
    pub families: String,
}

/// Greylisting, DNSBL, URIBL and FCrDNS as the running configuration has them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CheckSettings {
    /// The configuration file they come from; `None`: built-in defaults (no file).
    pub file: Option<String>,
    pub greylist: Vec<Setting>,
    pub dnsbl: Vec<Setting>,
    /// `[[dnsbl.zones]]`.
    pub zones: Vec<Zone>,
    /// `[[dnsbl.uribl]]`.
    pub uribl: Vec<Zone>,
    pub fcrdns: Vec<Setting>,
    /// Every key changed in the store (the zone lists among them), with its JSON value.
    pub changed: Vec<ConfigOverride>,
    /// `dnsbl.zones` and `dnsbl.uribl` in TOML's inline syntax, as `settings set` and the
    /// console's form take them.
    pub zones_toml: String,
    pub uribl_toml: String,
}

/// A JSON value in TOML's inline syntax (absent options left out: TOML has no null).
pub fn toml_text(value: &Value) -> String {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    match toml::Value::try_from(strip(value)) {
        Ok(v) => v.to_string(),
        Err(_) => value.to_string(),
    }
}

fn setting(section: &str, key: &str, value: impl ToString) -> Setting {
    Setting {
        key: format!("[{section}] {key}"),
        value: value.to_string(),
        section: section.to_string(),
        name: key.to_string(),
        changed_by: None,
        changed_at: None,
    }
}

fn zone(z: &DnsblZone, kind: &str) -> Zone {
    let families = match (z.ipv4, z.ipv6) {
        (true, true) => "IPv4, IPv6",
        (true, false) => "IPv4",
        (false, true) => "IPv6",
        (false, false) => "none",
    };
    let mut codes: Vec<String> = z.codes.iter().map(|c| c.to_string()).collect();
    if let Some(mask) = z.mask {
        codes.push(format!("mask 0x{mask:x}"));
    }
    Zone {
        zone: z.zone.clone(),
        finding: format!("{kind}.{}", z.name.as_deref().unwrap_or(&z.zone)),
        weight: z.weight,
        codes: codes.join(", "),
        families: families.into(),
    }
}

fn change_error(e: ChangeError) -> OpsError {
    match e {
        ChangeError::Section(s) => OpsError::invalid(
            "settings section",
            &s,
            format!("one of {}", SECTIONS.join(", ")),
        ),
        ChangeError::Key {
            section,
            key,
            known,
        } => OpsError::invalid(
            "setting",
            &format!("{section}.{key}"),
            format!("[{section}] has {known}"),
        ),
        ChangeError::Value {
            section,
            key,
            reason,
        } => OpsError::invalid("value of setting", &format!("{section}.{key}"), reason),
    }
}

/// `greylist.delay_secs` into its section and key.
pub fn split_name(name: &str) -> Result<(&str, &str)> {
    name.trim()
        .split_once('.')
        .filter(|(s, k)| !s.is_empty() && !k.is_empty())
        .ok_or_else(|| {
            OpsError::invalid(
                "setting",
                name,
                "give it as SECTION.KEY, e.g. greylist.delay_secs",
            )
        })
}

/// Text as the command line and the console's forms give it, read as the value of a key
/// whose current value is `like`: numbers, `true`/`false`, words, and lists or tables in
/// TOML's inline syntax (`[{ zone = "bl.example", weight = 2.0 }]`), as the file writes
/// them.
pub fn parse_value(text: &str, like: &Value) -> std::result::Result<Value, String> {
    let text = text.trim();
    match like {
        Value::Bool(_) => match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => Ok(Value::Bool(true)),
            "false" | "no" | "off" => Ok(Value::Bool(false)),
            _ => Err(format!("{text:?} is not true or false")),
        },
        Value::Number(n) if n.is_f64() => text
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("{text:?} is not a number")),
        Value::Number(_) => text
            .parse::<u64>()
            .map(|n| Value::Number(n.into()))
            .map_err(|_| format!("{text:?} is not a whole number of 0 or more")),
        Value::String(_) => Ok(Value::String(text.trim_matches('"').to_string())),
        _ => {
            let doc: toml::Table = toml::from_str(&format!("v = {text}"))
                .map_err(|e| format!("{text:?} is not a TOML value: {}", e.message().trim()))?;
            let v = doc
                .get("v")
                .cloned()
                .unwrap_or(toml::Value::Array(Vec::new()));
            serde_json::to_value(v).map_err(|e| e.to_string())
        }
    }
}

impl Ops {
    /// The connection checks as the configuration file sets them.
    fn file_checks(&self) -> Checks {
        let c = &self.config;
        Checks::new(c.greylist.clone(), c.dnsbl.clone(), c.fcrdns.clone())
    }

    /// The file's settings with the store's changes, and those changes.
    async fn checks_in_force(&self) -> Result<(Checks, Vec<ConfigOverride>)> {
        let rows = self.store().list_config_overrides().await?;
        let (checks, _skipped) = self.file_checks().with_overrides(&rows);
        Ok((checks, rows))
    }

    /// Change one key (`section`, `key`) to `value`, checked as the file's would be, and
    /// keep it in the store over the file's value. Every node applies it at its next
    /// policy reload.
    pub async fn set_check_setting(&self, section: &str, key: &str, value: Value) -> Result<()> {
        self.actor().require(Access::WritePolicy, &Scope::Global)?;
        let (section, key) = (section.trim(), key.trim());
        let (current, _) = self.checks_in_force().await?;
        let before = current
            .section(section)
            .map_err(change_error)?
            .get(key)
            .cloned();
        current
            .with(section, key, value.clone())
            .map_err(change_error)?;
        self.store()
            .set_config_override(&ConfigOverride {
                section: section.to_string(),
                key: key.to_string(),
                value: value.to_string(),
                changed_by: self.actor().name.clone(),
                changed_at: now(),
            })
            .await?;
        self.audit(
            "settings.set",
            &format!("{section}.{key}"),
            before,
            Some(value),
        )
        .await
    }

    /// [`Ops::set_check_setting`] with the value as text (the command line, a form),
    /// read as the key's type.
    pub async fn set_check_setting_text(&self, section: &str, key: &str, text: &str) -> Result<()> {
        self.actor().require(Access::WritePolicy, &Scope::Global)?;
        let (current, _) = self.checks_in_force().await?;
        let map = current.section(section.trim()).map_err(change_error)?;
        let like = map.get(key.trim()).ok_or_else(|| {
            change_error(ChangeError::Key {
                section: section.trim().to_string(),
                key: key.trim().to_string(),
                known: map.keys().cloned().collect::<Vec<_>>().join(", "),
            })
        })?;
        let value = parse_value(text, like).map_err(|reason| {
            OpsError::invalid(
                "value of setting",
                &format!("{}.{}", section.trim(), key.trim()),
                reason,
            )
        })?;
        self.set_check_setting(section, key, value).await
    }

    /// Give a changed key back to the configuration file.
    pub async fn reset_check_setting(&self, section: &str, key: &str) -> Result<()> {
        self.actor().require(Access::WritePolicy, &Scope::Global)?;
        let (section, key) = (section.trim(), key.trim());
        let rows = self.store().list_config_overrides().await?;
        let Some(old) = rows.iter().find(|o| o.section == section && o.key == key) else {
            return Err(OpsError::not_found(
                "changed setting",
                format!("{section}.{key}"),
            ));
        };
        let before = serde_json::from_str::<Value>(&old.value).ok();
        self.store().remove_config_override(section, key).await?;
        let after = self
            .file_checks()
            .section(section)
            .ok()
            .and_then(|m| m.get(key).cloned());
        self.audit("settings.reset", &format!("{section}.{key}"), before, after)
            .await
    }

    /// The checks' settings in force, with the file and keys that set them, and who
    /// changed those the store holds.
    pub async fn check_settings(&self) -> Result<CheckSettings> {
        self.actor().require(Access::ReadPolicy, &Scope::Global)?;
        let (checks, changed) = self.checks_in_force().await?;
        let mut s = self.describe_checks(&checks);
        for list in [&mut s.greylist, &mut s.dnsbl, &mut s.fcrdns] {
            for setting in list.iter_mut() {
                if let Some(o) = changed
                    .iter()
                    .find(|o| o.section == setting.section && o.key == setting.name)
                {
                    setting.changed_by = Some(o.changed_by.clone());
                    setting.changed_at = Some(o.changed_at);
                }
            }
        }
        s.changed = changed;
        Ok(s)
    }

    fn describe_checks(&self, checks: &Checks) -> CheckSettings {
        let g = checks.greylist.settings();
        let mode = match g.mode {
            GreylistMode::Always => "always",
            GreylistMode::Suspicious => "suspicious",
            GreylistMode::Never => "never",
        };
        let greylist = vec![
            setting("greylist", "mode", mode),
            setting("greylist", "suspicious_score", g.suspicious_score),
            setting("greylist", "delay_secs", g.delay_secs),
            setting("greylist", "retry_window_secs", g.retry_window_secs),
            setting(
                "greylist",
                "unconfirmed_expiry_secs",
                g.unconfirmed_expiry_secs,
            ),
            setting("greylist", "confirmed_expiry_secs", g.confirmed_expiry_secs),
            setting("greylist", "ipv4_prefix", g.ipv4_prefix),
            setting("greylist", "ipv6_prefix", g.ipv6_prefix),
            setting("greylist", "auto_allow_after", g.auto_allow_after),
        ];
        let d = &checks.dnsbl;
        let dnsbl = vec![
            setting("dnsbl", "timeout_ms", d.timeout_ms),
            setting("dnsbl", "uribl_max_lookups", d.uribl_max_lookups),
        ];
        let f = &checks.fcrdns;
        let fcrdns = vec![
            setting("fcrdns", "enabled", f.enabled),
            setting("fcrdns", "no_ptr_score", f.no_ptr_score),
            setting("fcrdns", "mismatch_score", f.mismatch_score),
            setting("fcrdns", "max_names", f.max_names),
            setting("fcrdns", "timeout_ms", f.timeout_ms),
        ];
        CheckSettings {
            file: self.config_file.as_ref().map(|p| p.display().to_string()),
            greylist,
            dnsbl,
            zones: d.zones.iter().map(|z| zone(z, "dnsbl")).collect(),
            uribl: d.uribl.iter().map(|z| zone(z, "uribl")).collect(),
            fcrdns,
            changed: Vec::new(),
            zones_toml: toml_text(&serde_json::to_value(&d.zones).unwrap_or_default()),
            uribl_toml: toml_text(&serde_json::to_value(&d.uribl).unwrap_or_default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_is_read_as_the_keys_type() {
        assert_eq!(parse_value("off", &json!(true)), Ok(json!(false)));
        assert_eq!(parse_value(" 2.5 ", &json!(3.0)), Ok(json!(2.5)));
        assert_eq!(parse_value("60", &json!(300)), Ok(json!(60)));
        assert!(parse_value("-1", &json!(300)).is_err());
        assert!(parse_value("NaN", &json!(3.0)).is_err());
        assert_eq!(
            parse_value("always", &json!("suspicious")),
            Ok(json!("always"))
        );
        assert_eq!(
            parse_value(r#"[{ zone = "bl.example", weight = 2.0 }]"#, &json!([])),
            Ok(json!([{"zone": "bl.example", "weight": 2.0}]))
        );
        assert!(parse_value("[{ zone = ", &json!([])).is_err());
        assert_eq!(parse_value("[]", &json!([])), Ok(json!([])));
        assert_eq!(
            split_name("greylist.delay_secs").unwrap(),
            ("greylist", "delay_secs")
        );
        assert!(split_name("greylist").is_err());
        assert!(split_name(".x").is_err());
    }

    #[test]
    fn zone_lists_read_back_from_their_toml_text() {
        let zones = json!([{"zone": "bl.example", "name": null, "weight": 2.0,
                            "codes": ["127.0.0.[2..11]"], "mask": null, "ipv4": true, "ipv6": false}]);
        let text = toml_text(&zones);
        assert!(
            !text.contains("null") && text.contains("bl.example"),
            "{text}"
        );
        let back = parse_value(&text, &json!([])).unwrap();
        assert_eq!(back[0]["codes"], json!(["127.0.0.[2..11]"]));
        assert_eq!(back[0]["ipv6"], json!(false));
        assert_eq!(toml_text(&json!([])), "[]");
    }
}
