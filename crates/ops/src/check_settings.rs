//! The connection checks that are node settings, not policy: greylisting, DNSBL and
//! URIBL zones, FCrDNS. They live in the configuration file (`[greylist]`, `[dnsbl]`,
//! `[fcrdns]`), so they are shown here read-only, each value with the key that sets it;
//! changing one is an edit of that file and a restart.

use crate::{Access, Ops, Result, Scope};
use portcullis_filter::dnsbl::DnsblZone;
use portcullis_filter::greylist::GreylistMode;

/// One setting in force.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Setting {
    /// `[greylist] delay_secs`.
    pub key: String,
    pub value: String,
}

/// One DNSBL or URIBL zone in force.
#[derive(Debug, Clone, serde::Serialize)]
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
#[derive(Debug, Clone, serde::Serialize)]
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
}

fn setting(section: &str, key: &str, value: impl ToString) -> Setting {
    Setting {
        key: format!("[{section}] {key}"),
        value: value.to_string(),
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

impl Ops {
    /// The checks' settings in force on this node, with the file and keys that set them.
    pub fn check_settings(&self) -> Result<CheckSettings> {
        self.actor().require(Access::ReadPolicy, &Scope::Global)?;
        let c = &self.config;
        let g = &c.greylist;
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
        let d = &c.dnsbl;
        let dnsbl = vec![
            setting("dnsbl", "timeout_ms", d.timeout_ms),
            setting("dnsbl", "uribl_max_lookups", d.uribl_max_lookups),
        ];
        let f = &c.fcrdns;
        let fcrdns = vec![
            setting("fcrdns", "enabled", f.enabled),
            setting("fcrdns", "no_ptr_score", f.no_ptr_score),
            setting("fcrdns", "mismatch_score", f.mismatch_score),
            setting("fcrdns", "max_names", f.max_names),
            setting("fcrdns", "timeout_ms", f.timeout_ms),
        ];
        Ok(CheckSettings {
            file: self.config_file.as_ref().map(|p| p.display().to_string()),
            greylist,
            dnsbl,
            zones: d.zones.iter().map(|z| zone(z, "dnsbl")).collect(),
            uribl: d.uribl.iter().map(|z| zone(z, "uribl")).collect(),
            fcrdns,
        })
    }
}
