//! Training and measuring the spam classifier on folders of known ham and spam. Every
//! step runs the gateway's own content pipeline (`ContentScanner::scan`), so what is
//! measured is what SMTP does. The caller reports progress and prints; this computes.
//!
//! A corpus folder holds one message per file; an mbox `From ` first line is skipped and
//! LF line ends are fine. Files whose names start with a dot are ignored.

use crate::{Access, Ops, OpsError, Result, Scope};
use portcullis_filter::bayes::{self, BayesModel, NotEnoughTraining, TrainingDelta};
use portcullis_filter::content::ContentScanner;
use portcullis_filter::finding::{Finding, total_score};
use portcullis_filter::spam::SpamChecker;
use portcullis_store::{BayesSummary, Store};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

pub mod split;

pub use split::SplitKind;

/// Called once per message done, from any worker thread (a progress bar).
pub type Progress<'a> = &'a (dyn Fn() + Sync);

/// One corpus message: where it came from, whether it is spam, and its bytes.
pub struct Sample {
    pub path: PathBuf,
    pub spam: bool,
    pub raw: Vec<u8>,
}

/// Every message of the ham and spam folders.
pub fn load_samples(ham: &[PathBuf], spam: &[PathBuf]) -> Result<Vec<Sample>> {
    if ham.is_empty() && spam.is_empty() {
        return Err(OpsError::invalid(
            "corpus",
            "",
            "name at least one folder with --ham or --spam",
        ));
    }
    let mut samples = Vec::new();
    for (dirs, is_spam) in [(ham, false), (spam, true)] {
        for dir in dirs {
            for path in message_files(dir)? {
                let raw = std::fs::read(&path)
                    .map_err(OpsError::spool(format!("reading {}", path.display())))?;
                samples.push(Sample {
                    raw: strip_mbox_line(raw),
                    path,
                    spam: is_spam,
                });
            }
        }
    }
    Ok(samples)
}

/// The regular files of a folder (or links to them), in name order, hidden files skipped.
fn message_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let err = || OpsError::spool(format!("reading {}", dir.display()));
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err())? {
        let entry = entry.map_err(err())?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        // Follows symbolic links, so a corpus split can be a folder of links.
        let path = entry.path();
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Drops an mbox `From ` separator line at the start of a message.
pub fn strip_mbox_line(mut raw: Vec<u8>) -> Vec<u8> {
    if raw.starts_with(b"From ") {
        let end = raw
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| i + 1);
        raw.drain(..end);
    }
    raw
}

/// The worker threads the corpus tools use.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `f` over every sample on all cores, results in sample order.
fn par_map<T: Send>(
    samples: &[Sample],
    progress: Progress,
    f: impl Fn(&Sample) -> T + Sync,
) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let mut parts: Vec<Vec<(usize, T)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads().min(samples.len().max(1)))
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(sample) = samples.get(i) else {
                            break;
                        };
                        out.push((i, f(sample)));
                        progress();
                    }
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("corpus worker panicked"))
            .collect()
    });
    let mut all: Vec<(usize, T)> = parts.iter_mut().flat_map(std::mem::take).collect();
    all.sort_unstable_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
}

/// Counts of one evaluation.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub ham: usize,
    pub spam: usize,
    pub false_positives: usize,
    pub false_negatives: usize,
}

impl Tally {
    pub fn add(&mut self, is_spam: bool, called_spam: bool) {
        if is_spam {
            self.spam += 1;
            self.false_negatives += usize::from(!called_spam);
        } else {
            self.ham += 1;
            self.false_positives += usize::from(called_spam);
        }
    }

    pub fn precision(&self) -> f64 {
        let caught = self.spam - self.false_negatives;
        ratio(caught, caught + self.false_positives)
    }

    pub fn recall(&self) -> f64 {
        ratio(self.spam - self.false_negatives, self.spam)
    }

    pub fn fp_rate(&self) -> f64 {
        ratio(self.false_positives, self.ham)
    }

    pub fn json(&self, msgs_per_sec: f64) -> serde_json::Value {
        serde_json::json!({
            "ham": self.ham,
            "spam": self.spam,
            "false_positives": self.false_positives,
            "false_negatives": self.false_negatives,
            "precision": self.precision(),
            "recall": self.recall(),
            "fp_rate": self.fp_rate(),
            "msgs_per_sec": msgs_per_sec,
        })
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// A misjudged message: its index in the samples, score and findings.
pub struct Mistake {
    pub sample: usize,
    pub score: f64,
    pub findings: Vec<Finding>,
}

/// How many findings a misjudged message shows: those that weighed most, either way.
pub const TOP_FINDINGS: usize = 5;

impl Mistake {
    /// The findings that weighed most (largest score either way), heaviest first.
    pub fn top_findings(&self) -> Vec<&Finding> {
        let mut top: Vec<&Finding> = self.findings.iter().collect();
        top.sort_by(|a, b| b.score.abs().total_cmp(&a.score.abs()));
        top.truncate(TOP_FINDINGS);
        top
    }

    /// `{"path", "class", "score", "findings": [{"name", "score", "detail"}]}`.
    pub fn json(&self, samples: &[Sample]) -> serde_json::Value {
        let sample = samples.get(self.sample);
        serde_json::json!({
            "path": sample.map(|s| s.path.display().to_string()).unwrap_or_default(),
            "class": if sample.is_some_and(|s| s.spam) { "spam" } else { "ham" },
            "kind": if sample.is_some_and(|s| s.spam) { "false_negative" } else { "false_positive" },
            "score": self.score,
            "findings": self.top_findings(),
        })
    }
}

/// What a training run did.
pub struct Trained {
    pub ham: u64,
    pub spam: u64,
    pub seconds: f64,
    /// The stored model afterwards.
    pub model: BayesSummary,
}

/// What an evaluation found.
pub struct Evaluated {
    pub tally: Tally,
    pub msgs_per_sec: f64,
    /// Only when asked for.
    pub mistakes: Vec<Mistake>,
    /// Why the classifier gave nothing, if it did not.
    pub unready: Option<NotEnoughTraining>,
}

/// What a cross-validation found.
pub struct CrossValidated {
    pub per_fold: Vec<Tally>,
    pub total: Tally,
    /// Per finding name (the classifier's by its score): ham and spam messages with it.
    pub hits: BTreeMap<String, (usize, usize)>,
    /// Every message's class, score, probability and findings (TSV), when asked for.
    pub scores: Option<String>,
    pub mistakes: Vec<Mistake>,
}

/// The classifier as the store holds it now (see [`portcullis_gateway::node::load_spam_checker`]).
pub async fn load_spam_checker(store: &Store) -> Result<(SpamChecker, Option<NotEnoughTraining>)> {
    Ok(portcullis_gateway::node::load_spam_checker(store).await?)
}

/// A deterministic shuffle (splitmix64 driving Fisher-Yates).
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for i in (1..items.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

impl Ops {
    /// Train the stored classifier on the samples (`reset`: forget the stored model first).
    pub async fn corpus_train(
        &self,
        samples: &[Sample],
        reset: bool,
        progress: Progress<'_>,
    ) -> Result<Trained> {
        self.actor().require(Access::WritePolicy, &Scope::Global)?;
        let started = Instant::now();
        // No model: training reads text, it does not classify.
        let scanner = ContentScanner::default();
        let tokens = par_map(samples, progress, |s| {
            bayes::tokenize(&scanner.scan(&s.raw).text)
        });
        let mut delta = TrainingDelta::default();
        for (sample, tokens) in samples.iter().zip(&tokens) {
            delta.train(tokens, sample.spam);
        }
        let rows: Vec<(&str, i64, i64)> = delta
            .tokens
            .iter()
            .map(|(t, &(s, h))| (t.as_str(), s, h))
            .collect();
        if reset {
            self.store.reset_bayes().await?;
        }
        self.store
            .apply_bayes_delta(delta.spam_messages, delta.ham_messages, &rows)
            .await?;
        let trained = Trained {
            ham: delta.ham_messages as u64,
            spam: delta.spam_messages as u64,
            seconds: started.elapsed().as_secs_f64(),
            model: self.store.bayes_summary().await?,
        };
        let after = serde_json::json!({
            "ham": trained.ham,
            "spam": trained.spam,
            "reset": reset,
        });
        self.audit("corpus.train", "classifier", None, Some(after))
            .await?;
        Ok(trained)
    }

    /// Scan the samples as SMTP would, with the stored model, and count.
    pub async fn corpus_eval(
        &self,
        samples: &[Sample],
        threshold: f64,
        list: bool,
        progress: Progress<'_>,
    ) -> Result<Evaluated> {
        self.actor().require(Access::ReadPolicy, &Scope::Global)?;
        let (checker, unready) = load_spam_checker(&self.store).await?;
        let scanner = ContentScanner {
            spam: checker,
            ..Default::default()
        };
        let started = Instant::now();
        let reports = par_map(samples, progress, |s| scanner.scan(&s.raw).findings);
        let elapsed = started.elapsed().as_secs_f64();
        let msgs_per_sec = if elapsed > 0.0 {
            samples.len() as f64 / elapsed
        } else {
            0.0
        };
        let mut tally = Tally::default();
        let mut mistakes = Vec::new();
        for (i, (sample, findings)) in samples.iter().zip(reports).enumerate() {
            let score = total_score(&findings);
            let called_spam = score >= threshold;
            tally.add(sample.spam, called_spam);
            if list && called_spam != sample.spam {
                mistakes.push(Mistake {
                    sample: i,
                    score,
                    findings,
                });
            }
        }
        Ok(Evaluated {
            tally,
            msgs_per_sec,
            mistakes,
            unready,
        })
    }
}

/// How to cross-validate.
#[derive(Debug, Clone)]
pub struct CrossValidation {
    pub split: SplitKind,
    pub folds: usize,
    pub seed: u64,
    pub threshold: f64,
    /// Percent of the training ham and spam kept in every round (100: all).
    pub train_ham: u8,
    pub train_spam: u8,
    /// Keep the misjudged messages.
    pub list: bool,
    /// Keep every message's score (TSV).
    pub scores: bool,
}

impl Default for CrossValidation {
    fn default() -> Self {
        CrossValidation {
            split: SplitKind::Random,
            folds: 5,
            seed: 1,
            threshold: portcullis_filter::spam::SPAM_THRESHOLD,
            train_ham: 100,
            train_spam: 100,
            list: false,
            scores: false,
        }
    }
}

/// Train on some parts of the corpus and judge another, once per round of the split
/// (see [`split`]), in memory (the store is not touched).
pub fn cross_validate(
    samples: &[Sample],
    how: &CrossValidation,
    progress: Progress,
) -> Result<CrossValidated> {
    if how.folds < 2 {
        return Err(OpsError::invalid(
            "folds",
            &how.folds.to_string(),
            "must be at least 2",
        ));
    }
    for (key, pct) in [("train-ham", how.train_ham), ("train-spam", how.train_spam)] {
        if !(1..=100).contains(&pct) {
            return Err(OpsError::invalid(
                key,
                &pct.to_string(),
                "a percentage from 1 to 100",
            ));
        }
    }
    // Read every message once: the score of everything but the classifier, its tokens,
    // and what the split needs.
    let scanner = ContentScanner::default();
    let read = par_map(samples, progress, |s| {
        let report = scanner.scan(&s.raw);
        let facts = split::SplitFacts::of(&report.text, s.spam);
        (report.findings, bayes::tokenize(&report.text), facts)
    });
    let facts: Vec<split::SplitFacts> = read.iter().map(|r| r.2.clone()).collect();
    let mut out = CrossValidated {
        per_fold: Vec::new(),
        total: Tally::default(),
        hits: BTreeMap::new(),
        scores: how
            .scores
            .then(|| String::from("path\tclass\tscore\tprobability\tfindings\n")),
        mistakes: Vec::new(),
    };
    for mut round in split::rounds(how.split, &facts, how.folds, how.seed) {
        split::thin(
            &mut round.train,
            &facts,
            how.train_ham,
            how.train_spam,
            how.seed,
        );
        let mut model = BayesModel::new();
        for &i in &round.train {
            model.train(&read[i].1, samples[i].spam);
        }
        let checker = SpamChecker::with_model(Arc::new(model));
        let mut tally = Tally::default();
        for &i in &round.test {
            let (findings, tokens, _) = &read[i];
            let mut findings = findings.clone();
            findings.extend(checker.bayes_finding(tokens));
            let score = total_score(&findings);
            if let Some(table) = &mut out.scores {
                let probability = checker
                    .model()
                    .and_then(|m| m.probability(tokens).ok())
                    .unwrap_or(0.5);
                let names: Vec<&str> = findings.iter().map(|f| f.name.as_str()).collect();
                table.push_str(&format!(
                    "{}\t{}\t{score}\t{probability}\t{}\n",
                    samples[i].path.display(),
                    if samples[i].spam { "spam" } else { "ham" },
                    names.join(","),
                ));
            }
            let called_spam = score >= how.threshold;
            tally.add(samples[i].spam, called_spam);
            for f in &findings {
                let name = if f.name == "spam.bayes" {
                    format!("spam.bayes {:+.1}", f.score)
                } else {
                    f.name.clone()
                };
                let e = out.hits.entry(name).or_default();
                if samples[i].spam {
                    e.1 += 1;
                } else {
                    e.0 += 1;
                }
            }
            if how.list && called_spam != samples[i].spam {
                out.mistakes.push(Mistake {
                    sample: i,
                    score,
                    findings,
                });
            }
        }
        out.total.ham += tally.ham;
        out.total.spam += tally.spam;
        out.total.false_positives += tally.false_positives;
        out.total.false_negatives += tally.false_negatives;
        out.per_fold.push(tally);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_line_is_stripped() {
        assert_eq!(
            strip_mbox_line(b"From a@b  Thu Aug 22 12:36:23 2002\nSubject: x\n\nbody".to_vec()),
            b"Subject: x\n\nbody"
        );
        assert_eq!(strip_mbox_line(b"Subject: x\n".to_vec()), b"Subject: x\n");
    }

    #[test]
    fn tally_rates() {
        let mut t = Tally::default();
        for _ in 0..99 {
            t.add(false, false);
        }
        t.add(false, true);
        for _ in 0..9 {
            t.add(true, true);
        }
        t.add(true, false);
        assert_eq!(
            (t.ham, t.spam, t.false_positives, t.false_negatives),
            (100, 10, 1, 1)
        );
        assert!((t.fp_rate() - 0.01).abs() < 1e-12);
        assert!((t.recall() - 0.9).abs() < 1e-12);
        assert!((t.precision() - 0.9).abs() < 1e-12);
        let j = t.json(12.5);
        let keys: Vec<&String> = j.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 8);
        assert_eq!(Tally::default().precision(), 0.0);
    }

    #[test]
    fn shuffle_is_deterministic() {
        let mut a: Vec<u32> = (0..50).collect();
        let mut b = a.clone();
        shuffle(&mut a, 7);
        shuffle(&mut b, 7);
        assert_eq!(a, b);
        assert_ne!(a, (0..50).collect::<Vec<_>>());
        a.sort();
        assert_eq!(a, (0..50).collect::<Vec<_>>());
    }
}
