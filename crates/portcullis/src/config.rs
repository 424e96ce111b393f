//! Reading `portcullis.toml`: the file is parsed into the gateway's settings
//! ([`portcullis_gateway::config::Config`]) and checked; every error names the file, the
//! line and the key. Without a file, the embedded development defaults.

pub use portcullis_gateway::config::*;
use std::net::SocketAddr;
use std::path::Path;

/// A configuration error with where it is.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Load a file, or the defaults when `path` is None.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    let Some(path) = path else {
        return Ok(Config::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
    let config = parse(&text, &path.display().to_string())?;
    Ok(config)
}

pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let mut config: Config = toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
        if let Some(key) = e.span().and_then(|s| key_at(text, s.start)) {
            return ConfigError(format!(
                "{origin}:{line}:{col}: key `{key}`: {}",
                e.message().trim()
            ));
        }
        let at = e
            .span()
            .and_then(|s| text.get(s))
            .map(|k| k.lines().next().unwrap_or("").trim().to_string())
            .filter(|k| !k.is_empty())
            .map(|k| format!(" at `{k}`"))
            .unwrap_or_default();
        ConfigError(format!("{origin}:{line}:{col}: {}{at}", e.message().trim()))
    })?;
    validate(&mut config, text, origin)?;
    Ok(config)
}

fn validate(config: &mut Config, text: &str, origin: &str) -> Result<(), ConfigError> {
    let err = |key: &str, msg: String| {
        let line = find_key_line(text, key);
        ConfigError(format!("{origin}:{line}: key `{key}`: {msg}"))
    };
    for (key, value) in [
        ("smtp", &config.listen.smtp),
        ("submission", &config.listen.submission),
        ("submissions", &config.listen.submissions),
        ("https", &config.listen.https),
        ("http", &config.listen.http),
        ("metrics", &config.listen.metrics),
    ] {
        if !value.is_empty() && value.parse::<SocketAddr>().is_err() {
            return Err(err(
                key,
                format!("`{value}` is not an address:port such as 127.0.0.1:2525"),
            ));
        }
    }
    if !matches!(
        config.delivery.smarthost_tls.as_str(),
        "none" | "may" | "encrypt" | "verify" | "dane"
    ) {
        return Err(err(
            "smarthost_tls",
            "expected one of none, may, encrypt, verify, dane".into(),
        ));
    }
    if config.reports.send_hour_utc > 23 {
        return Err(err("send_hour_utc", "expected an hour from 0 to 23".into()));
    }
    if config.backup.daily_hour_utc > 23 {
        return Err(err(
            "daily_hour_utc",
            "expected an hour from 0 to 23".into(),
        ));
    }
    if !config.backup.schedule_hours.is_finite() || config.backup.schedule_hours < 0.0 {
        return Err(err(
            "schedule_hours",
            "expected hours between backups (0: daily at daily_hour_utc)".into(),
        ));
    }
    if !config.backup.to.is_empty() {
        let check = portcullis_gateway::backup::schedule::Plan::from_config(&config.backup);
        if let Err((key, e)) = check {
            return Err(err(key, e));
        }
        if config.backup.keep == 0 {
            return Err(err("keep", "expected at least 1 archive to keep".into()));
        }
    }
    if !config.reports.from.is_empty() && !config.reports.from.contains('@') {
        return Err(err(
            "from",
            format!("`{}` is not an email address", config.reports.from),
        ));
    }
    if let Some(host) = &config.delivery.smarthost
        && portcullis_gateway::policy::parse_host_port(host).is_none()
    {
        return Err(err("smarthost", format!("`{host}` is not host:port")));
    }
    if let Err(e) = config.dnsbl.validate() {
        return Err(err("zone", e.to_string()));
    }
    if let Err(e) = config.external.validate() {
        return Err(err("rspamd", e.to_string()));
    }
    if let Err(e) = config.greylist.validate() {
        return Err(err("mode", e.to_string()));
    }
    for endpoint in &config.antivirus.clamd {
        if let Err(e) = portcullis_filter::clamd::Endpoint::parse(endpoint) {
            return Err(err("clamd", e.to_string()));
        }
    }
    for rule in portcullis_filter::rules::default_rules(&config.spam) {
        if let Err(e) = portcullis_filter::rules::validate(&rule) {
            return Err(err("subject_tag", e.to_string()));
        }
    }
    if config.spam.tag_at > config.spam.quarantine_at {
        return Err(err("tag_at", "must not be above quarantine_at".into()));
    }
    if config.tls.cert.is_some() != config.tls.key.is_some() {
        return Err(err("cert", "set both `cert` and `key`, or neither".into()));
    }
    if !matches!(config.log.format.as_str(), "text" | "json") {
        return Err(err("format", "expected `text` or `json`".into()));
    }
    if !config.log.syslog.is_empty()
        && let Err(e) = crate::syslog::Target::parse(&config.log.syslog)
    {
        return Err(err("syslog", e));
    }
    if crate::syslog::facility(&config.log.syslog_facility).is_none() {
        return Err(err(
            "syslog_facility",
            format!(
                "`{}` is not a syslog facility (kern, user, mail, daemon, auth, syslog, \
                 lpr, news, uucp, cron, authpriv, ftp, local0 … local7)",
                config.log.syslog_facility
            ),
        ));
    }
    if let Some(ca) = &config.log.syslog_ca
        && !ca.is_file()
    {
        return Err(err("syslog_ca", format!("{} is not a file", ca.display())));
    }
    if let Some(days) = config.retention.quarantine_days {
        if days == 0 {
            return Err(err("quarantine_days", "must be at least 1".into()));
        }
        // `[quarantine] expiry_days` is the older name of the same setting.
        if find_key_line(text, "expiry_days") != 0 && config.quarantine.expiry_days != days {
            return Err(err(
                "quarantine_days",
                format!(
                    "disagrees with [quarantine] expiry_days = {}: give one of them",
                    config.quarantine.expiry_days
                ),
            ));
        }
        config.quarantine.expiry_days = days;
    }
    if config.retention.interval_secs == 0 {
        return Err(err("interval_secs", "must be at least 1".into()));
    }
    if config.retention.batch == 0 {
        return Err(err("batch", "must be at least 1".into()));
    }
    if config.hostname.is_empty() || config.hostname.contains(char::is_whitespace) {
        return Err(err("hostname", "must be a host name".into()));
    }
    if config.limits.max_line_length < 512 {
        return Err(err(
            "max_line_length",
            "RFC 5321 requires at least 512".into(),
        ));
    }
    if config.delivery.concurrency == 0 {
        return Err(err("concurrency", "must be at least 1".into()));
    }
    if config.accounts.session_idle_secs == 0 {
        return Err(err("session_idle_secs", "must be at least 1".into()));
    }
    if config.accounts.session_max_secs < config.accounts.session_idle_secs {
        return Err(err(
            "session_max_secs",
            "must not be below session_idle_secs".into(),
        ));
    }
    if let Err(p) = portcullis_directory::config::validate(&config.directory, &config.domain) {
        return Err(err(p.key, p.message));
    }
    if let Some(dir) = &config.accounts.breached_passwords_dir
        && !dir.is_dir()
    {
        return Err(err(
            "breached_passwords_dir",
            format!("{} is not a directory", dir.display()),
        ));
    }
    Ok(())
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|p| offset - p).unwrap_or(offset + 1);
    (line, col)
}

/// The dotted key (`table.key`) of the `key = value` line holding byte `offset`, when
/// that line is one: a type error's span is the value, and the value alone does not say
/// which setting is wrong.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |p| p + 1);
    let line = text[start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        return None;
    }
    let table = text[..start].lines().rev().find_map(|l| {
        let l = l.trim();
        l.starts_with('[')
            .then(|| l.trim_matches(['[', ']']).trim().to_string())
    });
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_string(),
    })
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
        let c = load(None).expect("defaults");
        assert_eq!(c.listen.smtp, "127.0.0.1:2525");
        assert_eq!(c.listen.submissions, "127.0.0.1:2465");
        assert_eq!(c.listen.metrics, "127.0.0.1:9587");
    }

    #[test]
    fn metrics_listener_is_checked_and_may_be_off() {
        let e = parse("[listen]\nmetrics = \"9587\"\n", "p.toml")
            .unwrap_err()
            .0;
        assert!(e.starts_with("p.toml:2: key `metrics`"), "{e}");
        let c = parse("[listen]\nmetrics = \"\"\n", "p.toml").expect("parse");
        assert_eq!(c.listen.metrics, "");
    }

    #[test]
    fn errors_name_line_and_key() {
        let text = "hostname = \"mx.test\"\n[listen]\nsmtp = \"nonsense\"\n";
        let e = parse(text, "p.toml").unwrap_err().0;
        assert!(e.starts_with("p.toml:3: key `smtp`"), "{e}");
        let e = parse("[listen]\nsmtpp = \"1.2.3.4:25\"\n", "p.toml")
            .unwrap_err()
            .0;
        assert!(e.starts_with("p.toml:2:"), "{e}");
        assert!(e.contains("smtpp"), "{e}");
        let e = parse("[limits]\nmax_recipients = \"many\"\n", "p.toml")
            .unwrap_err()
            .0;
        assert!(
            e.starts_with("p.toml:2:18: key `limits.max_recipients`: invalid type"),
            "{e}"
        );
        let e = parse("hostname = 5\n", "p.toml").unwrap_err().0;
        assert!(e.starts_with("p.toml:1:12: key `hostname`:"), "{e}");
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
        let c = parse(text, "x").expect("parse");
        assert_eq!(c.dns.nameservers.len(), 1);
        assert_eq!(c.accounts.session_idle_secs, 1800);
        assert_eq!(c.accounts.session_max_secs, 43200);
        assert_eq!(c.listen.submission, "");
    }

    #[test]
    fn directory_sections() {
        let text = r#"
[directory.corp]
type = "ldap"
flavour = "ad"
servers = ["ldaps://dc1.example.org:636", "ldaps://dc2.example.org:3269"]
base_dn = "dc=example,dc=org"
cache_ttl_secs = 600

[directory.list]
type = "static"
addresses = ["postmaster@example.net"]

[domain."example.org"]
recipients = "corp"
auth = "corp"
on_unavailable = "accept"

[domain."example.net"]
recipients = "list"
"#;
        let c = parse(text, "p.toml").expect("parse");
        assert_eq!(c.directory.len(), 2);
        assert_eq!(
            c.directory["corp"].flavour,
            portcullis_directory::Flavour::Ad
        );
        assert_eq!(
            c.domain["example.org"].on_unavailable,
            portcullis_directory::OnUnavailable::Accept
        );
        let e = parse(
            "[directory.corp]\nbase_dn = \"dc=x\"\nservers = [\"http://x\"]\n",
            "p.toml",
        )
        .unwrap_err()
        .0;
        assert!(e.starts_with("p.toml:3: key `servers`"), "{e}");
        let e = parse(
            "[directory.corp]\nservers = [\"ldap://x\"]\nbase_dn = \"dc=x\"\n\n[domain.\"a.org\"]\nrecipients = \"nope\"\n",
            "p.toml",
        )
        .unwrap_err()
        .0;
        assert!(e.starts_with("p.toml:6: key `recipients`"), "{e}");
        assert!(e.contains("no [directory.nope]"), "{e}");
        let e = parse("[directory.corp]\nflavor = \"ad\"\n", "p.toml")
            .unwrap_err()
            .0;
        assert!(e.starts_with("p.toml:2:") && e.contains("flavor"), "{e}");
        let e = parse("[domain.\"a.org\"]\non_unavailable = \"maybe\"\n", "p.toml")
            .unwrap_err()
            .0;
        assert!(e.starts_with("p.toml:2:"), "{e}");
    }

    #[test]
    fn log_and_retention_sections() {
        let c = parse(
            "[log]\nsyslog = \"tcp://127.0.0.1:6514\"\nsyslog_facility = \"local3\"\n\
             [retention]\nlog_days = 30\nquarantine_days = 7\n",
            "p.toml",
        )
        .expect("parse");
        assert_eq!(c.quarantine.expiry_days, 7);
        assert_eq!(c.retention.log_days, 30);
        assert_eq!(c.retention.reports_days, 180);
        let e = parse("[log]\nsyslog = \"http://x:1\"\n", "p.toml")
            .unwrap_err()
            .0;
        assert!(e.starts_with("p.toml:2: key `syslog`"), "{e}");
        let e = parse("[log]\nsyslog_facility = \"mailx\"\n", "p.toml")
            .unwrap_err()
            .0;
        assert!(e.starts_with("p.toml:2: key `syslog_facility`"), "{e}");
        let e = parse(
            "[quarantine]\nexpiry_days = 10\n[retention]\nquarantine_days = 7\n",
            "p.toml",
        )
        .unwrap_err()
        .0;
        assert!(e.starts_with("p.toml:4: key `quarantine_days`"), "{e}");
        let c = parse("[quarantine]\nexpiry_days = 10\n", "p.toml").expect("parse");
        assert_eq!(c.quarantine.expiry_days, 10);
    }

    #[test]
    fn backup_section() {
        let c = parse(
            "[backup]\nto = \"sftp://b@vault.test:2222/pc\"\nschedule_hours = 0.5\nkeep = 3\n",
            "p.toml",
        )
        .expect("parse");
        assert_eq!((c.backup.schedule_hours, c.backup.keep), (0.5, 3));
        for (text, key, line) in [
            ("[backup]\nto = \"ftp://x/y\"\n", "to", 2),
            ("[backup]\nto = \"/b\"\nkeep = 0\n", "keep", 3),
            (
                "[backup]\nto = \"/b\"\nrecipients = [\"age1nope\"]\n",
                "recipients",
                3,
            ),
            ("[backup]\ndaily_hour_utc = 24\n", "daily_hour_utc", 2),
            ("[backup]\nschedule_hours = -1.0\n", "schedule_hours", 2),
        ] {
            let e = parse(text, "p.toml").unwrap_err().0;
            assert!(e.starts_with(&format!("p.toml:{line}: key `{key}`")), "{e}");
        }
    }

    #[test]
    fn accounts_section() {
        let dir = std::env::temp_dir().join(format!("portcullis-breach-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let text = format!(
            "[accounts]\nbreached_passwords_dir = {:?}\nsession_idle_secs = 600\n\
             session_max_secs = 3600\n",
            dir.display().to_string()
        );
        let c = parse(&text, "p.toml").expect("parse");
        assert_eq!(
            c.accounts.breached_passwords_dir.as_deref(),
            Some(dir.as_path())
        );
        assert_eq!(c.accounts.session_idle_secs, 600);
        let e = parse(
            "[accounts]\nsession_idle_secs = 900\nsession_max_secs = 60\n",
            "p.toml",
        )
        .unwrap_err()
        .0;
        assert!(e.contains("session_max_secs"), "{e}");
        let e = parse(
            "[accounts]\nbreached_passwords_dir = \"/no/such/dir\"\n",
            "p.toml",
        )
        .unwrap_err()
        .0;
        assert!(e.contains("not a directory"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
