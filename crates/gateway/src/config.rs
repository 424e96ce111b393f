//! The settings of one node (listeners, hostname, data directory, store URL, TLS files,
//! DNS, delivery, limits, checks), as `portcullis.toml` spells them. Every key has a safe
//! default. Reading and validating the file (errors with file, line and key) is the
//! binary's job (`crates/portcullis/src/config.rs`); this module only holds the values.
//! Policy (domains, networks, users) lives in the store, not here; which directory a
//! domain uses is here, beside the directory's servers and service password.

use serde::Deserialize;
use std::collections::BTreeMap;
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
    /// What is kept how long, and the job that deletes the rest.
    pub retention: Retention,
    /// Console and API accounts: sessions and password checks.
    pub accounts: Accounts,
    /// Directory sources (`[directory.NAME]`): LDAP/Active Directory, static lists, the
    /// store's users.
    pub directory: BTreeMap<String, portcullis_directory::SourceConfig>,
    /// Per domain (`[domain."example.org"]`, `"*"` for the rest): which source verifies
    /// recipients, which checks logins, what happens when it is down.
    pub domain: BTreeMap<String, portcullis_directory::DomainConfig>,
    /// Scheduled backups (`portcullis backup` run by the node itself).
    pub backup: Backup,
}

/// Scheduled backups with retention (crates/gateway/src/backup/schedule.rs). Off while
/// `to` is empty.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Backup {
    /// A directory, or `sftp://user@host[:port]/path` (a directory on the server).
    pub to: String,
    /// Hours between backups (fractions allowed, e.g. 0.5); 0: once a day at
    /// `daily_hour_utc`.
    pub schedule_hours: f64,
    /// Hour of the day (UTC, 0–23) of the daily backup when `schedule_hours` is 0.
    pub daily_hour_utc: u8,
    /// Archives kept in `to`; older ones (by the time in their names) are removed.
    pub keep: usize,
    /// age X25519 recipients (`age1...`) the archives are encrypted to; empty: not
    /// encrypted (unless `passphrase_file`).
    pub recipients: Vec<String>,
    /// A file whose first line is the passphrase the archives are encrypted with.
    pub passphrase_file: Option<PathBuf>,
    /// Leave the message log out.
    pub without_log: bool,
    /// SSH private key for an sftp `to` (`sftp -i`).
    pub ssh_key: Option<PathBuf>,
    /// ssh_config file for an sftp `to` (`sftp -F`): known hosts, port, identity.
    pub ssh_config: Option<PathBuf>,
}

impl Default for Backup {
    fn default() -> Self {
        Backup {
            to: String::new(),
            schedule_hours: 0.0,
            daily_hour_utc: 3,
            keep: 7,
            recipients: Vec::new(),
            passphrase_file: None,
            without_log: false,
            ssh_key: None,
            ssh_config: None,
        }
    }
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

/// Console and API accounts: how long a console session lasts, and where the lists of
/// breached passwords are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Accounts {
    /// A directory of breached-password range files (the k-anonymity format of Have I Been
    /// Pwned: a file per first five hex digits of a password's SHA-1, upper case, holding
    /// `SUFFIX:COUNT` lines). A new password found there is refused. None: no check.
    pub breached_passwords_dir: Option<PathBuf>,
    /// Seconds without a request after which a console session ends.
    pub session_idle_secs: u64,
    /// Seconds after login after which a console session ends, however active.
    pub session_max_secs: u64,
}

impl Default for Accounts {
    fn default() -> Self {
        Accounts {
            breached_passwords_dir: None,
            session_idle_secs: 30 * 60,
            session_max_secs: 12 * 3600,
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
            portal_url: "https://localhost:8443/q".into(),
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
    /// The console and REST API over HTTPS (the gateway's certificate). "" disables.
    pub https: String,
    /// Plain HTTP that only redirects (301) to `https`. "" (the default) disables.
    pub http: String,
    /// Prometheus `/metrics` and `/health/live`, `/health/ready`, plain HTTP without
    /// authentication (keep it on loopback or a monitoring network). "" disables.
    pub metrics: String,
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
    /// At SIGTERM: the longest the gateway waits for SMTP transactions and delivery
    /// attempts under way to finish before it exits.
    pub shutdown_grace_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// tracing filter, e.g. `info` or `portcullis=debug`.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
    /// Also send every log line to a syslog collector as RFC 5424: `udp://HOST:PORT`,
    /// `tcp://HOST:PORT` (octet-counting framing, RFC 6587) or `tls://HOST:PORT`
    /// (RFC 5425). Empty: no syslog.
    pub syslog: String,
    /// The syslog facility: `mail` (default), `daemon`, `user`, `local0` … `local7`, …
    pub syslog_facility: String,
    /// For `tls://`: the collector's CA certificates (PEM), trusted instead of the
    /// WebPKI roots.
    pub syslog_ca: Option<PathBuf>,
}

/// How long stored data is kept, and the background job that deletes what is older
/// (`[retention]`). 0 days keeps that kind forever.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Days the message log keeps a message (its recipients and search rows with it).
    pub log_days: u64,
    /// Days a held message is kept; the same setting as `[quarantine] expiry_days`,
    /// which it replaces when given (the two may not disagree).
    pub quarantine_days: Option<u64>,
    /// Days incoming DMARC aggregate and TLS-RPT reports are kept.
    pub reports_days: u64,
    /// Days the audit log keeps a row.
    pub audit_days: u64,
    /// Seconds between runs of the retention job.
    pub interval_secs: u64,
    /// Rows deleted per statement: a large purge is many short transactions, not one
    /// long lock.
    pub batch: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            log_days: 90,
            quarantine_days: None,
            reports_days: 180,
            audit_days: 0,
            interval_secs: 3600,
            batch: 1000,
        }
    }
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
            retention: Retention::default(),
            accounts: Accounts::default(),
            directory: BTreeMap::new(),
            domain: BTreeMap::new(),
            backup: Backup::default(),
        }
    }
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            smtp: "127.0.0.1:2525".into(),
            submission: "127.0.0.1:2587".into(),
            submissions: "127.0.0.1:2465".into(),
            https: "127.0.0.1:8443".into(),
            http: String::new(),
            metrics: "127.0.0.1:9587".into(),
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
            shutdown_grace_secs: 30,
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: "info".into(),
            format: "text".into(),
            syslog: String::new(),
            syslog_facility: "mail".into(),
            syslog_ca: None,
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

impl Config {
    pub fn store_url(&self) -> String {
        self.store.url.clone().unwrap_or_else(|| {
            let path = self.data_dir.join("portcullis.db");
            let abs = std::path::absolute(&path).unwrap_or(path);
            format!("sqlite://{}", abs.display())
        })
    }
}
