//! Counting the message log for the console's dashboard: recipients per time bucket,
//! direction and status, and the busiest senders, recipients and rejection reasons.
//! Read-only: the `messages` and `message_recipients` tables belong to `log`, which writes
//! them (the search is `log_search`).

use serde::Serialize;
use sqlx::AssertSqlSafe;

use crate::engine::on_pool;
use crate::log::{Bind, Sees, bind_all};
use crate::{Store, StoreError};

/// How many recipients of messages received in one time bucket ended in one status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct BucketCount {
    /// The bucket's number, counted from the start of the range.
    pub bucket: i64,
    pub direction: String,
    pub status: String,
    pub count: i64,
}

/// A name (sender, recipient, rule) and how often it occurred.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct TopEntry {
    pub name: String,
    pub count: i64,
}

/// The counters' granularity (seconds).
const HOUR: i64 = 3600;

/// The domain a recipient row of the log belongs to, as `message_domain_counts` keys it:
/// the recipient's for inbound mail, the sender's for outbound.
const ROW_DOMAIN: &str = "LOWER(CASE WHEN m.direction = 'outbound' \
     THEN substr(m.sender, {pos}(m.sender, '@') + 1) \
     ELSE substr(r.address, {pos}(r.address, '@') + 1) END)";

/// What the counts are narrowed to: every message, or the domains of a domain
/// administrator (the recipient's domain for inbound mail, the sender's for outbound).
/// `None` for a view the counters cannot narrow (one address).
fn domain_list(sees: &Sees) -> Option<Option<&[String]>> {
    match sees {
        Sees::All => Some(None),
        Sees::Domains(d) => Some(Some(d.as_slice())),
        Sees::Address(_) => None,
    }
}

/// `(expr IN ($n, ...))` over lower-cased domains, the binds appended.
fn in_domains(expr: &str, domains: &[String], binds: &mut Vec<Bind>) -> String {
    if domains.is_empty() {
        return "1 = 0".into();
    }
    let marks: Vec<String> = domains
        .iter()
        .map(|d| {
            binds.push(Bind::Text(d.to_ascii_lowercase()));
            format!("${}", binds.len())
        })
        .collect();
    format!("{expr} IN ({})", marks.join(", "))
}

impl Store {
    /// Recipients of messages received in `[since, since + buckets * width)`, counted per
    /// bucket of `width` seconds, direction and status, of the mail `sees` covers (every
    /// message, or a domain administrator's domains).
    pub async fn message_counts(
        &self,
        since: i64,
        width: i64,
        buckets: i64,
        sees: &Sees,
    ) -> Result<Vec<BucketCount>, StoreError> {
        let context = "counting the message log";
        let Some(domains) = domain_list(sees) else {
            return Err(StoreError::invalid(
                context,
                "the counts cover every message or some domains, not one address",
            ));
        };
        let width = width.max(1);
        let until = since + width * buckets.max(0);
        let mut binds = vec![Bind::Int(since), Bind::Int(width), Bind::Int(until)];
        // Whole hours come from the counters the triggers of migrations 0015 and 0020 keep
        // (a month is at most 720 hours of a few rows each); finer buckets count the log
        // itself, which is cheap over the short spans they are used for.
        let sql = if since % HOUR == 0 && width % HOUR == 0 {
            match domains {
                None => "SELECT (c.hour - $1) / $2 AS bucket, c.direction AS direction, \
                         c.status AS status, CAST(SUM(c.count) AS BIGINT) AS count \
                         FROM message_counts c WHERE c.hour >= $1 AND c.hour < $3 \
                         GROUP BY 1, 2, 3"
                    .to_string(),
                Some(list) => format!(
                    "SELECT (c.hour - $1) / $2 AS bucket, c.direction AS direction, \
                     c.status AS status, CAST(SUM(c.count) AS BIGINT) AS count \
                     FROM message_domain_counts c WHERE {} AND c.hour >= $1 AND c.hour < $3 \
                     GROUP BY 1, 2, 3",
                    in_domains("c.domain", list, &mut binds)
                ),
            }
        } else {
            let narrow = match domains {
                None => String::new(),
                Some(list) => {
                    let pos = if self.engine() == "postgres" {
                        "strpos"
                    } else {
                        "instr"
                    };
                    let expr = ROW_DOMAIN.replace("{pos}", pos);
                    format!(" AND {}", in_domains(&expr, list, &mut binds))
                }
            };
            format!(
                "SELECT (m.received_at - $1) / $2 AS bucket, m.direction AS direction, \
                 r.status AS status, COUNT(*) AS count \
                 FROM messages m JOIN message_recipients r ON r.message = m.id \
                 WHERE m.received_at >= $1 AND m.received_at < $3{narrow} \
                 GROUP BY 1, 2, 3"
            )
        };
        on_pool!(&self.pool, |p| {
            bind_all!(sqlx::query_as(AssertSqlSafe(sql.clone())), &binds)
                .fetch_all(p)
                .await
        })
        .map_err(StoreError::query(context))
    }

    /// The `n` most frequent envelope senders, recipients, or deciding rules of refused
    /// mail since `since`, of the mail `sees` covers: `what` is `sender`, `recipient` or
    /// `rejection`.
    pub async fn message_top(
        &self,
        what: &str,
        since: i64,
        n: i64,
        sees: &Sees,
    ) -> Result<Vec<TopEntry>, StoreError> {
        let context = "counting the message log";
        let mut binds = vec![Bind::Int(since), Bind::Int(n.clamp(0, 100))];
        // A narrowed view: messages with a recipient or the sender in its domains, as the
        // message log shows them; recipients of those domains only.
        let (messages, recipients) = match sees {
            Sees::All => (String::new(), String::new()),
            _ => {
                let sender = sees.condition("m.sender", &mut binds);
                let rcpt = sees.condition("x.address", &mut binds);
                let only = sees.condition("r.address", &mut binds);
                (
                    format!(
                        " AND ({} OR EXISTS (SELECT 1 FROM message_recipients x \
                         WHERE x.message = m.id AND {}))",
                        sender.unwrap_or_default(),
                        rcpt.unwrap_or_default()
                    ),
                    format!(" AND {}", only.unwrap_or_default()),
                )
            }
        };
        let sql = match what {
            "sender" => format!(
                "SELECT m.sender AS name, COUNT(*) AS count FROM messages m \
                 WHERE m.received_at >= $1 AND m.sender <> ''{messages} \
                 GROUP BY m.sender ORDER BY COUNT(*) DESC, m.sender LIMIT $2"
            ),
            // The messages of the range first (the time index), then their recipients by
            // message: written as a join, SQLite walked every recipient in address order
            // instead (12 s at a million messages).
            "recipient" => format!(
                "SELECT r.address AS name, COUNT(*) AS count FROM message_recipients r \
                 WHERE r.message IN (SELECT m.id FROM messages m WHERE m.received_at >= $1){recipients} \
                 GROUP BY r.address ORDER BY COUNT(*) DESC, r.address LIMIT $2"
            ),
            "rejection" => format!(
                "SELECT COALESCE(m.rule, m.verdict) AS name, COUNT(*) AS count FROM messages m \
                 WHERE m.received_at >= $1 AND (m.verdict = 'reject' OR m.verdict = 'tempfail'){messages} \
                 GROUP BY COALESCE(m.rule, m.verdict) ORDER BY COUNT(*) DESC LIMIT $2"
            ),
            other => {
                return Err(StoreError::invalid(
                    context,
                    format!("unknown ranking {other:?}; expected sender, recipient or rejection"),
                ));
            }
        };
        on_pool!(&self.pool, |p| {
            bind_all!(sqlx::query_as(AssertSqlSafe(sql.clone())), &binds)
                .fetch_all(p)
                .await
        })
        .map_err(StoreError::query(context))
    }
}
