//! A real [`Gateway`], built as `portcullis serve` builds one
//! (crates/portcullis/src/serve.rs), on a temporary directory: a real `Spool` and `Queue`,
//! a `Store` in a SQLite file, the `Policy` loaded from it, the message log writer, the
//! `Authenticator` and every other check from a [`Config`]. Nothing leaves loopback: the
//! gateway's resolver asks only the test's DNS server, and every delivery goes to a
//! loopback port nobody listens on (the local domain's route and the smarthost), so
//! queued messages stay deferred in the spool where the test reads them.
//!
//! What the gateway recorded is read back as an administrator would see it: the message
//! log ([`Harness::message_log`], after the log writer flushed), the quarantine
//! ([`Harness::quarantine`]) and the spool ([`Harness::queued`]).

use ipnet::IpNet;
use portcullis_filter::auth::{AuthSettings, Authenticator};
use portcullis_filter::content::ContentScanner;
use portcullis_filter::rules::Rule;
use portcullis_filter::sign::{KeyRing, SharedKeyRing};
use portcullis_gateway::Gateway;
use portcullis_gateway::config::Config;
use portcullis_gateway::dmarc_reports::Collector;
use portcullis_gateway::logwriter::{LogWriter, StoreJournal};
use portcullis_gateway::policy::{Policy, PolicyRouter};
use portcullis_queue::client::{ClientSettings, TlsConfigs, TlsMode};
use portcullis_queue::delivery::ConnectionPool;
use portcullis_queue::spool::{Envelope, Spool};
use portcullis_queue::tls_policy::TransportSecurity;
use portcullis_queue::{Deliverer, Queue, QueueSettings, RouteHost};
use portcullis_store::{
    ContentRow, ListEntry, LogQuery, MessageRecord, QuarantineItem, QuarantineQuery, Route, Store,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// What the administrator configured in the store for a test: the domains the gateway
/// accepts mail for, internal networks, rules, lists and content lists.
#[derive(Debug, Default, Clone)]
pub struct StorePolicy {
    pub domains: Vec<String>,
    pub networks: Vec<IpNet>,
    pub rules: Vec<Rule>,
    pub lists: Vec<ListEntry>,
    pub content: Vec<ContentRow>,
}

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running gateway of its own.
pub struct Harness {
    pub gw: Arc<Gateway>,
    /// Where every delivery is sent: a loopback port nobody listens on.
    pub dead_end: u16,
    dir: TempDir,
}

fn temp_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "portcullis-gateway-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test's directory");
    dir
}

/// A loopback TCP port nobody listens on (just now).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a loopback port")
        .port()
}

impl Harness {
    /// A gateway with `config`'s settings whose resolver asks only `nameserver`, and
    /// whose store holds `policy`. Panics when something cannot be set up.
    pub async fn start(config: &Config, nameserver: SocketAddr, policy: &StorePolicy) -> Harness {
        let dir = TempDir(temp_dir());
        let store = Store::open(&format!("sqlite://{}", dir.0.join("store.db").display()))
            .await
            .expect("open the store");
        let dead_end = closed_port();
        for d in &policy.domains {
            let route = Route {
                host: "127.0.0.1".into(),
                port: dead_end,
                priority: 10,
                tls: "none".into(),
                auth_user: None,
                auth_password: None,
            };
            store.add_domain(d, &[route]).await.expect("add a domain");
        }
        for n in &policy.networks {
            store.add_network(*n, "test").await.expect("add a network");
        }
        for r in &policy.rules {
            let json = serde_json::to_string(r).expect("a rule as JSON");
            store.put_rule(&r.name, &json).await.expect("add a rule");
        }
        for e in &policy.lists {
            store.add_list_entry(e).await.expect("add a list entry");
        }
        for c in &policy.content {
            store
                .put_content_pattern(c)
                .await
                .expect("add a content pattern");
        }
        let smarthost = RouteHost {
            host: "127.0.0.1".into(),
            port: dead_end,
            tls: TlsMode::None,
            auth: None,
        };
        let protected = policy.domains.clone();
        let policy = Policy::new(Some(smarthost), config.spam.clone()).with_checks(
            portcullis_gateway::checks::Checks::new(
                config.greylist.clone(),
                config.dnsbl.clone(),
                config.fcrdns.clone(),
            ),
        );
        policy.reload(&store).await.expect("load the policy");

        let resolver = portcullis_queue::mx::build_resolver(&[nameserver], Duration::from_secs(2))
            .expect("a resolver for the test's DNS server");
        let auth = Authenticator::new(
            resolver.clone(),
            AuthSettings {
                enabled: config.auth.enabled,
                authserv_id: config
                    .auth
                    .authserv_id
                    .clone()
                    .unwrap_or_else(|| config.hostname.clone()),
                spf_reject_fail: config.auth.spf_reject_fail,
                dmarc_reject: config.auth.dmarc_reject,
                trusted_arc_sealers: config.auth.trusted_arc_sealers.clone(),
                org_domain: config.auth.dmarc_org_domain,
            },
        );
        let spool = Spool::open(&dir.0.join("spool")).expect("open the spool");
        let deliverer = Deliverer {
            resolver: resolver.clone(),
            tls: TlsConfigs::new(&[]).expect("client TLS configurations"),
            client: ClientSettings {
                helo_name: config.hostname.clone(),
                connect_timeout: Duration::from_secs(2),
                command_timeout: Duration::from_secs(5),
                data_timeout: Duration::from_secs(5),
            },
            router: Box::new(PolicyRouter(policy.clone())),
            pool: ConnectionPool::new(Duration::ZERO),
            mx_port: dead_end,
            security: TransportSecurity::off(),
        };
        let settings = QueueSettings {
            hostname: config.hostname.clone(),
            concurrency: 2,
            // One attempt (refused), then nothing for the rest of the test.
            min_backoff: Duration::from_secs(3600),
            max_backoff: Duration::from_secs(3600),
            ..QueueSettings::default()
        };
        let log = LogWriter::spawn(store.clone()).await;
        let queue = Queue::start(
            spool,
            settings,
            deliverer,
            Arc::new(StoreJournal(log.clone())),
        )
        .expect("start the queue");
        let antivirus = (!config.antivirus.clamd.is_empty()).then(|| {
            portcullis_filter::clamd::Scanner::from_strs(
                &config.antivirus.clamd,
                Duration::from_secs(config.antivirus.timeout),
            )
            .expect("[antivirus] clamd endpoints")
        });
        let dkim = SharedKeyRing::new(
            KeyRing::load(&store, None)
                .await
                .expect("load the (empty) DKIM key ring"),
        );
        let gw = Arc::new(Gateway {
            directories: Arc::new(
                portcullis_directory::Directories::build(
                    &config.directory,
                    &config.domain,
                    Some(store.clone()),
                )
                .expect("the directory of the test configuration"),
            ),
            hostname: config.hostname.clone(),
            auth,
            policy,
            store: store.clone(),
            queue,
            log,
            content: std::sync::RwLock::new(Arc::new(ContentScanner {
                attachment_limits: config.attachments.clone(),
                // As `node::load_spam_checker` does: our domains are not to be impersonated.
                spam: portcullis_filter::spam::SpamChecker::new().protecting(protected),
            })),
            quarantine_expiry_secs: (config.quarantine.expiry_days * 86400) as i64,
            resolver,
            antivirus,
            antivirus_fail_open: config.antivirus.fail_open,
            connection_rate: config.limits.max_connection_rate_per_ip,
            message_rate: config.limits.max_message_rate_per_client,
            external: config.external.clone(),
            dkim,
            arc_seal_domain: Some(config.auth.arc_seal_domain.trim().to_ascii_lowercase())
                .filter(|d| !d.is_empty() && config.auth.enabled),
            dmarc_results: Collector::spawn(store, config.reports.dmarc_aggregate),
        });
        Harness { gw, dead_end, dir }
    }

    /// The message log as `portcullis log search` shows it, newest first, once every
    /// entry written so far is in the store.
    pub async fn message_log(&self) -> Vec<MessageRecord> {
        self.gw.log.flush().await;
        self.gw
            .store
            .search_log(&LogQuery::default())
            .await
            .expect("search the message log")
    }

    /// Every held quarantine item, with the message as it would be delivered.
    pub async fn quarantine(&self) -> Vec<(QuarantineItem, Vec<u8>)> {
        let items = self
            .gw
            .store
            .quarantine_list(&QuarantineQuery::default())
            .await
            .expect("list the quarantine");
        let mut out = Vec::new();
        for item in items {
            let (item, _, _, body) = self
                .gw
                .store
                .quarantine_get(&item.id)
                .await
                .expect("read a quarantine item")
                .expect("a listed item exists");
            out.push((item, body));
        }
        out
    }

    /// A queued message as it is to be delivered (the added header fields, then the
    /// message), and its envelope; None when the spool does not hold it.
    pub fn queued(&self, id: &str) -> Option<(Envelope, Vec<u8>)> {
        self.gw.queue.spool().read_message(id).ok()
    }

    /// The directory the spool and the store are in.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir.0
    }
}
