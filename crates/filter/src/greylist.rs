//! Greylisting (RCPT time): the first attempt of an unknown (client network, sender,
//! recipient) triplet is told to come back later with `451 4.7.1`; a real mail server
//! retries after the delay and is let through, most spam software never retries.
//!
//! The rules, with the defaults of [`GreylistSettings`]:
//! - A new triplet is deferred. A retry before `delay_secs` (5 min) is deferred again; a
//!   retry after it, but within `retry_window_secs` (4 h) of the first attempt, passes and
//!   confirms the triplet. A retry after the window starts a new round.
//! - A confirmed triplet passes at once for `confirmed_expiry_secs` (36 days) after its
//!   latest pass; every pass extends it.
//! - Unconfirmed triplets are forgotten `unconfirmed_expiry_secs` (8 h, never less than the
//!   window) after their latest attempt, by [`Greylist::purge`].
//! - Auto-allow, after Postgrey's `--auto-whitelist-clients`: a client network that has
//!   passed greylisting on `auto_allow_after` (5) occasions, counted at most once an hour,
//!   passes for every sender and recipient until it is quiet for `confirmed_expiry_secs`.
//! - Clients are grouped by network (`/24` for IPv4, `/64` for IPv6) because large senders
//!   retry from another address of the same pool.
//! - Sender addresses are compared lower-cased, with per-message tags removed (BATV
//!   `prvs=tag=user`, SRS rewriting), so that each new message of such a sender does not
//!   start over.
//!
//! State lives in the store, so every node of a cluster shares it. Store errors are returned:
//! the caller chooses between failing open (pass) and a temporary failure.

use std::net::IpAddr;

use ipnet::IpNet;
use portcullis_smtp::Reply;
use portcullis_store::{GreylistEntry, GreylistPurged, Store, StoreError};
use serde::{Deserialize, Serialize};

/// Passes of an allowed or counted client network are recorded at most this often.
const CLIENT_INTERVAL_SECS: i64 = 3600;

/// When greylisting applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GreylistMode {
    /// Every client the caller asks about (not authenticated, not internal).
    Always,
    /// Only when the connection's score so far reaches `suspicious_score`.
    #[default]
    Suspicious,
    /// Off.
    Never,
}

/// The `[greylist]` section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GreylistSettings {
    pub mode: GreylistMode,
    /// In `suspicious` mode, greylist when the score the caller passes is at least this.
    pub suspicious_score: f64,
    /// How long a new triplet must wait before its retry passes.
    pub delay_secs: u64,
    /// A retry later than this after the first attempt starts a new round.
    pub retry_window_secs: u64,
    /// Unconfirmed triplets are purged this long after their latest attempt (at least the
    /// retry window).
    pub unconfirmed_expiry_secs: u64,
    /// Confirmed triplets and allowed networks are forgotten this long after their latest pass.
    pub confirmed_expiry_secs: u64,
    /// Prefix length that groups IPv4 clients.
    pub ipv4_prefix: u8,
    /// Prefix length that groups IPv6 clients.
    pub ipv6_prefix: u8,
    /// Passes (at most one an hour) after which a client network is let through for every
    /// triplet; 0 turns auto-allow off.
    pub auto_allow_after: u32,
}

impl Default for GreylistSettings {
    fn default() -> Self {
        GreylistSettings {
            mode: GreylistMode::Suspicious,
            suspicious_score: 3.0,
            delay_secs: 300,
            retry_window_secs: 4 * 3600,
            unconfirmed_expiry_secs: 8 * 3600,
            confirmed_expiry_secs: 36 * 86400,
            ipv4_prefix: 24,
            ipv6_prefix: 64,
            auto_allow_after: 5,
        }
    }
}

impl GreylistSettings {
    /// Checks what serde cannot: prefix lengths, and a delay shorter than the window.
    pub fn validate(&self) -> Result<(), GreylistConfigError> {
        if self.ipv4_prefix > 32 {
            return Err(GreylistConfigError::Ipv4Prefix(self.ipv4_prefix));
        }
        if self.ipv6_prefix > 128 {
            return Err(GreylistConfigError::Ipv6Prefix(self.ipv6_prefix));
        }
        if self.delay_secs >= self.retry_window_secs {
            return Err(GreylistConfigError::DelayNotShorter {
                delay_secs: self.delay_secs,
                retry_window_secs: self.retry_window_secs,
            });
        }
        if !self.suspicious_score.is_finite() {
            return Err(GreylistConfigError::SuspiciousScore);
        }
        Ok(())
    }
}

/// A mistake in the `[greylist]` section that serde cannot see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GreylistConfigError {
    #[error("greylist.ipv4_prefix {0} is over 32")]
    Ipv4Prefix(u8),
    #[error("greylist.ipv6_prefix {0} is over 128")]
    Ipv6Prefix(u8),
    /// A retry could never pass: it would be too early until the window closed.
    #[error(
        "greylist.delay_secs ({delay_secs}) must be shorter than retry_window_secs ({retry_window_secs})"
    )]
    DelayNotShorter {
        delay_secs: u64,
        retry_window_secs: u64,
    },
    #[error("greylist.suspicious_score is not a number")]
    SuspiciousScore,
}

/// What is greylisted: the client address and the envelope addresses as given (the null
/// sender is the empty string). Normalisation happens in [`Greylist::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triplet {
    pub client: IpAddr,
    pub sender: String,
    pub recipient: String,
}

impl Triplet {
    pub fn new(client: IpAddr, sender: &str, recipient: &str) -> Self {
        Triplet {
            client,
            sender: sender.to_string(),
            recipient: recipient.to_string(),
        }
    }
}

/// Why an attempt passed, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassReason {
    /// Mode `never`, or `suspicious` and the score is below the threshold.
    NotApplied,
    /// The retry came after the delay: the triplet is confirmed now.
    Confirmed,
    /// The triplet was confirmed earlier.
    Known,
    /// The client network is auto-allowed.
    ClientAllowed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GreylistDecision {
    Pass(PassReason),
    /// Refuse this recipient for now; a retry in `retry_after_secs` seconds will pass.
    Defer {
        retry_after_secs: u64,
    },
}

impl GreylistDecision {
    pub fn is_pass(&self) -> bool {
        matches!(self, GreylistDecision::Pass(_))
    }

    /// `451 4.7.1` naming the wait, for a deferral; `None` for a pass.
    pub fn reply(&self) -> Option<Reply> {
        match self {
            GreylistDecision::Pass(_) => None,
            GreylistDecision::Defer { retry_after_secs } => Some(Reply::new(
                451,
                "4.7.1",
                format!("Greylisted, please try again in {retry_after_secs} seconds"),
            )),
        }
    }
}

/// Greylisting with its settings; the state is in the store passed to each call.
#[derive(Debug, Clone)]
pub struct Greylist {
    settings: GreylistSettings,
}

impl Greylist {
    pub fn new(settings: GreylistSettings) -> Self {
        Greylist { settings }
    }

    pub fn settings(&self) -> &GreylistSettings {
        &self.settings
    }

    /// Does greylisting apply to a connection with this score?
    pub fn applies(&self, score: f64) -> bool {
        match self.settings.mode {
            GreylistMode::Always => true,
            GreylistMode::Never => false,
            GreylistMode::Suspicious => score >= self.settings.suspicious_score,
        }
    }

    /// The network `ip` is grouped into (IPv4-mapped IPv6 counts as IPv4).
    pub fn network(&self, ip: IpAddr) -> IpNet {
        let ip = ip.to_canonical();
        let prefix = match ip {
            IpAddr::V4(_) => self.settings.ipv4_prefix.min(32),
            IpAddr::V6(_) => self.settings.ipv6_prefix.min(128),
        };
        // The prefix is clamped to the family's length, so this cannot fail.
        IpNet::new(ip, prefix).map_or_else(|_| IpNet::from(ip), |net| net.trunc())
    }

    /// Decides one attempt at unix time `now`. `score` is the connection's score so far
    /// (DNSBL, FCrDNS, ...), used by the `suspicious` mode. Reads and updates the store.
    pub async fn check(
        &self,
        store: &Store,
        triplet: &Triplet,
        score: f64,
        now: i64,
    ) -> Result<GreylistDecision, StoreError> {
        if !self.applies(score) {
            return Ok(GreylistDecision::Pass(PassReason::NotApplied));
        }
        let network = self.network(triplet.client).to_string();
        let confirmed_expiry = secs(self.settings.confirmed_expiry_secs);

        if self.settings.auto_allow_after > 0
            && let Some(client) = store.greylist_client(&network).await?
            && client.passes >= i64::from(self.settings.auto_allow_after)
            && client.last_seen >= now.saturating_sub(confirmed_expiry)
        {
            store
                .greylist_touch_client(&network, now, CLIENT_INTERVAL_SECS)
                .await?;
            return Ok(GreylistDecision::Pass(PassReason::ClientAllowed));
        }

        let sender = normalize_sender(&triplet.sender);
        let recipient = triplet.recipient.trim().to_lowercase();
        let existing = store.greylist_get(&network, &sender, &recipient).await?;
        let (entry, decision) = self.decide(existing, &network, &sender, &recipient, now);
        store.greylist_put(&entry).await?;
        if decision.is_pass() && self.settings.auto_allow_after > 0 {
            store
                .greylist_count_client_pass(&network, now, CLIENT_INTERVAL_SECS)
                .await?;
        }
        Ok(decision)
    }

    /// The state machine of one triplet: the row to write back and the decision.
    fn decide(
        &self,
        existing: Option<GreylistEntry>,
        network: &str,
        sender: &str,
        recipient: &str,
        now: i64,
    ) -> (GreylistEntry, GreylistDecision) {
        let delay = secs(self.settings.delay_secs);
        let window = secs(self.settings.retry_window_secs);
        let confirmed_expiry = secs(self.settings.confirmed_expiry_secs);

        let current = existing.filter(|e| {
            if e.passed {
                e.last_seen >= now.saturating_sub(confirmed_expiry)
            } else {
                now.saturating_sub(e.first_seen) <= window
            }
        });
        match current {
            Some(mut e) if e.passed => {
                e.last_seen = now.max(e.last_seen);
                e.passes += 1;
                (e, GreylistDecision::Pass(PassReason::Known))
            }
            Some(mut e) => {
                // A clock behind first_seen (another node's) counts as no time elapsed.
                let waited = now.saturating_sub(e.first_seen).max(0);
                e.last_seen = now.max(e.last_seen);
                if waited >= delay {
                    e.passed = true;
                    e.passes += 1;
                    (e, GreylistDecision::Pass(PassReason::Confirmed))
                } else {
                    e.deferred += 1;
                    let left = delay.saturating_sub(waited).max(1);
                    (e, defer(left))
                }
            }
            None => {
                let e = GreylistEntry {
                    network: network.to_string(),
                    sender: sender.to_string(),
                    recipient: recipient.to_string(),
                    first_seen: now,
                    last_seen: now,
                    passed: false,
                    deferred: 1,
                    passes: 0,
                };
                (e, defer(delay.max(1)))
            }
        }
    }

    /// Deletes expired triplets and client networks as of `now`; the caller runs it
    /// periodically (hourly is plenty).
    pub async fn purge(&self, store: &Store, now: i64) -> Result<GreylistPurged, StoreError> {
        let waiting = secs(
            self.settings
                .unconfirmed_expiry_secs
                .max(self.settings.retry_window_secs),
        );
        let confirmed = secs(self.settings.confirmed_expiry_secs);
        store
            .greylist_purge(now.saturating_sub(waiting), now.saturating_sub(confirmed))
            .await
    }
}

fn defer(secs: i64) -> GreylistDecision {
    GreylistDecision::Defer {
        retry_after_secs: u64::try_from(secs).unwrap_or(1),
    }
}

fn secs(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The sender as greylisting compares it: lower case, without a BATV tag
/// (`prvs=tag=user@d` becomes `user@d`), and SRS addresses of one forwarder reduced to
/// `srs@forwarder`, as their local parts change with every message.
pub fn normalize_sender(sender: &str) -> String {
    let sender = sender.trim().trim_start_matches('<').trim_end_matches('>');
    let lower = sender.to_lowercase();
    let Some((local, domain)) = lower.rsplit_once('@') else {
        return lower;
    };
    if local.starts_with("srs0=") || local.starts_with("srs1=") {
        return format!("srs@{domain}");
    }
    for prefix in ["prvs=", "msprvs1="] {
        if let Some(rest) = local.strip_prefix(prefix)
            && let Some((_tag, user)) = rest.split_once('=')
            && !user.is_empty()
        {
            return format!("{user}@{domain}");
        }
    }
    lower
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn always() -> Greylist {
        Greylist::new(GreylistSettings {
            mode: GreylistMode::Always,
            ..GreylistSettings::default()
        })
    }

    async fn store() -> Store {
        Store::open("sqlite::memory:").await.unwrap()
    }

    fn t(client: &str) -> Triplet {
        Triplet::new(ip(client), "Alice@Example.ORG", "bob@example.com")
    }

    fn deferred(secs: u64) -> GreylistDecision {
        GreylistDecision::Defer {
            retry_after_secs: secs,
        }
    }

    const CONFIRMED: GreylistDecision = GreylistDecision::Pass(PassReason::Confirmed);
    const KNOWN: GreylistDecision = GreylistDecision::Pass(PassReason::Known);

    #[tokio::test]
    async fn first_try_defers_then_retry_after_delay_passes() {
        let (g, s) = (always(), store().await);
        let x = t("192.0.2.10");
        assert_eq!(g.check(&s, &x, 0.0, T0).await.unwrap(), deferred(300));
        // Too early: deferred again, with the time that is left.
        assert_eq!(g.check(&s, &x, 0.0, T0 + 100).await.unwrap(), deferred(200));
        assert_eq!(g.check(&s, &x, 0.0, T0 + 299).await.unwrap(), deferred(1));
        assert_eq!(g.check(&s, &x, 0.0, T0 + 300).await.unwrap(), CONFIRMED);
        // Confirmed: immediate from now on.
        assert_eq!(g.check(&s, &x, 0.0, T0 + 301).await.unwrap(), KNOWN);
        assert_eq!(g.check(&s, &x, 0.0, T0 + 86400).await.unwrap(), KNOWN);

        let e = s
            .greylist_get("192.0.2.0/24", "alice@example.org", "bob@example.com")
            .await
            .unwrap()
            .unwrap();
        assert!(e.passed);
        assert_eq!(
            (e.first_seen, e.last_seen, e.deferred, e.passes),
            (T0, T0 + 86400, 3, 3)
        );
    }

    #[tokio::test]
    async fn reply_names_the_delay() {
        let reply = deferred(300).reply().unwrap();
        assert_eq!(reply.code, 451);
        assert_eq!(reply.status.as_deref(), Some("4.7.1"));
        assert!(reply.lines[0].contains("300 seconds"), "{:?}", reply.lines);
        assert_eq!(KNOWN.reply(), None);
    }

    #[tokio::test]
    async fn retry_after_window_restarts() {
        let (g, s) = (always(), store().await);
        let x = t("192.0.2.10");
        assert_eq!(g.check(&s, &x, 0.0, T0).await.unwrap(), deferred(300));
        let late = T0 + 4 * 3600 + 1;
        assert_eq!(g.check(&s, &x, 0.0, late).await.unwrap(), deferred(300));
        assert_eq!(g.check(&s, &x, 0.0, late + 300).await.unwrap(), CONFIRMED);
    }

    #[tokio::test]
    async fn confirmed_entries_expire_unless_refreshed() {
        let (g, s) = (always(), store().await);
        let x = t("192.0.2.10");
        g.check(&s, &x, 0.0, T0).await.unwrap();
        assert_eq!(g.check(&s, &x, 0.0, T0 + 600).await.unwrap(), CONFIRMED);
        let day = 86400;
        // Each pass extends the 36 days.
        assert_eq!(
            g.check(&s, &x, 0.0, T0 + 600 + 30 * day).await.unwrap(),
            KNOWN
        );
        assert_eq!(
            g.check(&s, &x, 0.0, T0 + 600 + 60 * day).await.unwrap(),
            KNOWN
        );
        // Quiet for more than 36 days: a new round.
        let much_later = T0 + 600 + 97 * day;
        assert_eq!(
            g.check(&s, &x, 0.0, much_later).await.unwrap(),
            deferred(300)
        );
    }

    #[tokio::test]
    async fn purge_removes_expired_entries() {
        let (g, s) = (always(), store().await);
        let waiting = t("192.0.2.10");
        let confirmed = t("198.51.100.7");
        g.check(&s, &waiting, 0.0, T0).await.unwrap();
        g.check(&s, &confirmed, 0.0, T0).await.unwrap();
        g.check(&s, &confirmed, 0.0, T0 + 300).await.unwrap();

        // Within the unconfirmed expiry nothing goes.
        assert_eq!(g.purge(&s, T0 + 8 * 3600).await.unwrap().triplets, 0);
        let purged = g.purge(&s, T0 + 8 * 3600 + 1).await.unwrap();
        assert_eq!(purged.triplets, 1);
        let counts = s.greylist_counts().await.unwrap();
        assert_eq!((counts.waiting, counts.passed, counts.clients), (0, 1, 1));
        // The waiting triplet starts over; the confirmed one still passes.
        assert_eq!(
            g.check(&s, &waiting, 0.0, T0 + 9 * 3600).await.unwrap(),
            deferred(300)
        );
        assert_eq!(
            g.check(&s, &confirmed, 0.0, T0 + 9 * 3600).await.unwrap(),
            KNOWN
        );

        let purged = g.purge(&s, T0 + 9 * 3600 + 36 * 86400 + 1).await.unwrap();
        assert_eq!((purged.triplets, purged.clients), (2, 1));
    }

    #[tokio::test]
    async fn ipv4_clients_grouped_by_24() {
        let (g, s) = (always(), store().await);
        g.check(&s, &t("192.0.2.10"), 0.0, T0).await.unwrap();
        // The retry comes from another address of the same pool.
        assert_eq!(
            g.check(&s, &t("192.0.2.200"), 0.0, T0 + 300).await.unwrap(),
            CONFIRMED
        );
        // Another /24 is another client.
        assert_eq!(
            g.check(&s, &t("192.0.3.10"), 0.0, T0 + 300).await.unwrap(),
            deferred(300)
        );
        // IPv4-mapped IPv6 is the same client as its IPv4 address.
        assert_eq!(
            g.check(&s, &t("::ffff:192.0.2.1"), 0.0, T0 + 400)
                .await
                .unwrap(),
            KNOWN
        );
        assert_eq!(g.network(ip("192.0.2.77")).to_string(), "192.0.2.0/24");
    }

    #[tokio::test]
    async fn ipv6_clients_grouped_by_64() {
        let (g, s) = (always(), store().await);
        g.check(&s, &t("2001:db8:1:2::25"), 0.0, T0).await.unwrap();
        let same = t("2001:db8:1:2:ffff::1");
        assert_eq!(g.check(&s, &same, 0.0, T0 + 300).await.unwrap(), CONFIRMED);
        let other = t("2001:db8:1:3::25");
        assert_eq!(
            g.check(&s, &other, 0.0, T0 + 300).await.unwrap(),
            deferred(300)
        );
        assert_eq!(
            g.network(ip("2001:db8:1:2::25")).to_string(),
            "2001:db8:1:2::/64"
        );
    }

    #[tokio::test]
    async fn configured_prefixes() {
        let g = Greylist::new(GreylistSettings {
            ipv4_prefix: 32,
            ipv6_prefix: 48,
            ..GreylistSettings::default()
        });
        assert_eq!(g.network(ip("192.0.2.77")).to_string(), "192.0.2.77/32");
        assert_eq!(
            g.network(ip("2001:db8:1:2::25")).to_string(),
            "2001:db8:1::/48"
        );
    }

    #[tokio::test]
    async fn triplet_parts_are_normalized_and_distinct() {
        let (g, s) = (always(), store().await);
        let a = Triplet::new(ip("192.0.2.10"), "<Alice@Example.org>", "Bob@Example.com");
        g.check(&s, &a, 0.0, T0).await.unwrap();
        let same = Triplet::new(ip("192.0.2.10"), "alice@example.org", "bob@example.com");
        assert_eq!(g.check(&s, &same, 0.0, T0 + 300).await.unwrap(), CONFIRMED);
        let other_rcpt = Triplet::new(ip("192.0.2.10"), "alice@example.org", "carol@example.com");
        assert_eq!(
            g.check(&s, &other_rcpt, 0.0, T0 + 300).await.unwrap(),
            deferred(300)
        );
        let other_sender = Triplet::new(ip("192.0.2.10"), "", "bob@example.com");
        assert_eq!(
            g.check(&s, &other_sender, 0.0, T0 + 300).await.unwrap(),
            deferred(300)
        );
    }

    #[test]
    fn sender_normalization() {
        assert_eq!(normalize_sender("<Alice@Example.ORG>"), "alice@example.org");
        assert_eq!(
            normalize_sender("prvs=1234abcd=bounce@example.org"),
            "bounce@example.org"
        );
        assert_eq!(
            normalize_sender("msprvs1=18b2x=bounces-1@example.org"),
            "bounces-1@example.org"
        );
        assert_eq!(
            normalize_sender("SRS0=HHH=TT=orig.example=alice@forwarder.example"),
            "srs@forwarder.example"
        );
        assert_eq!(normalize_sender(""), "");
        assert_eq!(normalize_sender("prvs=@example.org"), "prvs=@example.org");
    }

    #[tokio::test]
    async fn mode_never_and_suspicious() {
        let s = store().await;
        let x = t("192.0.2.10");
        let never = Greylist::new(GreylistSettings {
            mode: GreylistMode::Never,
            ..GreylistSettings::default()
        });
        let pass = GreylistDecision::Pass(PassReason::NotApplied);
        assert_eq!(never.check(&s, &x, 100.0, T0).await.unwrap(), pass);

        let suspicious = Greylist::new(GreylistSettings::default());
        assert_eq!(suspicious.settings().mode, GreylistMode::Suspicious);
        assert_eq!(suspicious.check(&s, &x, 2.5, T0).await.unwrap(), pass);
        // Nothing was written for the clean client.
        assert_eq!(s.greylist_counts().await.unwrap().waiting, 0);
        assert_eq!(
            suspicious.check(&s, &x, 3.0, T0).await.unwrap(),
            deferred(300)
        );
        assert_eq!(
            suspicious.check(&s, &x, 3.0, T0 + 300).await.unwrap(),
            CONFIRMED
        );

        let always = always();
        let y = t("198.51.100.7");
        assert_eq!(always.check(&s, &y, -5.0, T0).await.unwrap(), deferred(300));
    }

    #[tokio::test]
    async fn client_network_auto_allowed_after_passes() {
        let s = store().await;
        let g = Greylist::new(GreylistSettings {
            mode: GreylistMode::Always,
            auto_allow_after: 2,
            ..GreylistSettings::default()
        });
        let hour = 3600;
        let first = Triplet::new(ip("192.0.2.10"), "a@example.org", "x@example.com");
        g.check(&s, &first, 0.0, T0).await.unwrap();
        assert_eq!(g.check(&s, &first, 0.0, T0 + 300).await.unwrap(), CONFIRMED);
        // A second pass within the hour does not count again.
        assert_eq!(g.check(&s, &first, 0.0, T0 + 400).await.unwrap(), KNOWN);
        let new = Triplet::new(ip("192.0.2.11"), "b@example.org", "y@example.com");
        assert_eq!(
            g.check(&s, &new, 0.0, T0 + 500).await.unwrap(),
            deferred(300)
        );
        // The second counted pass, an hour later, allows the network.
        assert_eq!(
            g.check(&s, &first, 0.0, T0 + 300 + hour).await.unwrap(),
            KNOWN
        );
        let newer = Triplet::new(ip("192.0.2.12"), "c@example.org", "z@example.com");
        assert_eq!(
            g.check(&s, &newer, 0.0, T0 + 400 + hour).await.unwrap(),
            GreylistDecision::Pass(PassReason::ClientAllowed)
        );
        // Another network is not.
        let elsewhere = Triplet::new(ip("198.51.100.1"), "c@example.org", "z@example.com");
        assert_eq!(
            g.check(&s, &elsewhere, 0.0, T0 + 400 + hour).await.unwrap(),
            deferred(300)
        );
        // Quiet for longer than the confirmed expiry: greylisted again.
        let later = T0 + 400 + hour + 37 * 86400;
        assert_eq!(
            g.check(&s, &newer, 0.0, later).await.unwrap(),
            deferred(300)
        );

        // Off with 0.
        let off = Greylist::new(GreylistSettings {
            mode: GreylistMode::Always,
            auto_allow_after: 0,
            ..GreylistSettings::default()
        });
        let other = Triplet::new(ip("192.0.2.13"), "d@example.org", "w@example.com");
        assert_eq!(
            off.check(&s, &other, 0.0, T0 + 500 + hour).await.unwrap(),
            deferred(300)
        );
    }

    /// The example of docs/filtering.md.
    #[test]
    fn documented_toml_example() {
        #[derive(Deserialize)]
        struct Doc {
            greylist: GreylistSettings,
        }
        let doc: Doc = toml::from_str(
            r#"
            [greylist]
            mode = "suspicious"
            suspicious_score = 1.0
            delay_secs = 300
            retry_window_secs = 14400
            unconfirmed_expiry_secs = 28800
            confirmed_expiry_secs = 3110400
            ipv4_prefix = 24
            ipv6_prefix = 64
            auto_allow_after = 5
            "#,
        )
        .unwrap();
        let d = GreylistSettings::default();
        let g = doc.greylist;
        assert!(g.validate().is_ok());
        assert_eq!(g.mode, d.mode);
        assert_eq!(
            (
                g.delay_secs,
                g.retry_window_secs,
                g.unconfirmed_expiry_secs,
                g.confirmed_expiry_secs
            ),
            (
                d.delay_secs,
                d.retry_window_secs,
                d.unconfirmed_expiry_secs,
                d.confirmed_expiry_secs
            )
        );
        assert_eq!(
            (g.ipv4_prefix, g.ipv6_prefix, g.auto_allow_after),
            (24, 64, 5)
        );
    }

    #[test]
    fn settings_shape_and_validation() {
        let s: GreylistSettings = serde_json::from_value(serde_json::json!({
            "mode": "always", "delay_secs": 60, "ipv6_prefix": 56
        }))
        .unwrap();
        assert_eq!(s.mode, GreylistMode::Always);
        assert_eq!((s.delay_secs, s.ipv6_prefix, s.ipv4_prefix), (60, 56, 24));
        assert!(s.validate().is_ok());
        assert!(GreylistSettings::default().validate().is_ok());
        let bad = GreylistSettings {
            ipv4_prefix: 33,
            ..GreylistSettings::default()
        };
        assert!(bad.validate().is_err());
        let bad = GreylistSettings {
            delay_secs: 5 * 3600,
            ..GreylistSettings::default()
        };
        assert!(bad.validate().is_err());
        assert!(
            serde_json::from_value::<GreylistSettings>(serde_json::json!({"mode": "sometimes"}))
                .is_err()
        );
    }
}
