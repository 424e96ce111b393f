//! The message log: where did a message go, and why.

use crate::{Access, Ops, OpsError, Result};
use portcullis_store::{LogPage, LogQuery, MessageRecord};

/// A time given as unix seconds or as a span back from now: `30m`, `2h`, `7d`.
pub fn parse_since(s: &str, now: i64) -> Result<i64> {
    if let Ok(t) = s.parse::<i64>() {
        return Ok(t);
    }
    // The unit is the last character, whatever its width (never split inside one).
    let cut = s.char_indices().last().map_or(0, |(i, _)| i);
    let (num, unit) = s.split_at(cut);
    let n: i64 = num
        .parse()
        .map_err(|_| OpsError::invalid("time", s, "expected unix time or 30m, 2h, 7d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => {
            return Err(OpsError::invalid(
                "time",
                s,
                "the unit must be s, m, h or d",
            ));
        }
    };
    Ok(now - n * mult)
}

impl Ops {
    /// The messages the actor may see (all, a domain-admin's domains', a user's own)
    /// that match `query`.
    pub async fn log_search(&self, query: &LogQuery) -> Result<Vec<MessageRecord>> {
        Ok(self.store.search_log_seen(query, &self.sees()).await?)
    }

    /// One page of the console's search, narrowed to the messages the actor may see.
    pub async fn log_search_page(&self, search: &LogQuery) -> Result<LogPage> {
        Ok(self.store.search_log_page(search, &self.sees()).await?)
    }

    /// One message of the log; one the actor may not see is not found.
    pub async fn log_get(&self, id: &str) -> Result<MessageRecord> {
        self.store
            .get_message(id)
            .await?
            .filter(|m| {
                let mut addresses: Vec<&str> =
                    m.recipients.iter().map(|r| r.address.as_str()).collect();
                addresses.push(&m.sender);
                self.actor().may_any(Access::ReadMessages, &addresses)
            })
            .ok_or_else(|| OpsError::not_found("message", id))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn since() {
        assert_eq!(super::parse_since("2h", 10_000).unwrap(), 10_000 - 7200);
        assert_eq!(super::parse_since("1795430462", 0).unwrap(), 1_795_430_462);
        assert!(super::parse_since("2w", 0).is_err());
        assert!(super::parse_since("soon", 0).is_err());
        // Not a panic on a character of more than one byte.
        assert!(super::parse_since("\u{80}", 0).is_err());
        assert!(super::parse_since("5é", 0).is_err());
        assert!(super::parse_since("", 0).is_err());
    }
}
