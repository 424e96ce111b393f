//! `portcullis snmp-pass-persist`: the gateway's main counters for Net-SNMP's `snmpd`,
//! through its `pass_persist` protocol (`PING`/`PONG`, `get` and `getnext` with an OID on
//! the next line; answers are the OID, a type and a value, or `NONE`). snmpd runs this as
//! its own user, which may not read the gateway's store or control socket; so the values
//! come from the gateway's plain metrics listener (`[listen] metrics`, loopback), scraped
//! at most every few seconds so that one walk sees one set of values. When the gateway
//! does not answer, `portcullisUp` is 2 and the counters are absent.
//!
//! The protocol is a few lines of text; no crate implements its server side.

use anyhow::{Context, Result};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The subtree, under the example enterprise number of RFC 5612 (32473, for
/// documentation): a placeholder until the project registers its own Private Enterprise
/// Number (docs/operations.md says how to change it).
pub const BASE: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 25];

/// A scrape is reused for this long.
const CACHE: Duration = Duration::from_secs(5);
/// snmpd gives a pass_persist handler about a second to answer before it kills it: a
/// scrape that takes longer counts as a gateway that does not answer.
const HTTP_TIMEOUT: Duration = Duration::from_millis(700);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Integer,
    Gauge,
    Counter64,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Integer => "integer",
            Kind::Gauge => "gauge",
            Kind::Counter64 => "counter64",
        }
    }
}

/// One scalar of the tree: `BASE.arc.0`.
struct Object {
    arc: u32,
    kind: Kind,
    value: fn(&Snapshot) -> Option<u64>,
}

impl Object {
    const fn new(arc: u32, kind: Kind, value: fn(&Snapshot) -> Option<u64>) -> Object {
        Object { arc, kind, value }
    }
}

/// 1 (true) or 2 (false), as SNMP's TruthValue.
fn truth(b: bool) -> Option<u64> {
    Some(if b { 1 } else { 2 })
}

/// The tree, in OID order; docs/operations.md lists it with names.
const OBJECTS: &[Object] = &[
    // portcullisUp: the metrics listener answered; portcullisReady: /health/ready said 200.
    Object::new(1, Kind::Integer, |s| truth(s.up)),
    Object::new(2, Kind::Integer, |s| truth(s.ready)),
    Object::new(3, Kind::Counter64, |s| {
        s.sum("portcullis_smtp_connections_total", |_| true)
    }),
    Object::new(4, Kind::Counter64, |s| accepted(s, "inbound")),
    Object::new(5, Kind::Counter64, |s| accepted(s, "outbound")),
    Object::new(6, Kind::Counter64, |s| refused(s, '4')),
    Object::new(7, Kind::Counter64, |s| refused(s, '5')),
    Object::new(8, Kind::Gauge, |s| {
        s.sum("portcullis_queue_messages", |_| true)
    }),
    Object::new(9, Kind::Gauge, |s| {
        s.sum("portcullis_queue_oldest_age_seconds", |_| true)
    }),
    Object::new(10, Kind::Counter64, |s| delivery(s, "delivered")),
    Object::new(11, Kind::Counter64, |s| delivery(s, "deferred")),
    Object::new(12, Kind::Counter64, |s| delivery(s, "bounced")),
];

fn accepted(s: &Snapshot, direction: &str) -> Option<u64> {
    s.sum("portcullis_messages_accepted_total", |l| {
        label(l, "direction") == Some(direction)
    })
}

/// Refusals whose reply code begins with `class` (`4` or `5`).
fn refused(s: &Snapshot, class: char) -> Option<u64> {
    s.sum("portcullis_smtp_rejections_total", |l| {
        label(l, "code").is_some_and(|c| c.starts_with(class))
    })
}

fn delivery(s: &Snapshot, result: &str) -> Option<u64> {
    s.sum("portcullis_delivery_attempts_total", |l| {
        label(l, "result") == Some(result)
    })
}

/// One sample of Prometheus' text format: `name{k="v",...} value`.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

fn label<'a>(labels: &'a [(String, String)], key: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// What one scrape found.
#[derive(Debug, Default)]
struct Snapshot {
    up: bool,
    ready: bool,
    samples: Vec<Sample>,
}

impl Snapshot {
    /// The sum of the samples of `name` whose labels pass `keep` (0 when there are none:
    /// a counter that never moved is not rendered); None when the gateway is down.
    fn sum(&self, name: &str, keep: impl Fn(&[(String, String)]) -> bool) -> Option<u64> {
        if !self.up {
            return None;
        }
        let total: f64 = self
            .samples
            .iter()
            .filter(|s| s.name == name && keep(&s.labels))
            .map(|s| s.value)
            .sum();
        Some(if total.is_finite() && total > 0.0 {
            total as u64
        } else {
            0
        })
    }
}

/// The samples of a Prometheus text exposition; lines it cannot read are left out.
fn parse_metrics(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_sample)
        .collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (series, value) = line.trim().rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        None => (series, Vec::new()),
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// `k="v",k2="v2"`; values may hold escaped quotes, backslashes and commas.
fn parse_labels(mut s: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    while !s.is_empty() {
        let (key, rest) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim().to_string(), value));
        s = rest[end + 1..].trim_start_matches(',');
    }
    Some(labels)
}

fn parse_oid(s: &str) -> Option<Vec<u32>> {
    s.trim()
        .trim_start_matches('.')
        .split('.')
        .map(|a| a.parse().ok())
        .collect()
}

fn oid_text(arcs: &[u32]) -> String {
    arcs.iter().map(|a| format!(".{a}")).collect()
}

fn object_oid(o: &Object) -> Vec<u32> {
    let mut oid = BASE.to_vec();
    oid.extend([o.arc, 0]);
    oid
}

/// The answer to `get` (`next` false) or `getnext` of `oid`: three lines, or `NONE`.
fn answer(snapshot: &Snapshot, oid: &str, next: bool) -> String {
    let Some(asked) = parse_oid(oid) else {
        return "NONE\n".into();
    };
    let found = OBJECTS.iter().find_map(|o| {
        let own = object_oid(o);
        let hit = if next { own > asked } else { own == asked };
        if !hit {
            return None;
        }
        (o.value)(snapshot).map(|v| (own, o.kind, v))
    });
    match found {
        Some((own, kind, value)) => {
            let value = match kind {
                Kind::Gauge => value.min(u64::from(u32::MAX)),
                _ => value,
            };
            format!("{}\n{}\n{value}\n", oid_text(&own), kind.as_str())
        }
        None => "NONE\n".into(),
    }
}

/// Scrapes the metrics listener at `base` (`http://127.0.0.1:9587`), reusing a scrape
/// for [`CACHE`].
struct Scraper {
    client: reqwest::Client,
    base: String,
    last: Option<(Instant, std::sync::Arc<Snapshot>)>,
}

impl Scraper {
    async fn snapshot(&mut self) -> std::sync::Arc<Snapshot> {
        if let Some((at, s)) = &self.last
            && at.elapsed() < CACHE
        {
            return s.clone();
        }
        let snapshot = std::sync::Arc::new(self.scrape().await);
        self.last = Some((Instant::now(), snapshot.clone()));
        snapshot
    }

    async fn scrape(&self) -> Snapshot {
        let metrics = async {
            let r = self
                .client
                .get(format!("{}/metrics", self.base))
                .send()
                .await?
                .error_for_status()?;
            Ok::<_, anyhow::Error>(r.text().await?)
        };
        let ready = self
            .client
            .get(format!("{}/health/ready", self.base))
            .send();
        let (metrics, ready) = tokio::join!(
            tokio::time::timeout(HTTP_TIMEOUT, metrics),
            tokio::time::timeout(HTTP_TIMEOUT, ready)
        );
        let metrics = metrics.unwrap_or_else(|_| Err(anyhow::anyhow!("no answer in time")));
        match metrics {
            Ok(text) => Snapshot {
                up: true,
                ready: ready.is_ok_and(|r| r.is_ok_and(|r| r.status().is_success())),
                samples: parse_metrics(&text),
            },
            // Nothing is written to standard error: snmpd takes that for a broken handler
            // and kills it. A silent gateway is portcullisUp = 2.
            Err(_) => Snapshot::default(),
        }
    }
}

/// The base URL of the metrics listener `listen` (`[listen] metrics`): an unspecified
/// address is asked on loopback.
pub fn metrics_base(listen: &str) -> Result<String> {
    let addr: std::net::SocketAddr = listen
        .parse()
        .with_context(|| format!("listen.metrics {listen:?} is not an address:port"))?;
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    Ok(format!(
        "http://{}",
        std::net::SocketAddr::new(ip, addr.port())
    ))
}

/// Serve the pass_persist protocol on stdin/stdout until snmpd closes it.
pub async fn run(base: String) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        // A new loopback connection per scrape (every few seconds at most): no kept
        // connection to a gateway that restarted meanwhile.
        .pool_max_idle_per_host(0)
        .no_proxy()
        .build()
        .context("HTTP client")?;
    let mut scraper = Scraper {
        client,
        base: base.trim_end_matches('/').to_string(),
        last: None,
    };
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    while let Some(line) = lines.next_line().await? {
        let reply = match line.trim() {
            "PING" => "PONG\n".to_string(),
            command @ ("get" | "getnext") => {
                let Some(oid) = lines.next_line().await? else {
                    break;
                };
                answer(&*scraper.snapshot().await, &oid, command == "getnext")
            }
            "set" => {
                // The OID and the value; nothing here is writable.
                let _ = lines.next_line().await?;
                let _ = lines.next_line().await?;
                "not-writable\n".to_string()
            }
            "" => break,
            _ => "NONE\n".to_string(),
        };
        out.write_all(reply.as_bytes()).await?;
        out.flush().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP portcullis_smtp_connections_total SMTP connections
# TYPE portcullis_smtp_connections_total counter
portcullis_smtp_connections_total{listener="smtp"} 7
portcullis_smtp_connections_total{listener="submission"} 2
portcullis_messages_accepted_total{direction="inbound",verdict="deliver"} 4
portcullis_messages_accepted_total{direction="inbound",verdict="quarantine"} 1
portcullis_smtp_rejections_total{stage="rcpt",code="550"} 3
portcullis_smtp_rejections_total{stage="mail",code="451"} 1
portcullis_queue_messages 2
portcullis_check_duration_seconds_bucket{check="dnsbl",le="0.005"} 1
weird{a="x\"y,z",b="2"} 1.5
"#;

    fn up() -> Snapshot {
        Snapshot {
            up: true,
            ready: true,
            samples: parse_metrics(TEXT),
        }
    }

    #[test]
    fn reads_prometheus_text() {
        let s = parse_metrics(TEXT);
        assert_eq!(s.len(), 9);
        let weird = s.iter().find(|s| s.name == "weird").expect("weird");
        assert_eq!(label(&weird.labels, "a"), Some("x\"y,z"));
        assert_eq!(label(&weird.labels, "b"), Some("2"));
        assert_eq!(weird.value, 1.5);
    }

    #[test]
    fn get_and_getnext_walk_the_tree() {
        let s = up();
        let base = oid_text(BASE);
        // Connections (all listeners), accepted inbound and outbound, 4xx and 5xx
        // refusals, the queue.
        for (arc, kind, value) in [
            (3, "counter64", 9),
            (4, "counter64", 5),
            (5, "counter64", 0),
            (6, "counter64", 1),
            (7, "counter64", 3),
            (8, "gauge", 2),
        ] {
            let oid = format!("{base}.{arc}.0");
            assert_eq!(answer(&s, &oid, false), format!("{oid}\n{kind}\n{value}\n"));
        }
        // Not an object (no .0), and outside the tree.
        assert_eq!(answer(&s, &format!("{base}.3"), false), "NONE\n");
        assert_eq!(answer(&s, ".1.3.6.1.2.1.1.1.0", false), "NONE\n");
        // A walk from the base visits every object in order, then ends.
        let mut at = base.clone();
        let mut seen = Vec::new();
        loop {
            let a = answer(&s, &at, true);
            if a == "NONE\n" {
                break;
            }
            at = a.lines().next().expect("oid").to_string();
            seen.push(at.clone());
        }
        assert_eq!(seen.len(), OBJECTS.len());
        assert_eq!(seen[0], format!("{base}.1.0"));
        assert_eq!(
            answer(&s, &format!("{base}.2"), true),
            format!("{base}.2.0\ninteger\n1\n")
        );
        assert_eq!(answer(&s, "garbage", true), "NONE\n");
    }

    #[test]
    fn a_silent_gateway_is_down_without_counters() {
        let s = Snapshot::default();
        let base = oid_text(BASE);
        assert_eq!(
            answer(&s, &format!("{base}.1.0"), false),
            format!("{base}.1.0\ninteger\n2\n")
        );
        assert_eq!(answer(&s, &format!("{base}.3.0"), false), "NONE\n");
        assert_eq!(answer(&s, &format!("{base}.2.0"), true), "NONE\n");
    }

    #[test]
    fn metrics_base_from_the_listen_address() {
        assert_eq!(
            metrics_base("127.0.0.1:9587").unwrap(),
            "http://127.0.0.1:9587"
        );
        assert_eq!(
            metrics_base("0.0.0.0:9587").unwrap(),
            "http://127.0.0.1:9587"
        );
        assert_eq!(metrics_base("[::]:9587").unwrap(), "http://[::1]:9587");
        assert!(metrics_base("nonsense").is_err());
    }
}
