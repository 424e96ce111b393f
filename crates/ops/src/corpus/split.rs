//! How `corpus cross-validate` cuts a corpus into training and test parts. A random split
//! flatters a filter: the test part holds near-copies of training mail (the same list, the
//! same campaign, the same week). The other two ways judge mail unlike what was learnt:
//!
//! - **time**: each class is put in order of arrival and cut into K consecutive parts;
//!   round k trains on parts 0..k (both classes, everything older) and judges part k, so
//!   the model never sees mail newer than what it judges (K-1 rounds).
//! - **source**: messages are grouped by where they come from — the mailing list
//!   (`List-Id`) when there is one, else the sender's domain (From) — and whole groups are
//!   dealt into K parts, so a list or a sender in the test part was never trained on.
//!
//! Arrival is the time the first (topmost) `Received` field gives, the receiving server's
//! clock; a message without one is placed by its `Date`, and one with neither counts as
//! oldest. Training may also be thinned per class (`train_ham`/`train_spam` percent) to
//! see how the filter copes with unbalanced training.

use std::fmt;
use std::str::FromStr;

use portcullis_filter::text::{self, MessageText};

/// The ways of splitting a corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SplitKind {
    /// Stratified random folds.
    #[default]
    Random,
    /// Train on older mail, judge newer.
    Time,
    /// Train on some sources (lists, sender domains), judge others.
    Source,
}

impl SplitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SplitKind::Random => "random",
            SplitKind::Time => "time",
            SplitKind::Source => "source",
        }
    }
}

impl fmt::Display for SplitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SplitKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "random" => Ok(SplitKind::Random),
            "time" => Ok(SplitKind::Time),
            "source" => Ok(SplitKind::Source),
            _ => Err(format!("unknown split {s:?}: random, time or source")),
        }
    }
}

/// What a split needs to know of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitFacts {
    pub spam: bool,
    /// Seconds since the epoch of arrival, if known.
    pub arrived: Option<i64>,
    /// The list or sender domain the message came from (lower case; may be empty).
    pub source: String,
}

impl SplitFacts {
    pub fn of(text: &MessageText, spam: bool) -> Self {
        SplitFacts {
            spam,
            arrived: arrival(text),
            source: source(text),
        }
    }
}

/// The arrival time: the topmost `Received` field's date, else the `Date` field.
pub fn arrival(text: &MessageText) -> Option<i64> {
    let received = text
        .header("received")
        .and_then(|r| r.rsplit_once(';'))
        .and_then(|(_, date)| mail_parser::DateTime::parse_rfc822(date.trim()));
    received
        .or_else(|| {
            text.header("date")
                .and_then(|d| mail_parser::DateTime::parse_rfc822(d.trim()))
        })
        .map(|d| d.to_timestamp())
}

/// The list a message came through (`List-Id`'s `<id>`), else the base domain of its
/// From address.
pub fn source(text: &MessageText) -> String {
    if let Some(list) = text.header("list-id") {
        let id = list
            .rsplit_once('<')
            .map_or(list, |(_, rest)| rest.trim_end_matches('>'));
        let id = id.trim().to_ascii_lowercase();
        if !id.is_empty() {
            return format!("list:{id}");
        }
    }
    text.header("from")
        .and_then(|from| {
            let addr = from
                .rsplit_once('<')
                .map_or(from, |(_, rest)| rest.trim_end_matches('>'));
            addr.rsplit_once('@').map(|(_, d)| d.trim().to_string())
        })
        .map(|d| text::base_domain(&d.to_ascii_lowercase()).to_string())
        .unwrap_or_default()
}

/// One round of a cross-validation: what to train on and what to judge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// The rounds of a `kind` split into `folds` parts (indices into `facts`).
pub fn rounds(kind: SplitKind, facts: &[SplitFacts], folds: usize, seed: u64) -> Vec<Round> {
    let folds = folds.max(2);
    let mut part_of = vec![0usize; facts.len()];
    match kind {
        SplitKind::Random => {
            for class in [false, true] {
                let mut idx: Vec<usize> = (0..facts.len())
                    .filter(|&i| facts[i].spam == class)
                    .collect();
                super::shuffle(&mut idx, seed ^ u64::from(class));
                for (n, i) in idx.into_iter().enumerate() {
                    part_of[i] = n % folds;
                }
            }
        }
        SplitKind::Time => {
            for class in [false, true] {
                let mut idx: Vec<usize> = (0..facts.len())
                    .filter(|&i| facts[i].spam == class)
                    .collect();
                idx.sort_by_key(|&i| (facts[i].arrived.unwrap_or(i64::MIN), i));
                let n = idx.len();
                for (rank, i) in idx.into_iter().enumerate() {
                    part_of[i] = rank * folds / n.max(1);
                }
            }
        }
        SplitKind::Source => {
            for (i, f) in facts.iter().enumerate() {
                part_of[i] = (mix(seed ^ bayes_hash(&f.source)) % folds as u64) as usize;
            }
        }
    }
    let parts = |pred: &dyn Fn(usize) -> bool| -> Vec<usize> {
        (0..facts.len()).filter(|&i| pred(part_of[i])).collect()
    };
    match kind {
        SplitKind::Time => (1..folds)
            .map(|k| Round {
                train: parts(&|p| p < k),
                test: parts(&|p| p == k),
            })
            .collect(),
        _ => (0..folds)
            .map(|k| Round {
                train: parts(&|p| p != k),
                test: parts(&|p| p == k),
            })
            .collect(),
    }
}

/// Keeps about `ham`% of the training ham and `spam`% of the training spam (by a hash of
/// the index and the seed, so the same seed thins alike), to measure unbalanced training.
pub fn thin(train: &mut Vec<usize>, facts: &[SplitFacts], ham: u8, spam: u8, seed: u64) {
    if ham >= 100 && spam >= 100 {
        return;
    }
    train.retain(|&i| {
        let keep = if facts[i].spam { spam } else { ham };
        mix(seed.wrapping_add(0x5bd1_e995) ^ i as u64) % 100 < u64::from(keep.min(100))
    });
}

fn bayes_hash(s: &str) -> u64 {
    portcullis_filter::bayes::token_hash(s)
}

/// splitmix64's finalizer: every bit of the output depends on every bit of the input.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(n: usize) -> Vec<SplitFacts> {
        (0..n)
            .map(|i| SplitFacts {
                spam: i % 4 == 0,
                // Arrival in reverse index order, so sorting matters.
                arrived: Some(1_000_000 - i as i64),
                source: format!("list:{}", i % 7),
            })
            .collect()
    }

    fn text_of(raw: &str) -> MessageText {
        let msg = mail_parser::MessageParser::default()
            .parse(raw.as_bytes())
            .expect("parse");
        text::extract(&msg)
    }

    #[test]
    fn parse_kinds() {
        for k in [SplitKind::Random, SplitKind::Time, SplitKind::Source] {
            assert_eq!(k.as_str().parse::<SplitKind>(), Ok(k));
        }
        assert!("folds".parse::<SplitKind>().is_err());
    }

    #[test]
    fn arrival_and_source() {
        let t = text_of(
            "Received: from a by mx.example.org; Tue, 8 Oct 2002 11:02:37 +0000\r\n\
             Received: from b by a; Mon, 7 Oct 2002 11:02:37 +0000\r\n\
             Date: Wed, 1 Jan 2003 00:00:00 +0000\r\n\
             From: Ann <ann@mail.Example.COM>\r\nSubject: x\r\n\r\nbody\r\n",
        );
        assert_eq!(arrival(&t), Some(1_034_074_957));
        assert_eq!(source(&t), "example.com");
        let t = text_of(
            "Date: Wed, 1 Jan 2003 00:00:00 +0000\r\nFrom: ann@example.com\r\n\
             List-Id: Talk about things <talk.lists.example.net>\r\n\r\nbody\r\n",
        );
        assert_eq!(arrival(&t), Some(1_041_379_200));
        assert_eq!(source(&t), "list:talk.lists.example.net");
        let t = text_of("Subject: nothing\r\n\r\nbody\r\n");
        assert_eq!((arrival(&t), source(&t)), (None, String::new()));
    }

    #[test]
    fn every_split_tests_each_message_at_most_once_and_never_trains_on_it() {
        let f = facts(200);
        for kind in [SplitKind::Random, SplitKind::Time, SplitKind::Source] {
            let rounds = rounds(kind, &f, 5, 3);
            let mut tested = vec![0; f.len()];
            for r in &rounds {
                for &i in &r.test {
                    tested[i] += 1;
                    assert!(!r.train.contains(&i), "{kind}: {i} trained and tested");
                }
            }
            assert!(tested.iter().all(|&n| n <= 1), "{kind}");
            if kind != SplitKind::Time {
                assert!(tested.iter().all(|&n| n == 1), "{kind}");
            }
        }
    }

    #[test]
    fn time_split_trains_only_on_older_mail() {
        let f = facts(200);
        let rounds = rounds(SplitKind::Time, &f, 4, 1);
        assert_eq!(rounds.len(), 3);
        for r in &rounds {
            // Within each class, everything trained is older than everything judged.
            for class in [false, true] {
                let of = |v: &[usize]| -> Vec<Option<i64>> {
                    v.iter()
                        .filter(|&&i| f[i].spam == class)
                        .map(|&i| f[i].arrived)
                        .collect()
                };
                let newest_trained = of(&r.train).into_iter().max().flatten();
                let oldest_tested = of(&r.test).into_iter().min().flatten();
                assert!(newest_trained < oldest_tested);
            }
            // Both classes are judged in every round.
            assert!(r.test.iter().any(|&i| f[i].spam) && r.test.iter().any(|&i| !f[i].spam));
        }
    }

    #[test]
    fn source_split_keeps_sources_apart() {
        let f = facts(200);
        for r in rounds(SplitKind::Source, &f, 3, 9) {
            for &i in &r.test {
                assert!(r.train.iter().all(|&j| f[j].source != f[i].source));
            }
        }
    }

    #[test]
    fn thinning_keeps_about_the_share_asked() {
        let f = facts(4000);
        let mut train: Vec<usize> = (0..f.len()).collect();
        thin(&mut train, &f, 100, 25, 1);
        let spam = train.iter().filter(|&&i| f[i].spam).count();
        let ham = train.iter().filter(|&&i| !f[i].spam).count();
        assert_eq!(ham, 3000);
        assert!((200..300).contains(&spam), "{spam}");
    }
}
