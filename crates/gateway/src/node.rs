//! A running gateway node, built from its settings: the store, the policy, the queue and
//! its deliverer, the control socket, the checks, the background work (reports, digests,
//! purges, reloads) and the SMTP listeners. The binary only loads the configuration, calls
//! [`Node::start`] and [`Node::listen`], and waits for a signal; other front ends (the web
//! console) take the store, the queue and the injector from the node.

use crate::config::Config;
use crate::dmarc_reports::Collector;
use crate::logwriter::{LogWriter, StoreJournal};
use crate::policy::{Policy, PolicyRouter, parse_host_port, tls_mode};
use crate::smtp::SmtpHandler;
use crate::{Gateway, Injector};
use anyhow::{Context, Result};
use portcullis_filter::auth::{AuthSettings, Authenticator, TokioResolver};
use portcullis_filter::bayes::{BayesModel, NotEnoughTraining};
use portcullis_filter::content::ContentScanner;
use portcullis_filter::spam::SpamChecker;
use portcullis_queue::client::{ClientSettings, TlsConfigs};
use portcullis_queue::delivery::ConnectionPool;
use portcullis_queue::spool::Spool;
use portcullis_queue::tls_policy::{SecuritySettings, TlsCounters, TransportSecurity};
use portcullis_queue::{Deliverer, Queue, QueueSettings, RouteHost};
use portcullis_smtp::SessionConfig;
use portcullis_smtp::server::{ConnectionCounter, ConnectionLimits, Listener, Timeouts};
use portcullis_store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsAcceptor;

/// The parts of a started node that front ends and shutdown need.
pub struct Node {
    pub config: Config,
    pub gateway: Arc<Gateway>,
    pub store: Store,
    pub queue: Queue,
    pub inject: Injector,
    /// The server certificate (configured or self-signed), for every TLS listener.
    pub tls: TlsAcceptor,
    /// The certificate behind `tls`, replaced by [`Node::reload_certificate`].
    cert: Arc<crate::tls::ServerCert>,
    log: LogWriter,
    dmarc_results: Collector,
    tls_counters: Arc<TlsCounters>,
    /// The SMTP connections of every listener, and their shutdown.
    connections: ConnectionCounter,
}

impl Node {
    /// Open the store and the spool, rebuild the queue, start the control socket and the
    /// background work. Nothing listens for mail yet ([`Node::listen`]).
    pub async fn start(config: Config) -> Result<Node> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let store = Store::open(&config.store_url()).await?;
        let policy = Policy::new(smarthost(&config)?, config.spam.clone()).with_checks(
            crate::checks::Checks::new(
                config.greylist.clone(),
                config.dnsbl.clone(),
                config.fcrdns.clone(),
            ),
        );
        policy.reload(&store).await?;
        policy.spawn_reloader(store.clone(), Duration::from_secs(2));

        let spool = Spool::open(&config.data_dir.join("spool")).context("opening the spool")?;
        let resolver = portcullis_queue::mx::build_resolver(
            &config.dns.nameservers,
            Duration::from_secs(config.dns.timeout_secs),
        )
        .map_err(|e| anyhow::anyhow!("DNS resolver: {e}"))?;
        spawn_purges(policy.clone(), store.clone());
        crate::retention::spawn(config.clone(), store.clone());
        crate::psl::watch(&config.auth.public_suffix_file(&config.data_dir));
        let client_tls = crate::tls::client_configs(&config)?;
        let (deliverer, tls_counters) = deliverer(&config, &policy, resolver.clone(), &client_tls)?;
        let log = LogWriter::spawn(store.clone()).await;
        let queue = Queue::start(
            spool,
            queue_settings(&config),
            deliverer,
            Arc::new(StoreJournal(log.clone())),
        )?;
        crate::control::spawn(
            &config.data_dir,
            queue.clone(),
            Arc::new(crate::psl::reload),
        )
        .context("control socket")?;
        let inject = Injector::in_process(queue.clone());

        let cert = crate::tls::ServerCert::load(
            config.tls.cert.as_deref(),
            config.tls.key.as_deref(),
            &config.data_dir,
            &config.hostname,
        )
        .map_err(anyhow::Error::msg)?;
        let tls = crate::tls::server_config(cert.clone()).map_err(anyhow::Error::msg)?;
        crate::digest::spawn(config.clone(), store.clone(), inject.clone());
        let tlsrpt_sender = crate::tlsrpt::Sender::new(
            &config,
            store.clone(),
            inject.clone(),
            resolver.clone(),
            &client_tls,
        )?;
        crate::tlsrpt::spawn(&config, tls_counters.clone(), tlsrpt_sender);
        crate::dmarc_reports::spawn(
            config.clone(),
            store.clone(),
            inject.clone(),
            resolver.clone(),
        );
        let dmarc_results = Collector::spawn(store.clone(), config.reports.dmarc_aggregate);
        let gateway = Arc::new(
            gateway(
                &config,
                store.clone(),
                policy,
                queue.clone(),
                log.clone(),
                dmarc_results.clone(),
                resolver,
                &client_tls,
            )
            .await?,
        );
        spawn_dkim_reloader(gateway.clone());
        spawn_model_reloader(gateway.clone(), config.attachments.clone());
        Ok(Node {
            config,
            gateway,
            store,
            queue,
            inject,
            tls: TlsAcceptor::from(tls),
            cert,
            log,
            dmarc_results,
            tls_counters,
            connections: ConnectionCounter::default(),
        })
    }

    /// Listen on the configured SMTP ports (`[listen] smtp`, `submission`,
    /// `submissions`); an address that cannot be bound is an error naming its key.
    pub async fn listen(&self) -> Result<()> {
        let config = &self.config;
        let l = &config.limits;
        let limits = portcullis_smtp::Limits {
            max_line_length: l.max_line_length,
            max_recipients: l.max_recipients,
            max_message_size: l.max_message_size,
            max_errors: l.max_errors,
            max_auth_failures: l.max_auth_failures,
        };
        let timeouts = Timeouts {
            command: Duration::from_secs(l.command_timeout_secs),
            data: Duration::from_secs(l.data_timeout_secs),
            tls_handshake: Duration::from_secs(60),
            session: Duration::from_secs(l.session_timeout_secs),
        };
        let conn_limits = ConnectionLimits {
            max_connections: l.max_connections,
            max_per_ip: l.max_connections_per_ip,
        };
        // One counter for all listeners: the limits are per gateway, not per port.
        let counter = self.connections.clone();
        let listeners: [(&'static str, &str, bool, bool); 3] = [
            ("smtp", &config.listen.smtp, false, false),
            ("submission", &config.listen.submission, false, true),
            ("submissions", &config.listen.submissions, true, true),
        ];
        for (name, addr, implicit_tls, auth_required) in listeners {
            if addr.is_empty() {
                continue;
            }
            let socket = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listen.{name}: cannot listen on {addr}"))?;
            tracing::info!(listener = name, address = addr, "listening");
            let gateway = self.gateway.clone();
            let listener = Listener {
                name,
                socket,
                session: SessionConfig {
                    hostname: config.hostname.clone(),
                    limits: limits.clone(),
                    starttls: !implicit_tls,
                    implicit_tls,
                    auth: true,
                    auth_required,
                },
                tls: Some(self.tls.clone()),
                timeouts: timeouts.clone(),
                limits: conn_limits,
                counter: counter.clone(),
                make_handler: move |info| SmtpHandler::new(gateway.clone(), info),
            };
            tokio::spawn(listener.run());
        }
        Ok(())
    }

    /// Read the certificate files named by `config` (a reloaded configuration) again; the
    /// next TLS handshakes on every listener use them. On an error the old one stays.
    pub fn reload_certificate(&self, config: &Config) -> Result<(), String> {
        self.cert.reload(
            config.tls.cert.as_deref(),
            config.tls.key.as_deref(),
            &config.data_dir,
            &config.hostname,
        )
    }

    /// Stop taking mail and let what is under way finish, within
    /// `limits.shutdown_grace_secs`: the SMTP listeners close, idle sessions get
    /// `421 4.3.2`, sessions in a transaction finish it, and no new delivery attempt starts
    /// while those under way end. Whatever is cut off at the bound was not acknowledged
    /// (SMTP) or stays in the spool (delivery).
    pub async fn drain(&self) {
        let grace = Duration::from_secs(self.config.limits.shutdown_grace_secs);
        let started = tokio::time::Instant::now();
        self.connections.close();
        let open = self.connections.open();
        if open > 0 {
            tracing::info!(connections = open, "waiting for SMTP sessions to finish");
        }
        let (sessions, attempts) = tokio::join!(
            tokio::time::timeout(grace, self.connections.drained()),
            self.queue.stop(grace),
        );
        if sessions.is_err() {
            tracing::warn!(
                connections = self.connections.open(),
                grace_secs = grace.as_secs(),
                "SMTP sessions still open at the end of the shutdown grace; closing them"
            );
        }
        if attempts > 0 {
            tracing::warn!(
                attempts,
                "delivery attempts still under way at the end of the shutdown grace; their messages stay queued"
            );
        }
        tracing::info!(
            millis = started.elapsed().as_millis() as u64,
            "stopped taking mail"
        );
    }

    /// Write what is still gathered in memory (message log, DMARC results, TLS counts)
    /// and remove the control socket.
    pub async fn shutdown(&self) {
        if tokio::time::timeout(Duration::from_secs(5), self.log.flush())
            .await
            .is_err()
        {
            tracing::warn!("message log not flushed within 5 s at shutdown");
        }
        if tokio::time::timeout(Duration::from_secs(5), self.dmarc_results.flush())
            .await
            .is_err()
        {
            tracing::warn!("DMARC report results not flushed within 5 s at shutdown");
        }
        crate::tlsrpt::flush(&self.tls_counters, &self.store).await;
        let _ = std::fs::remove_file(crate::control::socket_path(&self.config.data_dir));
    }
}

fn smarthost(config: &Config) -> Result<Option<RouteHost>> {
    let Some(s) = &config.delivery.smarthost else {
        return Ok(None);
    };
    let (host, port) = parse_host_port(s).context("delivery.smarthost is not host:port")?;
    Ok(Some(RouteHost {
        host,
        port,
        tls: tls_mode(&config.delivery.smarthost_tls),
        auth: config
            .delivery
            .smarthost_user
            .clone()
            .zip(config.delivery.smarthost_password.clone()),
    }))
}

fn queue_settings(config: &Config) -> QueueSettings {
    let d = &config.delivery;
    QueueSettings {
        hostname: config.hostname.clone(),
        concurrency: d.concurrency,
        min_backoff: Duration::from_secs(d.min_backoff_secs),
        max_backoff: Duration::from_secs(d.max_backoff_secs),
        max_lifetime: Duration::from_secs(d.max_lifetime_secs),
        delay_warning: Duration::from_secs(d.delay_warning_secs),
    }
}

/// Outbound delivery: routes from the policy, MTA-STS and DANE, the connection pool; and
/// the TLS counts that delivery keeps for TLS-RPT.
fn deliverer(
    config: &Config,
    policy: &Policy,
    resolver: TokioResolver,
    client_tls: &TlsConfigs,
) -> Result<(Deliverer, Arc<TlsCounters>)> {
    let d = &config.delivery;
    let security = TransportSecurity::new(
        &SecuritySettings {
            mta_sts: d.mta_sts,
            dane: d.dane,
            mta_sts_port: d.mta_sts_port,
            mta_sts_timeout: Duration::from_secs(30),
            mta_sts_cache: Some(config.data_dir.join("spool").join("mta-sts.json")),
            nameservers: config.dns.nameservers.clone(),
            dns_timeout: Duration::from_secs(config.dns.timeout_secs),
            trust_anchor: d.dnssec_trust_anchor.clone(),
        },
        &resolver,
        client_tls,
    )
    .map_err(|e| anyhow::anyhow!("outbound TLS policy: {e}"))?;
    if let Some(sts) = &security.mta_sts {
        sts.clone().spawn_refresher(Duration::from_secs(3600));
    }
    let counters = security.counters.clone();
    let deliverer = Deliverer {
        resolver,
        tls: client_tls.clone(),
        client: ClientSettings {
            helo_name: config.hostname.clone(),
            connect_timeout: Duration::from_secs(d.connect_timeout_secs),
            command_timeout: Duration::from_secs(d.command_timeout_secs),
            data_timeout: Duration::from_secs(d.data_timeout_secs),
        },
        router: Box::new(PolicyRouter(policy.clone())),
        pool: ConnectionPool::new(Duration::from_secs(d.connection_idle_secs)),
        mx_port: d.mx_port,
        security,
    };
    Ok((deliverer, counters))
}

#[allow(clippy::too_many_arguments)]
async fn gateway(
    config: &Config,
    store: Store,
    policy: Policy,
    queue: Queue,
    log: LogWriter,
    dmarc_results: Collector,
    resolver: TokioResolver,
    client_tls: &TlsConfigs,
) -> Result<Gateway> {
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
    let scanner = content_scanner(&store, &config.attachments).await;
    let dkim = portcullis_filter::sign::SharedKeyRing::new(
        portcullis_filter::sign::KeyRing::load(&store, None)
            .await
            .context("loading DKIM keys")?,
    );
    let antivirus = (!config.antivirus.clamd.is_empty())
        .then(|| {
            portcullis_filter::clamd::Scanner::from_strs(
                &config.antivirus.clamd,
                Duration::from_secs(config.antivirus.timeout),
            )
        })
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let directories = crate::callout::directories(config, store.clone(), &policy, client_tls)
        .context("setting up the directory")?;
    Ok(Gateway {
        directories: Arc::new(directories),
        hostname: config.hostname.clone(),
        auth,
        policy,
        store,
        queue,
        log,
        content: std::sync::RwLock::new(Arc::new(scanner)),
        external: config.external.clone(),
        dkim,
        dmarc_results,
        arc_seal_domain: Some(config.auth.arc_seal_domain.trim().to_ascii_lowercase())
            .filter(|d| !d.is_empty() && config.auth.enabled),
        resolver,
        antivirus,
        antivirus_fail_open: config.antivirus.fail_open,
        connection_rate: config.limits.max_connection_rate_per_ip,
        message_rate: config.limits.max_message_rate_per_client,
        quarantine_expiry_secs: (config.quarantine.expiry_days * 86400) as i64,
    })
}

/// Old greylist entries and rate counters, every hour.
fn spawn_purges(policy: Policy, store: Store) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let now = portcullis_queue::spool::now();
            let checks = policy.current().checks.clone();
            if let Err(e) = checks.greylist.purge(&store, now).await {
                tracing::warn!(error = %e, "greylist purge failed");
            }
            if let Err(e) = store.rate_purge(now - 7200).await {
                tracing::warn!(error = %e, "rate counter purge failed");
            }
        }
    });
}

/// Key changes (`dkim generate|rotate|activate`) reach a running gateway within seconds.
fn spawn_dkim_reloader(gateway: Arc<Gateway>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if let Err(e) = gateway.dkim.reload(&gateway.store).await {
                tracing::warn!(error = %e, "DKIM key reload failed; keeping the current keys");
            }
        }
    });
}

/// The classifier as the store holds it now, and why it is not used yet if it is not
/// trained enough. The configured domains are the ones display names may not impersonate
/// (`spam.impersonation`); they are read with the model, at start and whenever training
/// changes it.
pub async fn load_spam_checker(
    store: &Store,
) -> Result<(SpamChecker, Option<NotEnoughTraining>), portcullis_store::StoreError> {
    let counts = store.load_bayes().await?;
    let model = BayesModel::from_counts(
        counts.spam_messages,
        counts.ham_messages,
        counts.tokens.iter().map(|(t, s, h)| (t.as_str(), *s, *h)),
    );
    let unready = model.ready().err();
    let protected = store
        .list_domains()
        .await?
        .into_iter()
        .map(|d| d.name)
        .collect();
    Ok((
        SpamChecker::with_model(Arc::new(model)).protecting(protected),
        unready,
    ))
}

/// The content pipeline with the classifier's model as the store holds it now. A store
/// that cannot be read leaves the classifier off (heuristics still run), logged.
async fn content_scanner(
    store: &Store,
    limits: &portcullis_filter::attachments::AttachmentLimits,
) -> ContentScanner {
    let spam = match load_spam_checker(store).await {
        Ok((checker, unready)) => {
            match unready {
                Some(why) => tracing::info!(reason = %why, "spam classifier not used yet"),
                None => tracing::info!("spam classifier loaded"),
            }
            checker
        }
        Err(e) => {
            tracing::error!(error = %e, "spam classifier model could not be loaded");
            Default::default()
        }
    };
    ContentScanner {
        spam,
        attachment_limits: limits.clone(),
    }
}

/// Reload the classifier's model when training changed it (`corpus train`, quarantine
/// feedback), checked every minute by its message counts and time of last training.
fn spawn_model_reloader(
    gateway: Arc<Gateway>,
    limits: portcullis_filter::attachments::AttachmentLimits,
) {
    tokio::spawn(async move {
        let mut seen = gateway.store.bayes_summary().await.ok();
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let now = gateway.store.bayes_summary().await.ok();
            if now.is_some() && now != seen {
                let scanner = Arc::new(content_scanner(&gateway.store, &limits).await);
                *gateway.content.write().unwrap_or_else(|p| p.into_inner()) = scanner;
                seen = now;
            }
        }
    });
}
