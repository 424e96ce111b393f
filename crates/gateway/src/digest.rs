//! Quarantine digests: one mail per recipient with held mail not yet listed, each message
//! with signed, expiring one-click links (release, delete, allow sender) that the user
//! portal serves, one link that releases everything the digest lists, and one to the
//! recipient's digest settings. Each recipient gets digests at their own interval (set
//! in the portal) or the configured one. Digests go out from the null sender, as other
//! automatic notices do, so they can never bounce into a loop.

use crate::config::Config;
use crate::inject::Injector;
use anyhow::{Context, Result};
use mail_builder::MessageBuilder;
use mail_builder::headers::raw::Raw;
use portcullis_filter::token::{LinkAction, LinkSigner};
use portcullis_queue::spool::{Direction, Envelope, new_id, now};
use portcullis_store::{DigestSchedule, QuarantineItem, Store};

/// The digest frequencies a recipient can choose, as (name, seconds between digests);
/// `None` is the configured interval, `Some(0)` no digests.
pub const FREQUENCIES: [(&str, Option<i64>); 5] = [
    ("default", None),
    ("hourly", Some(3600)),
    ("daily", Some(86400)),
    ("weekly", Some(7 * 86400)),
    ("never", Some(0)),
];

/// The interval of a frequency's name.
pub fn parse_frequency(name: &str) -> Option<Option<i64>> {
    FREQUENCIES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
        .map(|&(_, every)| every)
}

/// The name of an interval (one of `FREQUENCIES`, else "every N s").
pub fn frequency_name(every: Option<i64>) -> String {
    FREQUENCIES
        .iter()
        .find(|&&(_, e)| e == every)
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| format!("every {} s", every.unwrap_or_default()))
}

/// Whether `schedule` wants a digest at `t` (with `default_every` the configured interval,
/// 0 for no automatic digests; `force`: whatever the interval, as `portcullis quarantine
/// digest` asks). A recipient's own "never" holds even then.
pub fn is_due(schedule: DigestSchedule, default_every: i64, t: i64, force: bool) -> bool {
    if schedule.every_secs == Some(0) {
        return false;
    }
    if force {
        return true;
    }
    let every = schedule.every_secs.unwrap_or(default_every);
    every > 0 && schedule.last_sent.is_none_or(|last| t - last >= every)
}

/// The link-signing secret, made at first use and kept in the store so every node of a
/// cluster signs and checks alike.
pub async fn signer(store: &Store) -> Result<LinkSigner> {
    let hex = store
        .setting_or_init("quarantine_link_secret", || {
            let bytes: [u8; 32] = rand::random();
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        })
        .await?;
    let secret: Vec<u8> = (0..hex.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    anyhow::ensure!(
        secret.len() >= 32,
        "stored quarantine link secret is corrupt"
    );
    Ok(LinkSigner::new(&secret))
}

fn link(config: &Config, signer: &LinkSigner, item: &str, action: LinkAction, t: i64) -> String {
    let expires = t + (config.quarantine.link_days * 86400) as i64;
    format!(
        "{}/{}?t={}",
        config.quarantine.portal_url.trim_end_matches('/'),
        action.as_str(),
        signer.sign(item, action, expires)
    )
}

/// Keep a value from the network printable and short in a digest.
fn clean(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The digest for one recipient.
pub fn build(
    config: &Config,
    signer: &LinkSigner,
    digest_id: &str,
    recipient: &str,
    items: &[&QuarantineItem],
    t: i64,
) -> Vec<u8> {
    let release_all = link(config, signer, digest_id, LinkAction::ReleaseAll, t);
    let settings = link(config, signer, digest_id, LinkAction::Settings, t);
    let mut text = format!(
        "{} message(s) for {recipient} are held in quarantine and were not delivered.\r\n\
         Use the links to deliver, delete, or deliver and always accept that sender.\r\n\
         The links work for {} days.\r\n\r\n\
         Release all of them: {release_all}\r\n\r\n",
        items.len(),
        config.quarantine.link_days
    );
    let mut html = format!(
        "<p>{} message(s) for {} are held in quarantine and were not delivered.</p>\
         <p><a href=\"{}\">Release all of them</a></p>\
         <table><tr><th>From</th><th>Subject</th><th>Score</th><th>Kind</th><th></th></tr>",
        items.len(),
        html_escape(recipient),
        html_escape(&release_all)
    );
    for i in items {
        let sender = if i.sender.is_empty() {
            "<>".to_string()
        } else {
            clean(&i.sender, 200)
        };
        let subject = clean(i.subject.as_deref().unwrap_or("(no subject)"), 200);
        let release = link(config, signer, &i.id, LinkAction::Release, t);
        let delete = link(config, signer, &i.id, LinkAction::Delete, t);
        let allow = link(config, signer, &i.id, LinkAction::AllowSender, t);
        text.push_str(&format!(
            "From:    {sender}\r\nSubject: {subject}\r\nScore:   {:.1} ({})\r\n\
             Release: {release}\r\nDelete:  {delete}\r\nAllow sender: {allow}\r\n\r\n",
            i.score, i.class
        ));
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td><a href=\"{}\">Release</a> \
             <a href=\"{}\">Delete</a> <a href=\"{}\">Allow sender</a></td></tr>",
            html_escape(&sender),
            html_escape(&subject),
            i.score,
            html_escape(&i.class),
            html_escape(&release),
            html_escape(&delete),
            html_escape(&allow)
        ));
    }
    text.push_str(&format!(
        "How often these digests come (or never): {settings}\r\n"
    ));
    html.push_str(&format!(
        "</table><p><a href=\"{}\">How often these digests come</a></p>",
        html_escape(&settings)
    ));
    let mut out = Vec::new();
    let postmaster = format!("postmaster@{}", config.hostname);
    MessageBuilder::new()
        .from(("Quarantine", postmaster.as_str()))
        .to(recipient.to_string())
        .subject(format!("Quarantine: {} held message(s)", items.len()))
        .date(mail_builder::headers::date::Date::new(t))
        .message_id(format!("{}.digest@{}", new_id(), config.hostname))
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .text_body(text)
        .html_body(html)
        .serialize(&mut out);
    out
}

/// Write a digest for every recipient with held mail not yet listed whose interval has
/// passed (every such recipient but those who chose "never" when `force`), and hand it
/// to the queue; the queue ids of the digests.
pub async fn send(
    config: &Config,
    store: &Store,
    inject: &Injector,
    force: bool,
) -> Result<Vec<String>> {
    let due = store.quarantine_digest_due().await?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let signer = signer(store).await?;
    let schedules = store.digest_schedules().await?;
    let default_every = config.quarantine.digest_interval_secs as i64;
    let t = now();
    let mut ids = Vec::new();
    let mut start = 0;
    while start < due.len() {
        let rcpt = &due[start].recipient;
        let end = due[start..]
            .iter()
            .position(|i| &i.recipient != rcpt)
            .map_or(due.len(), |p| start + p);
        let items: Vec<&QuarantineItem> = due[start..end].iter().collect();
        start = end;
        let schedule = schedules.get(rcpt.as_str()).copied().unwrap_or_default();
        if !is_due(schedule, default_every, t, force) {
            continue;
        }
        let digest_id = format!("{}D", new_id());
        let message = build(config, &signer, &digest_id, rcpt, &items, t);
        let mut envelope = Envelope::notice(
            digest_id.clone(),
            &config.hostname,
            Direction::Inbound,
            std::slice::from_ref(rcpt),
        );
        envelope.received_at = t;
        let spooled = inject
            .write(&envelope, message)
            .await
            .with_context(|| format!("writing the digest for {rcpt}"))?;
        let listed: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
        store
            .quarantine_mark_digested(&digest_id, rcpt, &listed, t)
            .await?;
        // Marked before it is announced: a digest that is announced late is still sent,
        // one that is not marked would be sent twice.
        if let Err(e) = inject.announce(&spooled.0).await {
            tracing::warn!(id = %envelope.id, error = %e, "quarantine digest not announced");
        }
        tracing::info!(recipient = %rcpt, messages = listed.len(), id = %envelope.id, "quarantine digest queued");
        ids.push(envelope.id);
    }
    Ok(ids)
}

/// Keep sending digests (each recipient when their interval has passed) and expiring old
/// quarantine entries while the gateway runs.
pub fn spawn(config: Config, store: Store, inject: Injector) {
    let every = config.quarantine.digest_interval_secs;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(if every == 0 {
            3600
        } else {
            every.min(3600)
        }));
        // No digests at the first tick, right at the start: they wait one tick, so a
        // gateway restarted in a loop does not mail anyone each time.
        let mut first = true;
        loop {
            tick.tick().await;
            match store.quarantine_expire(now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(messages = n, "expired quarantined messages deleted"),
                Err(e) => tracing::warn!(error = %e, "quarantine expiry failed"),
            }
            if std::mem::take(&mut first) {
                continue;
            }
            match send(&config, &store, &inject, false).await {
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "quarantine digests failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_recipient_is_due_at_their_own_interval() {
        let day = 86400;
        let s = |every_secs, last_sent| DigestSchedule {
            every_secs,
            last_sent,
        };
        // Never had one: due; the configured interval otherwise.
        assert!(is_due(s(None, None), day, 1000, false));
        assert!(!is_due(s(None, Some(1000)), day, 1000 + day - 1, false));
        assert!(is_due(s(None, Some(1000)), day, 1000 + day, false));
        // Their own interval, longer or shorter than the configured one.
        assert!(!is_due(s(Some(7 * day), Some(0)), day, 2 * day, false));
        assert!(is_due(s(Some(3600), Some(0)), day, 3600, false));
        // Forced: due whatever the interval, but never is never.
        assert!(is_due(s(Some(7 * day), Some(0)), day, 10, true));
        assert!(!is_due(s(Some(0), None), day, 10, true));
        // No automatic digests configured: only when asked, or at a recipient's own
        // interval.
        assert!(!is_due(s(None, None), 0, 10, false));
        assert!(is_due(s(None, None), 0, 10, true));
        assert!(is_due(s(Some(3600), None), 0, 10, false));
    }

    #[test]
    fn frequencies_by_name() {
        assert_eq!(parse_frequency(" Weekly "), Some(Some(7 * 86400)));
        assert_eq!(parse_frequency("default"), Some(None));
        assert_eq!(parse_frequency("fortnightly"), None);
        assert_eq!(frequency_name(Some(0)), "never");
        assert_eq!(frequency_name(Some(120)), "every 120 s");
    }
}
