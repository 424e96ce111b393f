//! `portcullis corpus`: train the spam classifier on folders of known ham and spam, and
//! measure the content filter on them. Both run the gateway's own content pipeline
//! (`ContentScanner::scan`), so what they measure is what SMTP does.
//!
//! A corpus folder holds one message per file; an mbox `From ` first line is skipped and
//! LF line ends are fine. Files whose names start with a dot are ignored.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use portcullis_filter::bayes::{self, BayesModel, NotEnoughTraining, TrainingDelta};
use portcullis_filter::content::ContentScanner;
use portcullis_filter::finding::total_score;
use portcullis_filter::spam::{SPAM_THRESHOLD, SpamChecker};
use portcullis_store::Store;

use crate::config::Config;

#[derive(Subcommand)]
pub enum CorpusCmd {
    /// Train the spam classifier on folders of ham and spam (one message per file).
    Train {
        /// A folder of legitimate mail; repeat for more.
        #[arg(long)]
        ham: Vec<PathBuf>,
        /// A folder of spam; repeat for more.
        #[arg(long)]
        spam: Vec<PathBuf>,
        /// Forget the stored model first.
        #[arg(long)]
        reset: bool,
    },
    /// Scan folders of known ham and spam and report how well the filter sorts them.
    Eval {
        #[arg(long)]
        ham: Vec<PathBuf>,
        #[arg(long)]
        spam: Vec<PathBuf>,
        /// Spam score at and above which a message counts as spam.
        #[arg(long, default_value_t = SPAM_THRESHOLD)]
        threshold: f64,
        /// Name each misjudged file with its score and findings.
        #[arg(long)]
        list: bool,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Cross-validate in memory (the store is not touched): split the folders into K
    /// parts, train on K-1 of them and evaluate on the other, once for each part.
    CrossValidate {
        #[arg(long)]
        ham: Vec<PathBuf>,
        #[arg(long)]
        spam: Vec<PathBuf>,
        #[arg(long, default_value_t = 5)]
        folds: usize,
        /// Seed of the random split; the same seed gives the same folds.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = SPAM_THRESHOLD)]
        threshold: f64,
        #[arg(long)]
        list: bool,
        #[arg(long)]
        json: bool,
        /// Write every message's class, score and classifier probability to FILE (TSV).
        #[arg(long, value_name = "FILE")]
        scores: Option<PathBuf>,
    },
}

pub async fn corpus(config: &Config, cmd: CorpusCmd) -> Result<ExitCode> {
    match cmd {
        CorpusCmd::Train { ham, spam, reset } => train(config, &ham, &spam, reset).await,
        CorpusCmd::Eval {
            ham,
            spam,
            threshold,
            list,
            json,
        } => eval(config, &ham, &spam, threshold, list, json).await,
        CorpusCmd::CrossValidate {
            ham,
            spam,
            folds,
            seed,
            threshold,
            list,
            json,
            scores,
        } => cross_validate(
            &ham,
            &spam,
            &CvOptions {
                folds,
                seed,
                threshold,
                list,
                json,
                scores,
            },
        ),
    }
}

/// The spam checker a gateway runs: heuristics, and the classifier when the store holds a
/// trained model. The second value says why the classifier is off, if it is.
pub async fn load_spam_checker(store: &Store) -> Result<(SpamChecker, Option<NotEnoughTraining>)> {
    let counts = store.load_bayes().await?;
    let model = BayesModel::from_counts(
        counts.spam_messages,
        counts.ham_messages,
        counts.tokens.iter().map(|(t, s, h)| (t.as_str(), *s, *h)),
    );
    let unready = model.ready().err();
    Ok((SpamChecker::with_model(Arc::new(model)), unready))
}

/// One corpus message: where it came from, whether it is spam, and its bytes.
struct Sample {
    path: PathBuf,
    spam: bool,
    raw: Vec<u8>,
}

fn load_samples(ham: &[PathBuf], spam: &[PathBuf]) -> Result<Vec<Sample>> {
    if ham.is_empty() && spam.is_empty() {
        bail!("name at least one folder with --ham or --spam");
    }
    let mut samples = Vec::new();
    for (dirs, is_spam) in [(ham, false), (spam, true)] {
        for dir in dirs {
            for path in message_files(dir)? {
                let raw =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
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
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
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
fn strip_mbox_line(mut raw: Vec<u8>) -> Vec<u8> {
    if raw.starts_with(b"From ") {
        let end = memchr::memchr(b'\n', &raw).map_or(raw.len(), |i| i + 1);
        raw.drain(..end);
    }
    raw
}

fn progress(len: usize, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `f` over every sample on all cores, results in sample order.
fn par_map<T: Send>(
    samples: &[Sample],
    bar: &ProgressBar,
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
                        bar.inc(1);
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

/// The classifier tokens of a message, read by the content pipeline.
fn tokens_of(scanner: &ContentScanner, raw: &[u8]) -> Vec<String> {
    bayes::tokenize(&scanner.scan(raw).text)
}

async fn train(
    config: &Config,
    ham: &[PathBuf],
    spam: &[PathBuf],
    reset: bool,
) -> Result<ExitCode> {
    let samples = load_samples(ham, spam)?;
    let store = crate::cli::open_store(config).await?;
    let started = Instant::now();
    // No model: training reads text, it does not classify.
    let scanner = ContentScanner::default();
    let bar = progress(samples.len(), "training");
    let tokens = par_map(&samples, &bar, |s| tokens_of(&scanner, &s.raw));
    bar.finish_and_clear();
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
        store.reset_bayes().await?;
    }
    store
        .apply_bayes_delta(delta.spam_messages, delta.ham_messages, &rows)
        .await?;
    let summary = store.bayes_summary().await?;
    store.close().await;
    println!(
        "trained {} ham and {} spam messages in {:.1} s",
        delta.ham_messages,
        delta.spam_messages,
        started.elapsed().as_secs_f64()
    );
    println!(
        "model: {} ham, {} spam, {} tokens",
        summary.ham_messages, summary.spam_messages, summary.tokens
    );
    if summary.ham_messages < bayes::MIN_MESSAGES as i64
        || summary.spam_messages < bayes::MIN_MESSAGES as i64
    {
        println!(
            "the classifier stays off until it has {} of each",
            bayes::MIN_MESSAGES
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Counts of one evaluation.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    ham: usize,
    spam: usize,
    false_positives: usize,
    false_negatives: usize,
}

impl Tally {
    fn add(&mut self, is_spam: bool, called_spam: bool) {
        if is_spam {
            self.spam += 1;
            self.false_negatives += usize::from(!called_spam);
        } else {
            self.ham += 1;
            self.false_positives += usize::from(called_spam);
        }
    }

    fn precision(&self) -> f64 {
        let caught = self.spam - self.false_negatives;
        ratio(caught, caught + self.false_positives)
    }

    fn recall(&self) -> f64 {
        ratio(self.spam - self.false_negatives, self.spam)
    }

    fn fp_rate(&self) -> f64 {
        ratio(self.false_positives, self.ham)
    }

    fn json(&self, msgs_per_sec: f64) -> serde_json::Value {
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

    fn print(&self) {
        println!(
            "ham  {:>6}  false positives {:>4}  fp rate {:.2}%",
            self.ham,
            self.false_positives,
            100.0 * self.fp_rate()
        );
        println!(
            "spam {:>6}  false negatives {:>4}  recall  {:.2}%",
            self.spam,
            self.false_negatives,
            100.0 * self.recall()
        );
        println!("precision {:.2}%", 100.0 * self.precision());
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// A misjudged message, for `--list`.
fn print_mistake(sample: &Sample, score: f64, findings: &[portcullis_filter::finding::Finding]) {
    let kind = if sample.spam {
        "false negative"
    } else {
        "false positive"
    };
    println!("{kind}: {} score {score:.1}", sample.path.display());
    for f in findings {
        println!("    {} {:+.1} {}", f.name, f.score, f.detail);
    }
}

async fn eval(
    config: &Config,
    ham: &[PathBuf],
    spam: &[PathBuf],
    threshold: f64,
    list: bool,
    json: bool,
) -> Result<ExitCode> {
    let samples = load_samples(ham, spam)?;
    let store = crate::cli::open_store(config).await?;
    let (checker, unready) = load_spam_checker(&store).await?;
    store.close().await;
    if let Some(why) = unready {
        eprintln!("portcullis: the classifier gives nothing: {why}");
    }
    let scanner = ContentScanner {
        spam: checker,
        ..Default::default()
    };
    let bar = progress(samples.len(), "scanning");
    let started = Instant::now();
    let reports = par_map(&samples, &bar, |s| scanner.scan(&s.raw).findings);
    let elapsed = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let msgs_per_sec = if elapsed > 0.0 {
        samples.len() as f64 / elapsed
    } else {
        0.0
    };

    let mut tally = Tally::default();
    for (sample, findings) in samples.iter().zip(&reports) {
        let score = total_score(findings);
        let called_spam = score >= threshold;
        tally.add(sample.spam, called_spam);
        if list && called_spam != sample.spam {
            print_mistake(sample, score, findings);
        }
    }
    if json {
        println!("{}", tally.json(msgs_per_sec));
    } else {
        tally.print();
        println!(
            "threshold {threshold}; {:.0} messages/s on {} threads",
            msgs_per_sec,
            threads()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A deterministic shuffle (splitmix64 driving Fisher-Yates).
fn shuffle<T>(items: &mut [T], seed: u64) {
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

struct CvOptions {
    folds: usize,
    seed: u64,
    threshold: f64,
    list: bool,
    json: bool,
    scores: Option<PathBuf>,
}

fn cross_validate(ham: &[PathBuf], spam: &[PathBuf], opts: &CvOptions) -> Result<ExitCode> {
    let &CvOptions {
        folds,
        seed,
        threshold,
        list,
        json,
        ..
    } = opts;
    if folds < 2 {
        bail!("--folds must be at least 2");
    }
    let samples = load_samples(ham, spam)?;
    // Read every message once: the score of everything but the classifier, and its tokens.
    let scanner = ContentScanner::default();
    let bar = progress(samples.len(), "reading");
    let read = par_map(&samples, &bar, |s| {
        let report = scanner.scan(&s.raw);
        (report.findings, bayes::tokenize(&report.text))
    });
    bar.finish_and_clear();

    // Stratified folds: each class shuffled, then dealt round-robin.
    let mut fold_of = vec![0usize; samples.len()];
    for class in [false, true] {
        let mut idx: Vec<usize> = (0..samples.len())
            .filter(|&i| samples[i].spam == class)
            .collect();
        shuffle(&mut idx, seed ^ u64::from(class));
        for (n, i) in idx.into_iter().enumerate() {
            fold_of[i] = n % folds;
        }
    }

    let mut total = Tally::default();
    let mut per_fold = Vec::new();
    let mut hits: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    let mut table = String::from("path\tclass\tscore\tprobability\tfindings\n");
    for fold in 0..folds {
        let mut model = BayesModel::new();
        for (i, (_, tokens)) in read.iter().enumerate() {
            if fold_of[i] != fold {
                model.train(tokens, samples[i].spam);
            }
        }
        let checker = SpamChecker::with_model(Arc::new(model));
        let mut tally = Tally::default();
        for (i, (findings, tokens)) in read.iter().enumerate() {
            if fold_of[i] != fold {
                continue;
            }
            let mut findings = findings.clone();
            findings.extend(checker.bayes_finding(tokens));
            let score = total_score(&findings);
            if opts.scores.is_some() {
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
            let called_spam = score >= threshold;
            tally.add(samples[i].spam, called_spam);
            for f in &findings {
                let name = if f.name == "spam.bayes" {
                    format!("spam.bayes {:+.1}", f.score)
                } else {
                    f.name.clone()
                };
                let e = hits.entry(name).or_default();
                if samples[i].spam {
                    e.1 += 1;
                } else {
                    e.0 += 1;
                }
            }
            if list && called_spam != samples[i].spam {
                print_mistake(&samples[i], score, &findings);
            }
        }
        total.ham += tally.ham;
        total.spam += tally.spam;
        total.false_positives += tally.false_positives;
        total.false_negatives += tally.false_negatives;
        per_fold.push(tally);
    }

    if let Some(path) = &opts.scores {
        std::fs::write(path, &table).with_context(|| format!("writing {}", path.display()))?;
    }
    if json {
        let mut out = total.json(0.0);
        if let Some(obj) = out.as_object_mut() {
            obj.remove("msgs_per_sec");
            obj.insert(
                "folds".into(),
                per_fold.iter().map(|t| t.json(0.0)).collect(),
            );
        }
        println!("{out}");
        return Ok(ExitCode::SUCCESS);
    }
    for (n, t) in per_fold.iter().enumerate() {
        println!(
            "fold {n}: ham {} fp {} ({:.2}%), spam {} fn {} (recall {:.2}%)",
            t.ham,
            t.false_positives,
            100.0 * t.fp_rate(),
            t.spam,
            t.false_negatives,
            100.0 * t.recall()
        );
    }
    println!("all folds, threshold {threshold}:");
    total.print();
    println!("findings (ham / spam messages):");
    for (name, (h, s)) in &hits {
        println!("    {name:<32} {h:>6} {s:>6}");
    }
    Ok(ExitCode::SUCCESS)
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
