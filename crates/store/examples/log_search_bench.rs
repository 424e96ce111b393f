//! Message-log search at scale: fills a store with a month of generated mail (one million
//! messages by default, one to three recipients each) and times the searches the console
//! and `portcullis log search` make, printing the median and the engine's plan of each.
//! Run by `bench/logsearch`; see bench/README.md.
//!
//! Arguments: `--url sqlite:///tmp/x.db` (or `postgres://...`), `--messages N`,
//! `--reps N`. A store that already holds the messages is reused, so the second run skips
//! the generation.

use std::time::Instant;

use portcullis_store::{LogEntry, LogQuery, MessageRecord, RecipientRecord, Sees, Store};

/// A fixed-seed generator (SplitMix64): the same data on every run and machine, without a
/// dependency the store does not otherwise need.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: [&str; 16] = [
    "invoice",
    "meeting",
    "report",
    "offer",
    "update",
    "order",
    "delivery",
    "payment",
    "newsletter",
    "account",
    "project",
    "contract",
    "holiday",
    "agenda",
    "minutes",
    "reminder",
];
const NOW: i64 = 1_796_000_000;
const SPAN: i64 = 30 * 86_400;

fn message(i: u64, total: u64, rng: &mut Mix) -> MessageRecord {
    // Evenly over the month, oldest first, the last one now.
    let received_at = NOW - SPAN + (i as i64 * SPAN) / (total.max(1) as i64);
    let inbound = rng.below(10) < 8;
    let outside = format!("s{}@partner{}.test", rng.below(50), rng.below(2000));
    let local_domain = rng.below(50);
    let user = |rng: &mut Mix| format!("user{}@corp{local_domain}.example", rng.below(5000));
    let sender = if inbound { outside.clone() } else { user(rng) };
    let recipients = (0..1 + rng.below(3))
        .map(|_| RecipientRecord {
            address: if inbound { user(rng) } else { outside.clone() },
            status: "delivered".to_string(),
            reply: Some("250 2.0.0 Ok: queued".to_string()),
            remote_host: Some("mx.corp.example".to_string()),
            updated_at: received_at + 2,
            attempts: 1,
        })
        .collect();
    let verdict = match rng.below(100) {
        0..=4 => "quarantine:spam",
        5..=14 => "reject",
        _ => "deliver",
    };
    // One message in ten thousand has the rare word the subject search looks for.
    let subject = if rng.below(10_000) == 0 {
        format!("zebra crossing {i}")
    } else {
        format!(
            "{} {} {}",
            WORDS[rng.below(16) as usize],
            WORDS[rng.below(16) as usize],
            rng.below(100_000)
        )
    };
    MessageRecord {
        id: format!("{i:012X}"),
        received_at,
        client_ip: format!("198.51.{}.{}", rng.below(80), rng.below(250)),
        helo: "mail.partner.test".to_string(),
        direction: if inbound { "inbound" } else { "outbound" }.to_string(),
        sender,
        size: 2_000 + rng.below(200_000) as i64,
        auth_user: None,
        message_id: Some(format!("<{i}.{}@partner.test>", rng.next())),
        subject: Some(subject),
        verdict: Some(verdict.to_string()),
        rule: None,
        score: Some(rng.below(100) as f64 / 10.0),
        findings: Some(r#"[{"name":"spam.bayes","score":0.5,"detail":"0.6"}]"#.to_string()),
        recipients,
    }
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = arg(&args, "--url", "sqlite:///tmp/portcullis-logsearch.db");
    let total: u64 = arg(&args, "--messages", "1000000").parse()?;
    let reps: usize = arg(&args, "--reps", "15").parse()?;
    let store = Store::open(&url).await?;

    let have = store
        .search_log(&LogQuery {
            limit: 1,
            ..LogQuery::default()
        })
        .await?;
    let mut rng = Mix(7);
    let mut middle_id = None;
    if have.is_empty() {
        let started = Instant::now();
        let mut batch = Vec::with_capacity(5_000);
        for i in 0..total {
            let m = message(i, total, &mut rng);
            if i == total / 2 {
                middle_id = m.message_id.clone();
            }
            batch.push(LogEntry::Message(m));
            if batch.len() == 5_000 {
                store.log_batch(&batch).await?;
                batch.clear();
            }
        }
        store.log_batch(&batch).await?;
        eprintln!(
            "generated {total} messages in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    } else {
        eprintln!("reusing the messages already in {url}");
        for i in 0..=total / 2 {
            let m = message(i, total, &mut rng);
            if i == total / 2 {
                middle_id = m.message_id;
            }
        }
    }
    let middle_id = middle_id.unwrap_or_default();

    let day = NOW - 86_400;
    let all = Sees::All;
    let corp3 = Sees::Domains(vec!["corp3.example".into()]);
    let q = LogQuery::default;
    let searches: Vec<(&str, LogQuery, &Sees)> = vec![
        ("newest page", q(), &all),
        (
            "last hour",
            LogQuery {
                since: Some(NOW - 3_600),
                ..q()
            },
            &all,
        ),
        (
            "sender, whole address",
            LogQuery {
                sender: Some("s7@partner1234.test".into()),
                ..q()
            },
            &all,
        ),
        (
            "sender, domain substring",
            LogQuery {
                sender: Some("@partner1234.test".into()),
                ..q()
            },
            &all,
        ),
        (
            "recipient, whole address",
            LogQuery {
                recipient: Some("user4321@corp7.example".into()),
                ..q()
            },
            &all,
        ),
        (
            "recipient substring",
            LogQuery {
                recipient: Some("user4321@corp7".into()),
                ..q()
            },
            &all,
        ),
        (
            "subject, common word",
            LogQuery {
                subject: Some("invoice".into()),
                ..q()
            },
            &all,
        ),
        (
            "subject, rare word",
            LogQuery {
                subject: Some("zebra".into()),
                ..q()
            },
            &all,
        ),
        (
            "subject, rare word, last day",
            LogQuery {
                subject: Some("zebra".into()),
                since: Some(day),
                ..q()
            },
            &all,
        ),
        (
            "message-id",
            LogQuery {
                message_id: Some(middle_id.clone()),
                ..q()
            },
            &all,
        ),
        (
            "client ip",
            LogQuery {
                client_ip: Some("198.51.33.44".into()),
                ..q()
            },
            &all,
        ),
        (
            "quarantined, last day",
            LogQuery {
                verdict: Some("quarantine".into()),
                since: Some(day),
                ..q()
            },
            &all,
        ),
        (
            "search box, whole address",
            LogQuery {
                text: Some("user4321@corp7.example".into()),
                ..q()
            },
            &all,
        ),
        (
            "search box, word",
            LogQuery {
                text: Some("zebra".into()),
                ..q()
            },
            &all,
        ),
        (
            "search box, word, last day",
            LogQuery {
                text: Some("zebra".into()),
                since: Some(day),
                ..q()
            },
            &all,
        ),
        ("one domain's newest page", q(), &corp3),
        (
            "one domain, rare word, last day",
            LogQuery {
                text: Some("zebra".into()),
                since: Some(day),
                ..q()
            },
            &corp3,
        ),
    ];
    println!("engine {}  messages {total}  reps {reps}", store.engine());
    println!(
        "{:<34} {:>10} {:>10} {:>8}",
        "search (a page of 50)", "median ms", "max ms", "found"
    );
    for (name, mut q, sees) in searches {
        q.limit = 50;
        let mut times = Vec::with_capacity(reps);
        let mut found = 0;
        for _ in 0..reps {
            let t = Instant::now();
            found = store.search_log_page(&q, sees).await?.messages.len();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{:<34} {:>10.1} {:>10.1} {:>8}",
            name,
            times[times.len() / 2],
            times[times.len() - 1],
            found
        );
        for line in store.explain_search(&q, sees).await? {
            println!("    plan: {line}");
        }
    }
    store.close().await;
    Ok(())
}
