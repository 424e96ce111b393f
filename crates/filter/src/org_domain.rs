//! DMARC with the organizational domain of RFC 7489 §3.2 (the public suffix list), on
//! mail-auth's DMARC evaluation.
//!
//! mail-auth finds organizational domains by the DNS tree walk of DMARCbis: it asks for
//! `_dmarc.` records from the author domain up towards the root and takes the topmost
//! one found (or the one a `psd=` tag points at). It has no way to plug in a suffix list,
//! but it takes a cache of TXT answers. So the answers that RFC 7489 implies are fetched
//! first and handed to it as that cache: for each name the walk can ask about, the
//! author domain's own record, the organizational domain's record marked `psd=n` (a
//! bare `v=DMARC1; psd=n` when it has none, which ends the walk there and sets no
//! policy), and "no record" for the names in between and above. The walk then lands
//! where the suffix list says, and the rest (policy selection, `sp`/`np`, alignment,
//! `t=y`) stays mail-auth's. The answers live for one message.

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::to_a_label;
use mail_auth::dmarc::{Dmarc, Psd};
use mail_auth::{
    AuthenticatedMessage, DkimOutput, DkimResult, DnsError, Error, MessageAuthenticator,
    ResolverCache, Txt,
};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How the organizational domain of a name is found (`[auth] dmarc_org_domain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrgDomain {
    /// RFC 7489 §3.2: the public suffix list (`suffix.rs`).
    #[default]
    Psl,
    /// DMARCbis: the DNS tree walk, as mail-auth does it by itself.
    TreeWalk,
}

/// TXT answers held in memory, handed to mail-auth as its cache: the `_dmarc.` answers of
/// one message here, and the records of the benchmark and of the signing tests. Lookups
/// of names it does not hold go to the DNS, and their answers are kept in it.
#[derive(Default)]
pub struct TxtAnswers(Mutex<HashMap<Box<str>, Txt>>);

impl TxtAnswers {
    /// Sets the answer for `name` (`_dmarc.example.com.`, with the final dot).
    pub fn set(&self, name: impl Into<Box<str>>, answer: Txt) {
        self.map().insert(name.into(), answer);
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Txt>> {
        // A panic while holding the lock leaves it poisoned; the map is still whole.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ResolverCache<Box<str>, Txt> for TxtAnswers {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map().get(name).cloned()
    }

    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map().remove(name)
    }

    fn insert(&self, key: Box<str>, value: Txt, _valid_until: Instant) {
        self.set(key, value);
    }
}

/// What one name answers in the walk.
#[derive(Debug, PartialEq, Eq)]
enum Role {
    /// An organizational domain: its record, marked as the end of the walk.
    Organizational,
    /// The author domain below its organizational domain: its own record.
    Author,
    /// Anything else: no record.
    Nothing,
}

fn key(name: &str) -> String {
    format!("_dmarc.{name}.")
}

/// The names the tree walk from `start` can ask about, from `start` down to its
/// organizational domain, and the role of each. `author` is the author domain.
fn walk_names(start: &str, author: &str) -> Vec<(String, Role)> {
    let org = crate::suffix::organizational(start);
    let mut names = Vec::new();
    let mut name = start;
    loop {
        let role = if name == org {
            Role::Organizational
        } else if name == author {
            Role::Author
        } else {
            Role::Nothing
        };
        names.push((name.to_string(), role));
        if name == org {
            break;
        }
        match name.split_once('.') {
            Some((_, rest)) if !rest.is_empty() => name = rest,
            // `start` was not under its organizational domain (cannot happen for a
            // name the list gave): stop at the last label.
            _ => break,
        }
    }
    names
}

/// Fetches the answers for `message`, whose SPF identity is `mail_from` and whose DKIM
/// results are `dkim`. `cache`: records to answer from before asking the DNS (the
/// benchmark's; None in the gateway).
pub async fn answers<C: ResolverCache<Box<str>, Txt>>(
    auth: &MessageAuthenticator,
    cache: Option<&C>,
    message: &AuthenticatedMessage<'_>,
    dkim: &[DkimOutput<'_>],
    mail_from: &str,
) -> TxtAnswers {
    let Some(from) = message.from.first().and_then(|f| f.rsplit_once('@')) else {
        return TxtAnswers::default();
    };
    // The signing domains that DMARC looks at (mail-auth: a pass or a temporary error).
    let dkim_domains: Vec<&str> = dkim
        .iter()
        .filter(|d| matches!(d.result(), DkimResult::Pass | DkimResult::TempError(_)))
        .filter_map(|d| d.signature().map(|s| s.d.as_str()))
        .collect();
    let author = to_a_label(from.1.trim_end_matches('.')).into_owned();
    let author_org = crate::suffix::organizational(&author);
    let mut names: Vec<(String, Role)> = walk_names(&author, &author);
    // The other identities are walked only when they lie under the author's
    // organizational domain (otherwise they cannot align and mail-auth does not ask).
    for other in std::iter::once(mail_from).chain(dkim_domains.iter().copied()) {
        let other = to_a_label(other.trim_end_matches('.')).into_owned();
        let under = other == author_org || other.ends_with(&format!(".{author_org}"));
        if under {
            for (name, role) in walk_names(&other, &author) {
                if !names.iter().any(|(n, _)| *n == name) {
                    names.push((name, role));
                }
            }
        }
    }
    let lookups = names.iter().map(|(name, role)| async move {
        let answer = match role {
            Role::Nothing => not_found(),
            Role::Author => lookup(auth, cache, name, Psd::Default).await,
            Role::Organizational => match lookup(auth, cache, name, Psd::No).await {
                Txt::Error(Error::Dns(
                    DnsError::RecordNotFound(_) | DnsError::InvalidRecordType,
                )) => walk_end(),
                found => found,
            },
        };
        (key(name).into_boxed_str(), answer)
    });
    let answers = TxtAnswers::default();
    for (name, answer) in futures_util::future::join_all(lookups).await {
        answers.set(name, answer);
    }
    answers
}

/// `_dmarc.<name>` as found, with its `psd=` tag set to `psd`.
async fn lookup<C: ResolverCache<Box<str>, Txt>>(
    auth: &MessageAuthenticator,
    cache: Option<&C>,
    name: &str,
    psd: Psd,
) -> Txt {
    match auth.txt_lookup::<Dmarc>(key(name), cache).await {
        Ok(record) => {
            let mut record = Arc::unwrap_or_clone(record);
            record.psd = psd;
            Txt::Dmarc(Arc::new(record))
        }
        Err(e) => Txt::Error(e),
    }
}

fn not_found() -> Txt {
    Txt::Error(Error::Dns(DnsError::RecordNotFound(
        mail_auth::hickory_resolver::proto::op::ResponseCode::NXDomain,
    )))
}

/// A record that ends the walk at an organizational domain that publishes no policy.
fn walk_end() -> Txt {
    match Dmarc::parse(b"v=DMARC1; psd=n") {
        Ok(record) => Txt::Dmarc(Arc::new(record)),
        Err(e) => Txt::Error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_stops_at_the_organizational_domain() {
        let names = walk_names("a.b.example.co.uk", "a.b.example.co.uk");
        assert_eq!(
            names,
            vec![
                ("a.b.example.co.uk".to_string(), Role::Author),
                ("b.example.co.uk".to_string(), Role::Nothing),
                ("example.co.uk".to_string(), Role::Organizational),
            ]
        );
        // The author domain is its own organizational domain.
        assert_eq!(
            walk_names("example.com", "example.com"),
            vec![("example.com".to_string(), Role::Organizational)]
        );
        // A DKIM domain under the author's organizational domain.
        assert_eq!(
            walk_names("mail.example.com", "news.example.com"),
            vec![
                ("mail.example.com".to_string(), Role::Nothing),
                ("example.com".to_string(), Role::Organizational),
            ]
        );
        // A public suffix is its own organizational domain.
        assert_eq!(
            walk_names("co.uk", "co.uk"),
            vec![("co.uk".to_string(), Role::Organizational)]
        );
    }

    #[test]
    fn the_walk_end_record_sets_no_policy() {
        let Txt::Dmarc(r) = walk_end() else {
            panic!("not a record")
        };
        assert_eq!(r.psd, Psd::No);
        assert_eq!(r.p, mail_auth::dmarc::Policy::Unspecified);
        assert!(r.rua.is_empty());
    }
}
