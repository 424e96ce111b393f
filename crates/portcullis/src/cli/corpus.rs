//! `portcullis corpus`: train the spam classifier on folders of known ham and spam, and
//! measure the content filter on them (the operations layer's `corpus` computes; this
//! shows progress and prints).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use portcullis_filter::bayes;
use portcullis_filter::spam::SPAM_THRESHOLD;
use portcullis_ops::corpus::{
    CrossValidation, Mistake, Sample, SplitKind, Tally, load_samples, threads,
};

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
        /// How to split: random (stratified folds), time (train on older mail, judge
        /// newer, by arrival) or source (train on some lists and sender domains, judge
        /// others).
        #[arg(long, default_value_t = SplitKind::Random)]
        split: SplitKind,
        /// Parts the corpus is cut into (a time split judges all but the oldest).
        #[arg(long, default_value_t = 5)]
        folds: usize,
        /// Seed of the random and source splits; the same seed gives the same folds.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Percent of the training ham kept in each round (unbalanced training).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(1..=100))]
        train_ham: u8,
        /// Percent of the training spam kept in each round.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(1..=100))]
        train_spam: u8,
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
        CorpusCmd::Train { ham, spam, reset } => {
            let samples = load_samples(&ham, &spam)?;
            let ops = super::ops(config).await?;
            let bar = progress(samples.len(), "training");
            let t = ops.corpus_train(&samples, reset, &|| bar.inc(1)).await?;
            bar.finish_and_clear();
            ops.store().close().await;
            println!(
                "trained {} ham and {} spam messages in {:.1} s",
                t.ham, t.spam, t.seconds
            );
            println!(
                "model: {} ham, {} spam, {} tokens",
                t.model.ham_messages, t.model.spam_messages, t.model.tokens
            );
            let min = bayes::MIN_MESSAGES as i64;
            if t.model.ham_messages < min || t.model.spam_messages < min {
                println!(
                    "the classifier stays off until it has {} of each",
                    bayes::MIN_MESSAGES
                );
            }
        }
        CorpusCmd::Eval {
            ham,
            spam,
            threshold,
            list,
            json,
        } => {
            let samples = load_samples(&ham, &spam)?;
            let ops = super::ops(config).await?;
            let bar = progress(samples.len(), "scanning");
            let e = ops
                .corpus_eval(&samples, threshold, list, &|| bar.inc(1))
                .await?;
            bar.finish_and_clear();
            ops.store().close().await;
            if let Some(why) = &e.unready {
                eprintln!("portcullis: the classifier gives nothing: {why}");
            }
            if json {
                let mut out = e.tally.json(e.msgs_per_sec);
                if list && let Some(obj) = out.as_object_mut() {
                    obj.insert("mistakes".into(), mistakes_json(&samples, &e.mistakes));
                }
                println!("{out}");
            } else {
                print_mistakes(&samples, &e.mistakes);
                print_tally(&e.tally);
                println!(
                    "threshold {threshold}; {:.0} messages/s on {} threads",
                    e.msgs_per_sec,
                    threads()
                );
            }
        }
        CorpusCmd::CrossValidate {
            ham,
            spam,
            split,
            folds,
            seed,
            train_ham,
            train_spam,
            threshold,
            list,
            json,
            scores,
        } => {
            let samples = load_samples(&ham, &spam)?;
            let bar = progress(samples.len(), "reading");
            let how = CrossValidation {
                split,
                folds,
                seed,
                threshold,
                train_ham,
                train_spam,
                list,
                scores: scores.is_some(),
            };
            let cv = portcullis_ops::corpus::cross_validate(&samples, &how, &|| bar.inc(1))?;
            bar.finish_and_clear();
            if let (Some(path), Some(table)) = (&scores, &cv.scores) {
                std::fs::write(path, table)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if json {
                let mut out = cv.total.json(0.0);
                if let Some(obj) = out.as_object_mut() {
                    obj.remove("msgs_per_sec");
                    obj.insert("split".into(), split.as_str().into());
                    obj.insert("train_ham".into(), train_ham.into());
                    obj.insert("train_spam".into(), train_spam.into());
                    obj.insert(
                        "folds".into(),
                        cv.per_fold.iter().map(|t| t.json(0.0)).collect(),
                    );
                    if list {
                        obj.insert("mistakes".into(), mistakes_json(&samples, &cv.mistakes));
                    }
                }
                println!("{out}");
                return Ok(ExitCode::SUCCESS);
            }
            print_mistakes(&samples, &cv.mistakes);
            println!("split {split}, training ham {train_ham}%, spam {train_spam}%");
            for (n, t) in cv.per_fold.iter().enumerate() {
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
            print_tally(&cv.total);
            println!("findings (ham / spam messages):");
            for (name, (h, s)) in &cv.hits {
                println!("    {name:<32} {h:>6} {s:>6}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
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

fn print_tally(t: &Tally) {
    println!(
        "ham  {:>6}  false positives {:>4}  fp rate {:.2}%",
        t.ham,
        t.false_positives,
        100.0 * t.fp_rate()
    );
    println!(
        "spam {:>6}  false negatives {:>4}  recall  {:.2}%",
        t.spam,
        t.false_negatives,
        100.0 * t.recall()
    );
    println!("precision {:.2}%", 100.0 * t.precision());
}

/// The misjudged messages as JSON, for `--list --json`.
fn mistakes_json(samples: &[Sample], mistakes: &[Mistake]) -> serde_json::Value {
    mistakes.iter().map(|m| m.json(samples)).collect()
}

/// The misjudged messages, for `--list`: each file with the findings that weighed most.
fn print_mistakes(samples: &[Sample], mistakes: &[Mistake]) {
    for m in mistakes {
        let sample = &samples[m.sample];
        let kind = if sample.spam {
            "false negative"
        } else {
            "false positive"
        };
        println!("{kind}: {} score {:.1}", sample.path.display(), m.score);
        for f in m.top_findings() {
            println!("    {} {:+.1} {}", f.name, f.score, f.detail);
        }
    }
}
