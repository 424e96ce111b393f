//! `portcullis.toml`: what belongs to one node (listeners, hostname, data directory,
//! store URL, TLS files, DNS, delivery and limits). Every key has a safe default, so
//! `portcullis serve` runs without a file; errors name the file, the line and the key.
//! Policy (domains, networks, users) lives in the store, not here.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The name in the greeting, EHLO, Received headers and DSNs.
    pub hostname: String,
    pub data_dir: PathBuf,
    pub listen: Listen,
    pub tls: Tls,
    pub store: StoreConfig,
    pub dns: Dns,
    pub delivery: Delivery,
    pub limits: Limits,
    pub auth: Auth,
    pub log: Log,
    /// Spam thresholds the default rules use.
    pub spam: portcullis_filter::rules::SpamThresholds,
    pub quarantine: Quarantine,
    pub antivirus: Antivirus,
    pub dnsbl: portcullis_filter::dnsbl::DnsblSettings,
    pub fcrdns: portcullis_filter::dnsbl::FcrdnsSettings,
    pub greylist: portcullis_filter::greylist::GreylistSettings,
    pub attachments: portcullis_filter::attachments::AttachmentLimits,
    pub external: portcullis_filter::external::ExternalSettings,
    pub reports: Reports,
}

/// Outgoing reports about other domains' mail: DMARC aggregate reports (RFC 7489 §7.2)
/// to the `rua` of domains that send to us, TLS-RPT reports (RFC 8460) to domains we
/// deliver to. Both tell third parties about our traffic, so both are off by default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Reports {
    /// Send DMARC aggregate reports once a day.
    pub dmarc_aggregate: bool,
    /// Send TLS-RPT reports once a day.
    pub tls_rpt: bool,
    /// The organisation named as the reporter (`org_name`, `organization-name`).
    pub org_name: String,
    /// Sender address of the reports; empty: `noreply-reports@` + `hostname`.
    pub from: String,
    /// Hour of the day (UTC, 0–23) after which the previous day's reports go out.
    pub send_hour_utc: u8,
}

impl Config {
    /// The organisation named in outgoing reports: `[reports] org_name`, else the hostname.
    pub fn report_org(&self) -> String {
        match self.reports.org_name.trim() {
            "" => self.hostname.clone(),
            name => name.to_string(),
        }
    }

    /// The From address of outgoing reports: `[reports] from`, else
    /// `noreply-reports@<hostname>`.
    pub fn report_from(&self) -> String {
        match self.reports.from.trim() {
            "" => format!("noreply-reports@{}", self.hostname),
            from => from.to_string(),
        }
    }
}

impl Default for Reports {
    fn default() -> Self {
        Reports {
            dmarc_aggregate: false,
            tls_rpt: false,
            org_name: String::new(),
            from: String::new(),
            send_hour_utc: 1,
        }
    }
}

/// Virus scanning through clamd.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Antivirus {
    /// clamd endpoints, tried in order: `host:port` or `unix:/path`. Empty: no scanning.
    pub clamd: Vec<String>,
    /// Seconds one message's scan may take.
    pub timeout: u64,
    /// When no scanner answers: accept unscanned (true) or `451 4.7.0` (false).
    pub fail_open: bool,
}

impl Default for Antivirus {
    fn default() -> Self {
        Antivirus {
            clamd: Vec::new(),
            timeout: 30,
            fail_open: false,
        }
    }
}

/// The quarantine: how long held mail is kept, and the digests to recipients.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quarantine {
    /// Days a held message is kept before it is deleted.
    pub expiry_days: u64,
    /// Seconds between digest runs; 0 sends no digests.
    pub digest_interval_secs: u64,
    /// Base URL of the user portal that serves the one-click links in digests.
    pub portal_url: String,
    /// Days a digest link stays valid.
    pub link_days: u64,
}

impl Default for Quarantine {
    fn default() -> Self {
        Quarantine {
            expiry_days: 30,
            digest_interval_secs: 86400,
            portal_url: "https://localhost:8443/quarantine".into(),
            link_days: 14,
        }
    }
}

/// Inbound mail authentication (SPF, DKIM, ARC, DMARC).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    pub enabled: bool,
    /// authserv-id of Authentication-Results; default: `hostname`.
    pub authserv_id: Option<String>,
    /// Refuse at MAIL time when the sender's SPF says fail (`-all`).
    pub spf_reject_fail: bool,
    /// Refuse DMARC failures of domains publishing `p=reject` (550 5.7.1).
    pub dmarc_reject: bool,
    /// ARC sealers (mailing lists, forwarders) whose valid chain overrides a DMARC failure.
    pub trusted_arc_sealers: Vec<String>,
    /// Seal inbound mail with an ARC set signed with this domain's RSA DKIM key (from
    /// `dkim generate`); empty: no sealing.
    pub arc_seal_domain: String,
    /// How DMARC finds organizational domains: `psl` (the public suffix list, RFC 7489)
    /// or `tree-walk` (the DNS tree walk of DMARCbis).
    pub dmarc_org_domain: portcullis_filter::org_domain::OrgDomain,
    /// A newer copy of the public suffix list than the one built in, read at start and
    /// again when it changes; default `<data_dir>/public_suffix_list.dat`.
    pub public_suffix_list: Option<PathBuf>,
    /// Where `portcullis psl update` fetches the list from (HTTPS).
    pub public_suffix_url: String,
}

impl Auth {
    /// The file of `public_suffix_list`, or its default under `data_dir`.
    pub fn public_suffix_file(&self, data_dir: &Path) -> PathBuf {
        self.public_suffix_list
            .clone()
            .unwrap_or_else(|| data_dir.join("public_suffix_list.dat"))
    }
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            enabled: true,
            authserv_id: None,
            spf_reject_fail: false,
            dmarc_reject: true,
            trusted_arc_sealers: Vec::new(),
            arc_seal_domain: String::new(),
            dmarc_org_domain: Default::default(),
            public_suffix_list: None,
            public_suffix_url: "https://publicsuffix.org/list/public_suffix_list.dat".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    /// Port 25 in production: inbound MX and relay from internal servers. "" disables.
    pub smtp: String,
    /// Port 587: STARTTLS then AUTH required.
    pub submission: String,
    /// Port 465: implicit TLS, AUTH required.
    pub submissions: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// PEM certificate chain; when unset, a self-signed one is made under data_dir/tls.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite:///path/portcullis.db` or `postgres://user:password@host/db`; default
    /// `<data_dir>/portcullis.db`.
    pub url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dns {
    /// `["127.0.0.1:5353"]`; empty uses /etc/resolv.conf.
    pub nameservers: Vec<SocketAddr>,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Delivery {
    /// `host:port` for all mail not routed to a configured domain; unset uses MX.
    pub smarthost: Option<String>,
    /// none | may | encrypt | verify | dane
    pub smarthost_tls: String,
    pub smarthost_user: Option<String>,
    pub smarthost_password: Option<String>,
    /// Port of MX hosts; 25 except in tests.
    pub mx_port: u16,
    pub concurrency: usize,
    pub min_backoff_secs: u64,
    pub max_backoff_secs: u64,
    pub max_lifetime_secs: u64,
    /// 0 sends delay DSNs only when the sender asked with NOTIFY=DELAY.
    pub delay_warning_secs: u64,
    /// How long an idle connection is kept for the next message to the same server.
    pub connection_idle_secs: u64,
    pub connect_timeout_secs: u64,
    pub command_timeout_secs: u64,
    pub data_timeout_secs: u64,
    /// MTA-STS (RFC 8461) for delivery by MX.
    pub mta_sts: bool,
    /// DANE (RFC 7672) for delivery by MX and routes with TLS mode `dane`.
    pub dane: bool,
    /// Test/lab: HTTPS port of MTA-STS policy hosts (443).
    pub mta_sts_port: u16,
    /// Test/lab: PEM file of CA certificates trusted in addition to the WebPKI roots
    /// (verify routes, MTA-STS policy hosts and MX hosts).
    pub extra_ca_file: Option<PathBuf>,
    /// Test/lab: DNSKEY records trusted instead of the root's for DNSSEC (DANE).
    pub dnssec_trust_anchor: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_line_length: usize,
    pub max_errors: usize,
    pub max_auth_failures: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub command_timeout_secs: u64,
    pub data_timeout_secs: u64,
    /// The longest one connection may last in all.
    pub session_timeout_secs: u64,
    /// New connections one address may open per minute (0: no limit).
    pub max_connection_rate_per_ip: u32,
    /// Messages one client (authenticated user, else address) may send per hour (0: no limit).
    pub max_message_rate_per_client: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// tracing filter, e.g. `info` or `portcullis=debug`.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hostname: default_hostname(),
            data_dir: PathBuf::from("./data"),
            listen: Listen::default(),
            tls: Tls::default(),
            store: StoreConfig::default(),
            dns: Dns::default(),
            delivery: Delivery::default(),
            limits: Limits::default(),
            auth: Auth::default(),
            log: Log::default(),
            spam: Default::default(),
            quarantine: Quarantine::default(),
            antivirus: Antivirus::default(),
            dnsbl: Default::default(),
            fcrdns: Default::default(),
            greylist: Default::default(),
            attachments: Default::default(),
            external: Default::default(),
            reports: Reports::default(),
        }
    }
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            smtp: "127.0.0.1:2525".into(),
            submission: "127.0.0.1:2587".into(),
            submissions: "127.0.0.1:2465".into(),
        }
    }
}

impl Default for Dns {
    fn default() -> Self {
        Dns {
            nameservers: Vec::new(),
            timeout_secs: 5,
        }
    }
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            smarthost: None,
            smarthost_tls: "may".into(),
            smarthost_user: None,
            smarthost_password: None,
            mx_port: 25,
            concurrency: 50,
            min_backoff_secs: 300,
            max_backoff_secs: 4000,
            max_lifetime_secs: 5 * 86400,
            delay_warning_secs: 4 * 3600,
            connection_idle_secs: 5,
            connect_timeout_secs: 30,
            command_timeout_secs: 300,
            data_timeout_secs: 600,
            mta_sts: true,
            dane: true,
            mta_sts_port: 443,
            extra_ca_file: None,
            dnssec_trust_anchor: None,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        let s = portcullis_smtp::Limits::default();
        let c = portcullis_smtp::server::ConnectionLimits::default();
        Limits {
            max_message_size: s.max_message_size,
            max_recipients: s.max_recipients,
            max_line_length: s.max_line_length,
            max_errors: s.max_errors,
            max_auth_failures: s.max_auth_failures,
            max_connections: c.max_connections,
            max_connections_per_ip: c.max_per_ip,
            command_timeout_secs: 300,
            data_timeout_secs: 300,
            session_timeout_secs: 3600,
            max_connection_rate_per_ip: 0,
            max_message_rate_per_client: 0,
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

fn default_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// A configuration error with where it is.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Load a file, or the defaults when `path` is None.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
        let config = Self::parse(&text, &path.display().to_string())?;
        Ok(config)
    }

    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            let key = e
                .span()
                .and_then(|s| text.get(s))
                .map(|k| k.lines().next().unwrap_or("").trim().to_string())
                .filter(|k| !k.is_empty())
                .map(|k| format!(" at `{k}`"))
                .unwrap_or_default();
            ConfigError(format!(
                "{origin}:{line}:{col}: {}{key}",
                e.message().trim()
            ))
        })?;
        config.validate(text, origin)?;
        Ok(config)
    }

    fn validate(&mut self, text: &str, origin: &str) -> Result<(), ConfigError> {
        let err = |key: &str, msg: String| {
            let line = find_key_line(text, key);
            ConfigError(format!("{origin}:{line}: key `{key}`: {msg}"))
        };
        for (key, value) in [
            ("smtp", &self.listen.smtp),
            ("submission", &self.listen.submission),
            ("submissions", &self.listen.submissions),
        ] {
            if !value.is_empty() && value.parse::<SocketAddr>().is_err() {
                return Err(err(
                    key,
                    format!("`{value}` is not an address:port such as 127.0.0.1:2525"),
                ));
            }
        }
        if !matches!(
            self.delivery.smarthost_tls.as_str(),
            "none" | "may" | "encrypt" | "verify" | "dane"
        ) {
            return Err(err(
                "smarthost_tls",
                "expected one of none, may, encrypt, verify, dane".into(),
            ));
        }
        if self.reports.send_hour_utc > 23 {
            return Err(err("send_hour_utc", "expected an hour from 0 to 23".into()));
        }
        if !self.reports.from.is_empty() && !self.reports.from.contains('@') {
            return Err(err(
                "from",
                format!("`{}` is not an email address", self.reports.from),
            ));
        }
        if let Some(host) = &self.delivery.smarthost
            && crate::policy::parse_host_port(host).is_none()
        {
            return Err(err("smarthost", format!("`{host}` is not host:port")));
        }
        if let Err(e) = self.dnsbl.validate() {
            return Err(err("zone", e));
        }
        if let Err(e) = self.external.validate() {
            return Err(err("rspamd", e));
        }
        if let Err(e) = self.greylist.validate() {
            return Err(err("mode", e));
        }
        for endpoint in &self.antivirus.clamd {
            if let Err(e) = portcullis_filter::clamd::Endpoint::parse(endpoint) {
                return Err(err("clamd", e));
            }
        }
        for rule in portcullis_filter::rules::default_rules(&self.spam) {
            if let Err(e) = portcullis_filter::rules::validate(&rule) {
                return Err(err("subject_tag", e));
            }
        }
        if self.spam.tag_at > self.spam.quarantine_at {
            return Err(err("tag_at", "must not be above quarantine_at".into()));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(err("cert", "set both `cert` and `key`, or neither".into()));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(err("format", "expected `text` or `json`".into()));
        }
        if self.hostname.is_empty() || self.hostname.contains(char::is_whitespace) {
            return Err(err("hostname", "must be a host name".into()));
        }
        if self.limits.max_line_length < 512 {
            return Err(err(
                "max_line_length",
                "RFC 5321 requires at least 512".into(),
            ));
        }
        if self.delivery.concurrency == 0 {
            return Err(err("concurrency", "must be at least 1".into()));
        }
        Ok(())
    }

    pub fn store_url(&self) -> String {
        self.store.url.clone().unwrap_or_else(|| {
            let path = self.data_dir.join("portcullis.db");
            let abs = std::path::absolute(&path).unwrap_or(path);
            format!("sqlite://{}", abs.display())
        })
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|p| offset - p).unwrap_or(offset + 1);
    (line, col)
}

fn find_key_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_file() {
        let c = Config::load(None).expect("defaults");
        assert_eq!(c.listen.smtp, "127.0.0.1:2525");
        assert_eq!(c.listen.submissions, "127.0.0.1:2465");
    }

    #[test]
    fn errors_name_line_and_key() {
        let text = "hostname = \"mx.test\"\n[listen]\nsmtp = \"nonsense\"\n";
        let e = Config::parse(text, "p.toml").unwrap_err().0;
        assert!(e.starts_with("p.toml:3: key `smtp`"), "{e}");
        let e = Config::parse("[listen]\nsmtpp = \"1.2.3.4:25\"\n", "p.toml")
            .unwrap_err()
            .0;
        assert!(e.starts_with("p.toml:2:"), "{e}");
        assert!(e.contains("smtpp"), "{e}");
        let e = Config::parse("[limits]\nmax_recipients = \"many\"\n", "p.toml")
            .unwrap_err()
            .0;
        assert!(e.starts_with("p.toml:2:"), "{e}");
    }

    #[test]
    fn full_example_parses() {
        let text = r#"
hostname = "mx.example.org"
data_dir = "/var/lib/portcullis"
[listen]
smtp = "0.0.0.0:25"
submission = ""
[store]
url = "sqlite:///var/lib/portcullis/p.db"
[dns]
nameservers = ["127.0.0.1:5353"]
[delivery]
smarthost = "relay.example.org:587"
smarthost_tls = "encrypt"
"#;
        let c = Config::parse(text, "x").expect("parse");
        assert_eq!(c.dns.nameservers.len(), 1);
        assert_eq!(c.listen.submission, "");
    }
}
