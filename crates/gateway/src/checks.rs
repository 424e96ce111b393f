//! The connection checks' settings in force: greylisting, DNSBL/URIBL and FCrDNS as the
//! configuration file sets them, with the keys changed in the store on top
//! (`config_overrides`, written by the console, the API and `portcullis settings set`).
//! The policy reloads them, so a change reaches every node within seconds, without a
//! restart; removing a change gives the key back to the file.
//!
//! A change is checked the way the file is: the section with the new value must
//! deserialize (unknown keys and wrong types refused) and pass the section's own
//! validation, before it is stored.

use portcullis_filter::dnsbl::{DnsblSettings, FcrdnsSettings};
use portcullis_filter::greylist::{Greylist, GreylistSettings};
use portcullis_store::ConfigOverride;
use serde_json::{Map, Value};

/// The sections whose keys may be changed in the store.
pub const SECTIONS: [&str; 3] = ["greylist", "dnsbl", "fcrdns"];

/// The settings of the connection checks, as one snapshot.
#[derive(Debug, Clone)]
pub struct Checks {
    pub greylist: Greylist,
    pub dnsbl: DnsblSettings,
    pub fcrdns: FcrdnsSettings,
}

/// Why a change cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("no section {0:?}: settings of greylist, dnsbl and fcrdns may be changed")]
    Section(String),
    #[error("[{section}] has no key {key:?}; it has {known}")]
    Key {
        section: String,
        key: String,
        known: String,
    },
    #[error("[{section}] {key}: {reason}")]
    Value {
        section: String,
        key: String,
        reason: String,
    },
}

impl Default for Checks {
    fn default() -> Self {
        Checks::new(
            GreylistSettings::default(),
            DnsblSettings::default(),
            FcrdnsSettings::default(),
        )
    }
}

impl Checks {
    /// The file's settings (already validated when the file was read).
    pub fn new(greylist: GreylistSettings, dnsbl: DnsblSettings, fcrdns: FcrdnsSettings) -> Self {
        Checks {
            greylist: Greylist::new(greylist),
            dnsbl,
            fcrdns,
        }
    }

    /// One section as JSON, every key present.
    pub fn section(&self, section: &str) -> Result<Map<String, Value>, ChangeError> {
        let value = match section {
            "greylist" => serde_json::to_value(self.greylist.settings()),
            "dnsbl" => serde_json::to_value(&self.dnsbl),
            "fcrdns" => serde_json::to_value(&self.fcrdns),
            other => return Err(ChangeError::Section(other.to_string())),
        };
        match value {
            Ok(Value::Object(map)) => Ok(map),
            // The settings types are structs: they always serialize to objects.
            _ => Err(ChangeError::Section(section.to_string())),
        }
    }

    /// These settings with one key of one section set to `value`, checked as the file's
    /// would be.
    pub fn with(&self, section: &str, key: &str, value: Value) -> Result<Checks, ChangeError> {
        let mut map = self.section(section)?;
        if !map.contains_key(key) {
            return Err(ChangeError::Key {
                section: section.to_string(),
                key: key.to_string(),
                known: map.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        }
        map.insert(key.to_string(), value);
        let bad = |reason: String| ChangeError::Value {
            section: section.to_string(),
            key: key.to_string(),
            reason,
        };
        let mut out = self.clone();
        let map = Value::Object(map);
        match section {
            "greylist" => {
                let g: GreylistSettings =
                    serde_json::from_value(map).map_err(|e| bad(e.to_string()))?;
                g.validate().map_err(|e| bad(e.to_string()))?;
                out.greylist = Greylist::new(g);
            }
            "dnsbl" => {
                let d: DnsblSettings =
                    serde_json::from_value(map).map_err(|e| bad(e.to_string()))?;
                d.validate().map_err(|e| bad(e.to_string()))?;
                out.dnsbl = d;
            }
            _ => {
                let f: FcrdnsSettings =
                    serde_json::from_value(map).map_err(|e| bad(e.to_string()))?;
                if f.timeout_ms == 0 {
                    return Err(bad("must be more than 0".into()));
                }
                out.fcrdns = f;
            }
        }
        Ok(out)
    }

    /// The file's settings with the stored changes on top. A stored change that no longer
    /// fits (a key an upgrade removed, a file that now conflicts with it) is left out and
    /// returned with the reason, for the caller to log; the rest apply.
    pub fn with_overrides(&self, rows: &[ConfigOverride]) -> (Checks, Vec<(String, String)>) {
        let mut out = self.clone();
        let mut skipped = Vec::new();
        for o in rows {
            let name = format!("{}.{}", o.section, o.key);
            let applied = serde_json::from_str::<Value>(&o.value)
                .map_err(|e| e.to_string())
                .and_then(|v| out.with(&o.section, &o.key, v).map_err(|e| e.to_string()));
            match applied {
                Ok(next) => out = next,
                Err(reason) => skipped.push((name, reason)),
            }
        }
        (out, skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_filter::greylist::GreylistMode;
    use serde_json::json;

    fn base() -> Checks {
        Checks::default()
    }

    fn row(section: &str, key: &str, value: &str) -> ConfigOverride {
        ConfigOverride {
            section: section.into(),
            key: key.into(),
            value: value.into(),
            changed_by: "test".into(),
            changed_at: 0,
        }
    }

    #[test]
    fn stored_changes_apply_over_the_file() {
        let rows = [
            row("greylist", "mode", "\"always\""),
            row("greylist", "delay_secs", "60"),
            row(
                "dnsbl",
                "zones",
                r#"[{"zone":"bl.example","weight":2.5,"codes":["127.0.0.[2..11]"]}]"#,
            ),
            row("fcrdns", "enabled", "false"),
        ];
        let (c, skipped) = base().with_overrides(&rows);
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(c.greylist.settings().mode, GreylistMode::Always);
        assert_eq!(c.greylist.settings().delay_secs, 60);
        // Untouched keys keep the file's value.
        assert_eq!(c.greylist.settings().retry_window_secs, 4 * 3600);
        assert_eq!(c.dnsbl.zones.len(), 1);
        assert_eq!(c.dnsbl.zones[0].codes[0].to_string(), "127.0.0.[2..11]");
        assert!(c.dnsbl.zones[0].ipv4 && c.dnsbl.zones[0].ipv6);
        assert!(!c.fcrdns.enabled);
    }

    #[test]
    fn changes_that_do_not_fit_are_refused_or_skipped() {
        let b = base();
        let e = b.with("greylist", "delay", json!(1)).unwrap_err();
        assert!(e.to_string().contains("delay_secs"), "{e}");
        assert!(matches!(
            b.with("spam", "x", json!(1)),
            Err(ChangeError::Section(_))
        ));
        // The section's own validation: the delay must stay under the retry window.
        let e = b
            .with("greylist", "delay_secs", json!(5 * 3600))
            .unwrap_err();
        assert!(e.to_string().contains("delay_secs"), "{e}");
        let e = b.with("greylist", "mode", json!("sometimes")).unwrap_err();
        assert!(e.to_string().contains("sometimes"), "{e}");
        let e = b
            .with("dnsbl", "zones", json!([{"zone": "x", "codes": ["1.2.3"]}]))
            .unwrap_err();
        assert!(e.to_string().starts_with("[dnsbl] zones:"), "{e}");
        assert!(b.with("dnsbl", "timeout_ms", json!(0)).is_err());
        assert!(b.with("fcrdns", "timeout_ms", json!(0)).is_err());

        // A stored change that no longer fits is skipped; the others apply.
        let (c, skipped) = b.with_overrides(&[
            row("greylist", "gone_key", "1"),
            row("greylist", "delay_secs", "not json"),
            row("fcrdns", "max_names", "5"),
        ]);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert_eq!(c.fcrdns.max_names, 5);
    }
}
