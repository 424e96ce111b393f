//! `portcullis serve`: opens the store and the spool, rebuilds the queue, starts the
//! listeners and the control socket, and runs until SIGINT or SIGTERM.

use crate::config::Config;
use anyhow::{Context, Result};
use portcullis_filter::auth::{AuthSettings, Authenticator};
use portcullis_gateway::logwriter::{LogWriter, StoreJournal};
use portcullis_gateway::policy::{Policy, PolicyRouter, parse_host_port, tls_mode};
use portcullis_gateway::smtp::SmtpHandler;
use portcullis_gateway::{Gateway, Injector};
use portcullis_queue::client::ClientSettings;
use portcullis_queue::delivery::ConnectionPool;
use portcullis_queue::spool::Spool;
use portcullis_queue::tls_policy::{SecuritySettings, TransportSecurity};
use portcullis_queue::{Deliverer, Queue, QueueSettings, RouteHost};
use portcullis_smtp::SessionConfig;
use portcullis_smtp::server::{ConnectionCounter, ConnectionLimits, Listener, Timeouts};
use portcullis_store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsAcceptor;

pub async fn run(config: Config) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let store = Store::open(&config.store_url()).await?;
    let smarthost = match &config.delivery.smarthost {
        Some(s) => {
            let (host, port) = parse_host_port(s).context("delivery.smarthost is not host:port")?;
            Some(RouteHost {
                host,
                port,
                tls: tls_mode(&config.delivery.smarthost_tls),
                auth: config
                    .delivery
                    .smarthost_user
                    .clone()
                    .zip(config.delivery.smarthost_password.clone()),
            })
        }
        None => None,
    };
    let policy = Policy::new(smarthost, config.spam.clone());
    policy.reload(&store).await?;
    policy.spawn_reloader(store.clone(), Duration::from_secs(2));

    let spool = Spool::open(&config.data_dir.join("spool")).context("opening the spool")?;
    let resolver = portcullis_queue::mx::build_resolver(
        &config.dns.nameservers,
        Duration::from_secs(config.dns.timeout_secs),
    )
    .map_err(|e| anyhow::anyhow!("DNS resolver: {e}"))?;
    let d = &config.delivery;
    let resolver_for_checks = resolver.clone();
    let resolver_for_reports = resolver.clone();
    let greylist = portcullis_filter::greylist::Greylist::new(config.greylist.clone());
    {
        let (greylist, store) = (greylist.clone(), store.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tick.tick().await;
                let now = portcullis_queue::spool::now();
                if let Err(e) = greylist.purge(&store, now).await {
                    tracing::warn!(error = %e, "greylist purge failed");
                }
                if let Err(e) = store.rate_purge(now - 7200).await {
                    tracing::warn!(error = %e, "rate counter purge failed");
                }
            }
        });
    }
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
    portcullis_gateway::psl::watch(&config.auth.public_suffix_file(&config.data_dir));
    let client_tls = crate::tls::client_configs(&config)?;
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
        &client_tls,
    )
    .map_err(|e| anyhow::anyhow!("outbound TLS policy: {e}"))?;
    if let Some(sts) = &security.mta_sts {
        sts.clone().spawn_refresher(Duration::from_secs(3600));
    }
    // TLS-RPT: the counts delivery keeps, and what sending reports needs.
    let tls_counters = security.counters.clone();
    let (tlsrpt_resolver, tlsrpt_tls) = (resolver.clone(), client_tls.clone());
    let deliverer = Deliverer {
        resolver,
        tls: client_tls,
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
    let settings = QueueSettings {
        hostname: config.hostname.clone(),
        concurrency: d.concurrency,
        min_backoff: Duration::from_secs(d.min_backoff_secs),
        max_backoff: Duration::from_secs(d.max_backoff_secs),
        max_lifetime: Duration::from_secs(d.max_lifetime_secs),
        delay_warning: Duration::from_secs(d.delay_warning_secs),
    };
    let log = LogWriter::spawn(store.clone()).await;
    let log_at_exit = log.clone();
    let queue = Queue::start(
        spool,
        settings,
        deliverer,
        Arc::new(StoreJournal(log.clone())),
    )?;
    portcullis_gateway::control::spawn(
        &config.data_dir,
        queue.clone(),
        Arc::new(portcullis_gateway::psl::reload),
    )
    .context("control socket")?;
    let inject = Injector::in_process(queue.clone());
    // Releases that a crash interrupted between their claim and their queue file.
    for id in store.quarantine_releasing().await? {
        match portcullis_ops::quarantine::release_item(&store, &inject, &id).await {
            Ok((queue_id, _)) => {
                if let Err(e) = inject.announce(&queue_id).await {
                    tracing::error!(item = %id, error = %e, "released message not scheduled");
                }
            }
            Err(e) => {
                tracing::error!(item = %id, error = %e, "unfinished quarantine release failed")
            }
        }
    }

    let tls = crate::tls::server_config(
        config.tls.cert.as_deref(),
        config.tls.key.as_deref(),
        &config.data_dir,
        &config.hostname,
    )
    .map_err(anyhow::Error::msg)?;
    let acceptor = TlsAcceptor::from(tls);
    portcullis_gateway::digest::spawn(config.clone(), store.clone(), inject.clone());
    let tlsrpt_sender = portcullis_gateway::tlsrpt::Sender::new(
        &config,
        store.clone(),
        inject.clone(),
        tlsrpt_resolver,
        &tlsrpt_tls,
    )?;
    let tlsrpt_store = store.clone();
    portcullis_gateway::tlsrpt::spawn(&config, tls_counters.clone(), tlsrpt_sender);
    portcullis_gateway::dmarc_reports::spawn(
        config.clone(),
        store.clone(),
        inject.clone(),
        resolver_for_reports,
    );
    let dmarc_results = portcullis_gateway::dmarc_reports::Collector::spawn(
        store.clone(),
        config.reports.dmarc_aggregate,
    );
    let dmarc_at_exit = dmarc_results.clone();
    let scanner = content_scanner(&store, &config.attachments).await;
    let dkim = portcullis_filter::sign::SharedKeyRing::new(
        portcullis_filter::sign::KeyRing::load(&store, None)
            .await
            .context("loading DKIM keys")?,
    );
    {
        // Key changes (`dkim generate|rotate|activate`) reach a running gateway.
        let (dkim, store) = (dkim.clone(), store.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                if let Err(e) = dkim.reload(&store).await {
                    tracing::warn!(error = %e, "DKIM key reload failed; keeping the current keys");
                }
            }
        });
    }
    let shared = Arc::new(Gateway {
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
        resolver: resolver_for_checks,
        antivirus: (!config.antivirus.clamd.is_empty())
            .then(|| {
                portcullis_filter::clamd::Scanner::from_strs(
                    &config.antivirus.clamd,
                    Duration::from_secs(config.antivirus.timeout),
                )
            })
            .transpose()
            .map_err(anyhow::Error::msg)?,
        antivirus_fail_open: config.antivirus.fail_open,
        dnsbl: config.dnsbl.clone(),
        fcrdns: config.fcrdns.clone(),
        greylist: greylist.clone(),
        connection_rate: config.limits.max_connection_rate_per_ip,
        message_rate: config.limits.max_message_rate_per_client,
        quarantine_expiry_secs: (config.quarantine.expiry_days * 86400) as i64,
    });
    spawn_model_reloader(shared.clone(), config.attachments.clone());
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
    let counter = ConnectionCounter::default();
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
        let shared = shared.clone();
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
            tls: Some(acceptor.clone()),
            timeouts: timeouts.clone(),
            limits: conn_limits,
            counter: counter.clone(),
            make_handler: move |info| SmtpHandler::new(shared.clone(), info),
        };
        tokio::spawn(listener.run());
    }
    wait_for_signal().await;
    tracing::info!("shutting down");
    // What the message log was still gathering.
    if tokio::time::timeout(Duration::from_secs(5), log_at_exit.flush())
        .await
        .is_err()
    {
        tracing::warn!("message log not flushed within 5 s at shutdown");
    }
    // And the DMARC report results.
    let _ = tokio::time::timeout(Duration::from_secs(5), dmarc_at_exit.flush()).await;
    // The TLS results counted since the last minute's flush.
    portcullis_gateway::tlsrpt::flush(&tls_counters, &tlsrpt_store).await;
    let _ = std::fs::remove_file(portcullis_gateway::control::socket_path(&config.data_dir));
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// The content pipeline with the classifier's model as the store holds it now. A store
/// that cannot be read leaves the classifier off (heuristics still run), logged.
async fn content_scanner(
    store: &portcullis_store::Store,
    limits: &portcullis_filter::attachments::AttachmentLimits,
) -> portcullis_filter::content::ContentScanner {
    let spam = match portcullis_ops::corpus::load_spam_checker(store).await {
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
    portcullis_filter::content::ContentScanner {
        spam,
        attachment_limits: limits.clone(),
    }
}

/// Reload the classifier's model when training changed it (`corpus train`, quarantine
/// feedback), checked every minute by its message counts and time of last training.
fn spawn_model_reloader(
    shared: Arc<Gateway>,
    limits: portcullis_filter::attachments::AttachmentLimits,
) {
    tokio::spawn(async move {
        let mut seen = shared.store.bayes_summary().await.ok();
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let now = shared.store.bayes_summary().await.ok();
            if now.is_some() && now != seen {
                let scanner = Arc::new(content_scanner(&shared.store, &limits).await);
                *shared.content.write().unwrap_or_else(|p| p.into_inner()) = scanner;
                seen = now;
            }
        }
    });
}
