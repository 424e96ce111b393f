//! The queue manager: rebuilds the queue from the spool at start, runs delivery attempts
//! with bounded concurrency, retries with exponential backoff up to a maximum queue
//! lifetime, sends DSNs on final failure and delay warnings, and reports each
//! recipient's result to a [`Journal`] (the message log).

use crate::delivery::{Deliverer, Outcome};
use crate::dsn::{self, DsnInput, DsnKind, DsnRecipient};
use crate::spool::{
    self, DeliveryState, Direction, Envelope, EnvelopeRecipient, RecipientStatus, Spool,
};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// Where recipient results go (the binary writes them to the message log).
pub trait Journal: Send + Sync {
    fn recipient_result(
        &self,
        id: &str,
        recipient: &str,
        status: &str,
        reply: Option<&str>,
        host: Option<&str>,
    );
    /// A message the queue made itself (a bounce) was queued.
    fn generated(&self, envelope: &Envelope, size: usize);
}

#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub hostname: String,
    /// Delivery attempts running at once.
    pub concurrency: usize,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// After this long in the queue a message bounces.
    pub max_lifetime: Duration,
    /// Send a delay DSN once after this long (zero: only when NOTIFY=DELAY asks).
    pub delay_warning: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            hostname: "localhost".into(),
            concurrency: 50,
            min_backoff: Duration::from_secs(300),
            max_backoff: Duration::from_secs(4000),
            max_lifetime: Duration::from_secs(5 * 86400),
            delay_warning: Duration::from_secs(4 * 3600),
        }
    }
}

struct Inner {
    spool: Arc<Spool>,
    settings: QueueSettings,
    deliverer: Deliverer,
    journal: Arc<dyn Journal>,
    due: Mutex<BinaryHeap<Reverse<(i64, String)>>>,
    running: Mutex<HashSet<String>>,
    wake: Notify,
    slots: Arc<Semaphore>,
    /// Messages just received, kept in memory for their first attempt so that delivery
    /// does not read back what was just written. Bounded by `CACHE_BYTES`.
    fresh: Mutex<FreshCache>,
}

/// Messages by id, and the bytes they hold in all.
type FreshCache = (HashMap<String, (Envelope, Vec<u8>)>, usize);

const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Handle to the running queue manager.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

impl Queue {
    /// Load every message in the spool and start delivering.
    pub fn start(
        spool: Arc<Spool>,
        settings: QueueSettings,
        deliverer: Deliverer,
        journal: Arc<dyn Journal>,
    ) -> std::io::Result<Queue> {
        let mut due = BinaryHeap::new();
        for id in spool.list()? {
            match spool.read_envelope(&id) {
                Ok(env) => {
                    let state = spool.read_state(&id, &env);
                    if !state.held {
                        due.push(Reverse((state.next_attempt, id)));
                    }
                }
                Err(e) => tracing::error!(id, error = %e, "unreadable spool file left in place"),
            }
        }
        tracing::info!(messages = due.len(), "queue loaded from spool");
        let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
        let queue = Queue {
            inner: Arc::new(Inner {
                spool,
                settings,
                deliverer,
                journal,
                due: Mutex::new(due),
                running: Mutex::new(HashSet::new()),
                wake: Notify::new(),
                slots,
                fresh: Mutex::new((HashMap::new(), 0)),
            }),
        };
        tokio::spawn(queue.clone().run());
        Ok(queue)
    }

    pub fn spool(&self) -> &Arc<Spool> {
        &self.inner.spool
    }

    /// A message was committed: try it now.
    pub fn enqueue(&self, id: &str) {
        self.schedule(spool::now(), id.to_string());
    }

    /// A message was committed and its complete bytes (added headers and body) are at
    /// hand: try it now, from memory when the cache has room.
    pub fn enqueue_with(&self, envelope: Envelope, message: Vec<u8>) {
        let id = envelope.id.clone();
        {
            let mut fresh = self.inner.fresh.lock().unwrap_or_else(|p| p.into_inner());
            if fresh.1 + message.len() <= CACHE_BYTES {
                fresh.1 += message.len();
                fresh.0.insert(id.clone(), (envelope, message));
            }
        }
        self.enqueue(&id);
    }

    fn take_fresh(&self, id: &str) -> Option<(Envelope, Vec<u8>)> {
        let mut fresh = self.inner.fresh.lock().unwrap_or_else(|p| p.into_inner());
        let entry = fresh.0.remove(id)?;
        fresh.1 -= entry.1.len();
        Some(entry)
    }

    fn schedule(&self, at: i64, id: String) {
        self.inner
            .due
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Reverse((at, id)));
        self.inner.wake.notify_one();
    }

    /// Try every deferred message now.
    pub fn flush(&self) -> std::io::Result<usize> {
        let now = spool::now();
        let mut count = 0;
        for id in self.inner.spool.list()? {
            if self.inner.spool.make_due(&id, now)? {
                self.schedule(now, id);
                count += 1;
            }
        }
        Ok(count)
    }

    /// Try one message now; false when it is not in the queue or held (a held message
    /// is released, not retried).
    pub fn retry(&self, id: &str) -> std::io::Result<bool> {
        let now = spool::now();
        if !self.inner.spool.make_due(id, now)? {
            return Ok(false);
        }
        self.schedule(now, id.to_string());
        Ok(true)
    }

    /// Hold or release a message; returns false when it is not in the queue.
    pub fn set_held(&self, id: &str, held: bool) -> std::io::Result<bool> {
        let Some(state) = self.inner.spool.set_held(id, held, spool::now())? else {
            return Ok(false);
        };
        if !held {
            self.schedule(state.next_attempt, id.to_string());
        }
        Ok(true)
    }

    /// Start no more delivery attempts, and wait at most `within` for those under way;
    /// returns how many were still running then. What is not delivered stays in the spool
    /// for the next start.
    pub async fn stop(&self, within: Duration) -> usize {
        self.inner.slots.close();
        self.inner.wake.notify_one();
        let end = tokio::time::Instant::now() + within;
        loop {
            let running = self
                .inner
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len();
            if running == 0 || tokio::time::Instant::now() >= end {
                return running;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn run(self) {
        let mut expire = tokio::time::interval(Duration::from_secs(5));
        loop {
            let now = spool::now();
            let next = loop {
                let item = {
                    let mut due = self.inner.due.lock().unwrap_or_else(|p| p.into_inner());
                    match due.peek() {
                        Some(Reverse((at, _))) if *at <= now => due.pop(),
                        Some(Reverse((at, _))) => break Some(*at),
                        None => break None,
                    }
                };
                let Some(Reverse((_, id))) = item else {
                    break None;
                };
                let Ok(permit) = self.inner.slots.clone().acquire_owned().await else {
                    return;
                };
                if !self
                    .inner
                    .running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id.clone())
                {
                    continue;
                }
                let queue = self.clone();
                // Boxed: a delivery attempt's future is tens of kilobytes, and tokio moves
                // an unboxed future several times while spawning it (bench/relay-instructions).
                tokio::spawn(Box::pin(async move {
                    queue.attempt(&id).await;
                    queue
                        .inner
                        .running
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                    drop(permit);
                }));
            };
            let sleep = next
                .map(|at| Duration::from_secs((at - now).clamp(1, 60) as u64))
                .unwrap_or(Duration::from_secs(60));
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                _ = expire.tick() => {
                    for client in self.inner.deliverer.pool.expire() {
                        tokio::spawn(client.quit());
                    }
                }
            }
        }
    }

    async fn attempt(&self, id: &str) {
        // From memory on the first try, unless an admin removed the message meanwhile.
        let fresh = self
            .take_fresh(id)
            .filter(|_| self.inner.spool.message_path(id).exists());
        let loaded = match fresh {
            Some(m) => Ok(Ok(m)),
            None => {
                let spool = self.inner.spool.clone();
                let owned = id.to_string();
                tokio::task::spawn_blocking(move || spool.read_message(&owned)).await
            }
        };
        let (envelope, message) = match loaded {
            Ok(Ok(m)) => m,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                // As at start-up: a corrupt file is left in place for an admin.
                tracing::error!(id, error = %e, "corrupt spool file left in place; see queue show");
                return;
            }
            Ok(Err(e)) => {
                tracing::error!(id, error = %e, "cannot read spool file; will try again");
                self.schedule(spool::now() + 60, id.to_string());
                return;
            }
            Err(_) => {
                self.schedule(spool::now() + 60, id.to_string());
                return;
            }
        };
        let mut state = self.inner.spool.read_state(id, &envelope);
        let now = spool::now();
        if state.held {
            return;
        }
        if state.next_attempt > now {
            self.schedule(state.next_attempt, id.to_string());
            return;
        }
        let pending: Vec<usize> = (0..envelope.recipients.len())
            .filter(|&i| state.status[i] == RecipientStatus::Pending)
            .collect();
        let results = if pending.is_empty() {
            Vec::new()
        } else {
            self.inner
                .deliverer
                .attempt(&envelope, &message, &pending)
                .await
        };
        let mut failed = Vec::new();
        let mut relayed = Vec::new();
        for (i, outcome) in results {
            let address = &envelope.recipients[i].address;
            let (status, word, reply, host, tls) = match &outcome {
                Outcome::Delivered {
                    reply, host, tls, ..
                } => (
                    RecipientStatus::Delivered,
                    "delivered",
                    reply,
                    Some(host.as_str()),
                    Some(*tls),
                ),
                Outcome::Deferred { reply, host } => (
                    RecipientStatus::Pending,
                    "deferred",
                    reply,
                    host.as_deref(),
                    None,
                ),
                Outcome::Failed { reply, host } => (
                    RecipientStatus::Failed,
                    "bounced",
                    reply,
                    host.as_deref(),
                    None,
                ),
            };
            let line = reply.to_string();
            let tls = match tls {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            };
            crate::metrics::delivery_attempt(status);
            tracing::info!(id, to = %address, status = word, relay = host.unwrap_or("-"), tls, reply = %line, "delivery");
            self.inner
                .journal
                .recipient_result(id, address, word, Some(&line), host);
            state.status[i] = status;
            state.last_reply[i] = Some(line.clone());
            if status == RecipientStatus::Failed {
                failed.push((
                    i,
                    dsn_recipient(&envelope, i, "failed", &line, host, now, None),
                ));
            }
            if let Outcome::Delivered {
                dsn_relayed: true, ..
            } = outcome
            {
                relayed.push((
                    i,
                    dsn_recipient(&envelope, i, "relayed", &line, host, now, None),
                ));
            }
        }
        if !relayed.is_empty() {
            // A lost success notice is not worth holding the message for.
            let _ = self
                .bounce(&envelope, &message, relayed, DsnKind::Success)
                .await;
        }
        state.attempts += 1;
        let settings = &self.inner.settings;
        let age = now - envelope.received_at;
        if state.pending() > 0 && age >= settings.max_lifetime.as_secs() as i64 {
            for i in 0..envelope.recipients.len() {
                if state.status[i] != RecipientStatus::Pending {
                    continue;
                }
                let last = state.last_reply[i].clone().unwrap_or_default();
                let line =
                    format!("500 5.4.7 message expired after {age} seconds in queue: {last}");
                self.inner.journal.recipient_result(
                    id,
                    &envelope.recipients[i].address,
                    "bounced",
                    Some(&line),
                    None,
                );
                state.status[i] = RecipientStatus::Failed;
                failed.push((
                    i,
                    dsn_recipient(&envelope, i, "failed", &line, None, now, None),
                ));
            }
        }
        // Notices owed from earlier attempts go with this attempt's failures.
        for i in std::mem::take(&mut state.dsn_owed) {
            if i < envelope.recipients.len() && !failed.iter().any(|(f, _)| *f == i) {
                let line = state.last_reply[i].clone().unwrap_or_default();
                failed.push((
                    i,
                    dsn_recipient(&envelope, i, "failed", &line, None, now, None),
                ));
            }
        }
        if !failed.is_empty() {
            let owed: Vec<usize> = failed.iter().map(|(i, _)| *i).collect();
            if !self
                .bounce(&envelope, &message, failed, DsnKind::Failure)
                .await
            {
                // The sender must hear of the failure: keep the message until the notice
                // can be stored; these recipients are not tried again.
                state.dsn_owed = owed;
            }
        }
        if state.pending() == 0 && state.dsn_owed.is_empty() {
            if let Err(e) = self.inner.spool.retire(id, message.len()) {
                tracing::error!(id, error = %e, "cannot remove delivered message");
            }
            return;
        }
        let backoff = settings
            .min_backoff
            .as_secs()
            .saturating_mul(1u64 << (state.attempts - 1).min(16))
            .min(settings.max_backoff.as_secs()) as i64;
        state.next_attempt = now + backoff.max(1);
        if !state.delay_warned {
            let warn_all =
                !settings.delay_warning.is_zero() && age >= settings.delay_warning.as_secs() as i64;
            let until = envelope.received_at + settings.max_lifetime.as_secs() as i64;
            let delayed: Vec<(usize, DsnRecipient)> = (0..envelope.recipients.len())
                .filter(|&i| state.status[i] == RecipientStatus::Pending)
                .filter(|&i| asks_for(&envelope.recipients[i], DsnKind::Delay, warn_all))
                .map(|i| {
                    let line = state.last_reply[i].clone().unwrap_or_default();
                    (
                        i,
                        dsn_recipient(&envelope, i, "delayed", &line, None, now, Some(until)),
                    )
                })
                .collect();
            if !delayed.is_empty() {
                state.delay_warned = self
                    .bounce(&envelope, &message, delayed, DsnKind::Delay)
                    .await;
            }
        }
        // An admin may have deleted or held the message while it was being tried.
        if !self.inner.spool.message_path(id).exists() {
            return;
        }
        state.held = self.inner.spool.read_state(id, &envelope).held;
        if let Err(e) = self.inner.spool.write_state(id, &state) {
            tracing::error!(id, error = %e, "cannot write delivery state");
        }
        if !state.held {
            self.schedule(state.next_attempt, id.to_string());
        }
    }

    /// Queue a DSN to the original sender. Never for the null sender (RFC 5321 §6.1),
    /// and only for recipients whose NOTIFY asks for it. False when a notice was owed
    /// but could not be stored.
    async fn bounce(
        &self,
        envelope: &Envelope,
        message: &[u8],
        recipients: Vec<(usize, DsnRecipient)>,
        kind: DsnKind,
    ) -> bool {
        if !dsn::should_bounce(&envelope.sender) {
            return true;
        }
        // Without NOTIFY, RFC 3461 §4.1 means FAILURE (and delays at our discretion,
        // decided by the caller); success is only ever reported when asked for.
        let recipients: Vec<DsnRecipient> = recipients
            .into_iter()
            .filter(|(i, _)| asks_for(&envelope.recipients[*i], kind, kind != DsnKind::Success))
            .map(|(_, r)| r)
            .collect();
        if recipients.is_empty() {
            return true;
        }
        let hostname = &self.inner.settings.hostname;
        let postmaster = format!("MAILER-DAEMON@{hostname}");
        let input = DsnInput {
            reporting_mta: hostname,
            original_envelope_id: envelope.envid.as_deref(),
            arrival_date: envelope.received_at,
            original_sender: &envelope.sender,
            postmaster: &postmaster,
            recipients: &recipients,
            kind,
            original: message,
            // RET asks for the content of failure notices only (RFC 3461 §4.3). Inbound
            // senders are unverified until recipients are checked at RCPT time, so their
            // notices carry headers only: a forged sender gets no copy of the content.
            return_full: kind == DsnKind::Failure
                && envelope.ret != Some(spool::Ret::Headers)
                && envelope.direction == Direction::Outbound,
            max_original_size: 1024 * 1024,
        };
        let bytes = dsn::build_dsn(&input);
        let bounce = Envelope::notice(
            spool::new_id(),
            hostname,
            Direction::Outbound,
            std::slice::from_ref(&envelope.sender),
        );
        let spool = self.inner.spool.clone();
        let stored = bounce.clone();
        let size = bytes.len();
        let result =
            tokio::task::spawn_blocking(move || spool.store_message(&stored, &bytes)).await;
        match result {
            Ok(Ok(())) => {
                tracing::info!(id = %envelope.id, dsn = %bounce.id, to = %envelope.sender, "DSN queued");
                self.inner.journal.generated(&bounce, size);
                self.enqueue(&bounce.id);
                true
            }
            Ok(Err(e)) => {
                tracing::error!(id = %envelope.id, error = %e, "cannot queue DSN; will try again");
                false
            }
            Err(e) => {
                tracing::error!(id = %envelope.id, error = %e, "cannot queue DSN; will try again");
                false
            }
        }
    }
}

/// Whether a recipient's NOTIFY asks for a notice of this kind; `default` when it gave
/// no NOTIFY.
fn asks_for(r: &EnvelopeRecipient, kind: DsnKind, default: bool) -> bool {
    let wanted = match kind {
        DsnKind::Failure => "FAILURE",
        DsnKind::Delay => "DELAY",
        DsnKind::Success => "SUCCESS",
    };
    match &r.notify {
        Some(n) => n.iter().any(|v| v == wanted),
        None => default,
    }
}

fn dsn_recipient(
    envelope: &Envelope,
    i: usize,
    action: &str,
    reply_line: &str,
    host: Option<&str>,
    now: i64,
    retry_until: Option<i64>,
) -> DsnRecipient {
    let r = &envelope.recipients[i];
    let status = reply_line
        .split_whitespace()
        .nth(1)
        .filter(|s| portcullis_smtp::reply::is_enhanced_code(s))
        .map(str::to_string)
        .unwrap_or_else(|| {
            match action {
                "failed" => "5.0.0",
                "delayed" => "4.0.0",
                _ => "2.0.0",
            }
            .to_string()
        });
    DsnRecipient {
        address: r.address.clone(),
        orcpt: r.orcpt.clone(),
        status,
        action: action.to_string(),
        remote_mta: host.map(|h| h.split('[').next().unwrap_or(h).to_string()),
        diagnostic: (!reply_line.is_empty()).then(|| format!("smtp; {reply_line}")),
        last_attempt: Some(now),
        will_retry_until: retry_until,
    }
}

/// State of a message in the queue, for `queue list` and `queue show`.
pub fn describe(spool: &Spool, id: &str) -> std::io::Result<(Envelope, DeliveryState, u64)> {
    let env = spool.read_envelope(id)?;
    let state = spool.read_state(id, &env);
    let size = std::fs::metadata(spool.message_path(id))?.len();
    Ok((env, state, size))
}
