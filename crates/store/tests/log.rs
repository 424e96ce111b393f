//! The message log: inserts, duplicates, status updates, lookups and searches.

#[macro_use]
#[path = "../src/testing.rs"]
mod testing;

use portcullis_store::{
    LogEntry, LogQuery, MessageRecord, RecipientRecord, StatusUpdate, StoreError,
};

fn rcpt(address: &str) -> RecipientRecord {
    RecipientRecord {
        address: address.to_string(),
        status: "queued".to_string(),
        reply: None,
        remote_host: None,
        updated_at: 1_000,
        attempts: 0,
    }
}

fn message(id: &str, received_at: i64, sender: &str, recipients: &[&str]) -> MessageRecord {
    MessageRecord {
        id: id.to_string(),
        received_at,
        client_ip: "192.0.2.1".to_string(),
        helo: "client.example".to_string(),
        direction: "inbound".to_string(),
        sender: sender.to_string(),
        size: 1234,
        auth_user: None,
        message_id: Some(format!("<{id}@client.example>")),
        subject: Some("Hello".to_string()),
        verdict: Some("deliver".to_string()),
        rule: None,
        score: Some(-1.5),
        findings: Some(r#"[{"name":"spam.bayes","score":-1.5,"detail":"0.01"}]"#.to_string()),
        recipients: recipients.iter().map(|a| rcpt(a)).collect(),
    }
}

fn ids(found: &[MessageRecord]) -> Vec<&str> {
    found.iter().map(|m| m.id.as_str()).collect()
}

db_test! {
    async fn message_round_trip_on_file(db) {
        let store = db.open().await;
        let mut rec = message(
            "Q1",
            1_700_000_000,
            "alice@example.org",
            &["z@example.com", "a@example.com"],
        );
        rec.direction = "outbound".to_string();
        rec.auth_user = Some("alice@example.org".to_string());
        rec.subject = None;
        rec.recipients[1].status = "rejected".to_string();
        rec.recipients[1].reply = Some("550 5.1.1 no such user".to_string());
        store.log_message(&rec).await.unwrap();

        // Recipients come back in RCPT order, not sorted.
        assert_eq!(store.get_message("Q1").await.unwrap(), Some(rec));
        assert_eq!(store.get_message("nope").await.unwrap(), None);
    }
}

store_test! {
    async fn logging_the_same_id_again_is_ignored(store) {
        let first = message("Q1", 100, "a@example.org", &["x@example.com"]);
        store.log_message(&first).await.unwrap();
        let mut again = message("Q1", 200, "other@example.org", &["y@example.com"]);
        again.size = 1;
        store.log_message(&again).await.unwrap();
        assert_eq!(store.get_message("Q1").await.unwrap(), Some(first));
    }
}

store_test! {
    async fn duplicate_recipient_in_one_message_is_kept_once(store) {
        let rec = message(
            "Q1",
            100,
            "a@example.org",
            &["x@example.com", "x@example.com"],
        );
        store.log_message(&rec).await.unwrap();
        let got = store.get_message("Q1").await.unwrap().unwrap();
        assert_eq!(got.recipients.len(), 1);
    }
}

store_test! {
    async fn status_updates_count_attempts(store) {
        store
            .log_message(&message(
                "Q1",
                100,
                "a@example.org",
                &["x@example.com", "y@example.com"],
            ))
            .await
            .unwrap();

        store
            .log_recipient_status(
                "Q1",
                "x@example.com",
                "deferred",
                Some("451 4.7.1 try later"),
                Some("mx.example.com"),
                200,
            )
            .await
            .unwrap();
        store
            .log_recipient_status(
                "Q1",
                "x@example.com",
                "deferred",
                Some("421 busy"),
                Some("mx2.example.com"),
                300,
            )
            .await
            .unwrap();
        store
            .log_recipient_status(
                "Q1",
                "x@example.com",
                "delivered",
                Some("250 2.0.0 ok"),
                Some("mx.example.com"),
                400,
            )
            .await
            .unwrap();
        // Going back to queued (e.g. an admin requeue) is not itself an attempt.
        store
            .log_recipient_status("Q1", "y@example.com", "queued", None, None, 150)
            .await
            .unwrap();
        store
            .log_recipient_status(
                "Q1",
                "y@example.com",
                "bounced",
                Some("550 5.1.1 unknown"),
                None,
                250,
            )
            .await
            .unwrap();

        let got = store.get_message("Q1").await.unwrap().unwrap();
        let x = &got.recipients[0];
        assert_eq!(x.address, "x@example.com");
        assert_eq!(x.status, "delivered");
        assert_eq!(x.reply.as_deref(), Some("250 2.0.0 ok"));
        assert_eq!(x.remote_host.as_deref(), Some("mx.example.com"));
        assert_eq!(x.updated_at, 400);
        assert_eq!(x.attempts, 3);
        let y = &got.recipients[1];
        assert_eq!(y.status, "bounced");
        assert_eq!(y.remote_host, None);
        assert_eq!(y.attempts, 1);
    }
}

store_test! {
    async fn status_for_unknown_recipient_is_not_an_error(store) {
        store
            .log_recipient_status("missing", "x@example.com", "delivered", None, None, 1)
            .await
            .unwrap();
    }
}

store_test! {
    async fn invalid_values_are_refused_with_context(store) {
        let mut rec = message("Q1", 100, "a@example.org", &["x@example.com"]);
        rec.recipients[0].status = "lost".to_string();
        let err = store.log_message(&rec).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }));
        assert!(err.to_string().starts_with("logging message Q1: "), "{err}");
        assert_eq!(store.get_message("Q1").await.unwrap(), None);

        let mut rec = message("Q2", 100, "a@example.org", &[]);
        rec.direction = "sideways".to_string();
        assert!(store.log_message(&rec).await.is_err());

        store
            .log_message(&message("Q3", 100, "a@example.org", &["x@example.com"]))
            .await
            .unwrap();
        let err = store
            .log_recipient_status("Q3", "x@example.com", "gone", None, None, 1)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("gone"), "{err}");
    }
}

store_test! {
    async fn search_is_newest_first_with_recipients(store) {
        store
            .log_message(&message("old", 100, "a@example.org", &["x@example.com"]))
            .await
            .unwrap();
        store
            .log_message(&message(
                "new",
                300,
                "a@example.org",
                &["y@example.com", "z@example.com"],
            ))
            .await
            .unwrap();
        store
            .log_message(&message("mid", 200, "a@example.org", &[]))
            .await
            .unwrap();

        let found = store.search_log(&LogQuery::default()).await.unwrap();
        assert_eq!(ids(&found), ["new", "mid", "old"]);
        let addrs: Vec<_> = found[0]
            .recipients
            .iter()
            .map(|r| r.address.as_str())
            .collect();
        assert_eq!(addrs, ["y@example.com", "z@example.com"]);
        assert!(found[1].recipients.is_empty());
        assert_eq!(found[2].recipients.len(), 1);

        let limited = store
            .search_log(&LogQuery {
                limit: 2,
                ..LogQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(ids(&limited), ["new", "mid"]);
    }
}

store_test! {
    async fn search_by_time_range(store) {
        for (id, at) in [("a", 100), ("b", 200), ("c", 300)] {
            store
                .log_message(&message(id, at, "s@example.org", &[]))
                .await
                .unwrap();
        }
        let q = LogQuery {
            since: Some(200),
            ..LogQuery::default()
        };
        assert_eq!(ids(&store.search_log(&q).await.unwrap()), ["c", "b"]);
        let q = LogQuery {
            until: Some(300),
            ..LogQuery::default()
        };
        assert_eq!(ids(&store.search_log(&q).await.unwrap()), ["b", "a"]);
        let q = LogQuery {
            since: Some(150),
            until: Some(250),
            ..LogQuery::default()
        };
        assert_eq!(ids(&store.search_log(&q).await.unwrap()), ["b"]);
    }
}

store_test! {
    async fn search_is_case_insensitive_substring(store) {
        store
            .log_message(&message(
                "1",
                100,
                "Alice@Example.ORG",
                &["Bob@Example.com"],
            ))
            .await
            .unwrap();
        store
            .log_message(&message(
                "2",
                200,
                "carol@example.net",
                &["dave@example.com", "erin@other.test"],
            ))
            .await
            .unwrap();

        let q = LogQuery {
            sender: Some("alice@EXAMPLE".to_string()),
            ..LogQuery::default()
        };
        assert_eq!(ids(&store.search_log(&q).await.unwrap()), ["1"]);
        let q = LogQuery {
            recipient: Some("BOB".to_string()),
            ..LogQuery::default()
        };
        assert_eq!(ids(&store.search_log(&q).await.unwrap()), ["1"]);
        let q = LogQuery {
            recipient: Some("other.TEST".to_string()),
            ..LogQuery::default()
        };
        let found = store.search_log(&q).await.unwrap();
        assert_eq!(ids(&found), ["2"]);
        // The whole message comes back, not just the matching recipient.
        assert_eq!(found[0].recipients.len(), 2);
        let q = LogQuery {
            sender: Some("carol".to_string()),
            recipient: Some("bob".to_string()),
            ..LogQuery::default()
        };
        assert!(store.search_log(&q).await.unwrap().is_empty());
        let q = LogQuery {
            sender: Some("example".to_string()),
            ..LogQuery::default()
        };
        assert_eq!(ids(&store.search_log(&q).await.unwrap()), ["2", "1"]);
    }
}

store_test! {
    async fn like_wildcards_in_input_match_literally(store) {
        store
            .log_message(&message(
                "us",
                100,
                "a_b@example.org",
                &["100%@example.com"],
            ))
            .await
            .unwrap();
        store
            .log_message(&message("x", 200, "axb@example.org", &["100x@example.com"]))
            .await
            .unwrap();
        store
            .log_message(&message(
                "bang",
                300,
                "a!b@example.org",
                &["a!%@example.com"],
            ))
            .await
            .unwrap();

        let q = LogQuery {
            sender: Some("a_b".to_string()),
            ..LogQuery::default()
        };
        assert_eq!(ids(&store.search_log(&q).await.unwrap()), ["us"]);
        let q = LogQuery {
            recipient: Some("100%".to_string()),
            ..LogQuery::default()
        };
        assert_eq!(ids(&store.search_log(&q).await.unwrap()), ["us"]);
        let q = LogQuery {
            sender: Some("%".to_string()),
            ..LogQuery::default()
        };
        assert!(store.search_log(&q).await.unwrap().is_empty());
        // The escape character itself is escaped too.
        let q = LogQuery {
            sender: Some("a!b".to_string()),
            ..LogQuery::default()
        };
        assert_eq!(ids(&store.search_log(&q).await.unwrap()), ["bang"]);
        let q = LogQuery {
            recipient: Some("a!%".to_string()),
            ..LogQuery::default()
        };
        assert_eq!(ids(&store.search_log(&q).await.unwrap()), ["bang"]);
    }
}

db_test! {
    async fn search_fills_recipients_across_batches(db) {
        let store = db.open().await;
        for i in 0..620 {
            let addr = format!("r{i}@example.com");
            store
                .log_message(&message(&format!("m{i:04}"), i, "s@example.org", &[&addr]))
                .await
                .unwrap();
        }
        let q = LogQuery {
            limit: 1000,
            ..LogQuery::default()
        };
        let found = store.search_log(&q).await.unwrap();
        assert_eq!(found.len(), 620);
        assert_eq!(found[0].id, "m0619");
        for m in &found {
            let n: i64 = m.id[1..].parse().unwrap();
            assert_eq!(m.recipients.len(), 1);
            assert_eq!(m.recipients[0].address, format!("r{n}@example.com"));
        }
    }
}

store_test! {
    async fn negative_limit_returns_nothing(store) {
        store
            .log_message(&message("1", 1, "s@example.org", &[]))
            .await
            .unwrap();
        let q = LogQuery {
            limit: -5,
            ..LogQuery::default()
        };
        assert!(store.search_log(&q).await.unwrap().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_one_file_all_succeed() {
    concurrent_writers_all_succeed(&testing::TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_postgres_all_succeed() {
    if let Some(db) = testing::TestDb::postgres().await {
        concurrent_writers_all_succeed(&db).await;
    }
}

async fn concurrent_writers_all_succeed(db: &testing::TestDb) {
    let store = db.open().await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("c{i:02}");
            store
                .log_message(&message(&id, i, "s@example.org", &["x@example.com"]))
                .await?;
            store
                .log_recipient_status(
                    &id,
                    "x@example.com",
                    "delivered",
                    Some("250 ok"),
                    None,
                    i + 1,
                )
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let found = store
        .search_log(&LogQuery {
            limit: 100,
            ..LogQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 40);
    assert!(found.iter().all(|m| m.recipients[0].attempts == 1));
}

store_test! {
    async fn batch_applies_in_order_and_skips_invalid_entries(store) {
        let status = |id: &str, address: &str, status: &str| {
            LogEntry::Status(StatusUpdate {
                id: id.into(),
                address: address.into(),
                status: status.into(),
                reply: Some("250 2.0.0 Ok".into()),
                remote_host: Some("mx".into()),
                at: 200,
            })
        };
        let mut bad = message("Q9", 100, "a@example.org", &["z@example.com"]);
        bad.direction = "sideways".into();
        store
            .log_batch(&[
                LogEntry::Message(message("Q1", 100, "a@example.org", &["x@example.com"])),
                status("Q1", "x@example.com", "deferred"),
                LogEntry::Message(bad),
                status("Q1", "x@example.com", "no-such-status"),
                status("Q1", "x@example.com", "delivered"),
            ])
            .await
            .unwrap();
        let m = store.get_message("Q1").await.unwrap().expect("logged");
        assert_eq!(m.recipients[0].status, "delivered");
        assert_eq!(m.recipients[0].attempts, 2);
        assert!(store.get_message("Q9").await.unwrap().is_none());
    }
}

store_test! {
    async fn large_batch_with_repeats_matches_one_by_one_logging(store) {
        let status = |id: &str, address: &str, status: &str, at: i64| {
            LogEntry::Status(StatusUpdate {
                id: id.into(),
                address: address.into(),
                status: status.into(),
                reply: Some(format!("{status} at {at}")),
                remote_host: Some("mx".into()),
                at,
            })
        };
        // More messages and recipients than one statement takes; an id logged twice; one
        // recipient updated three times in a row; a status for a recipient never logged.
        let mut batch: Vec<LogEntry> = (0..150)
            .map(|i| {
                LogEntry::Message(message(
                    &format!("B{i}"),
                    100 + i,
                    "a@example.org",
                    &["x@example.com", "y@example.com"],
                ))
            })
            .collect();
        let mut again = message("B7", 999, "other@example.org", &["z@example.com"]);
        again.subject = Some("second".into());
        batch.push(LogEntry::Message(again));
        for i in 0..150 {
            batch.push(status(&format!("B{i}"), "y@example.com", "delivered", 300));
        }
        batch.push(status("B3", "x@example.com", "deferred", 301));
        batch.push(status("B3", "x@example.com", "deferred", 302));
        batch.push(status("B3", "x@example.com", "bounced", 303));
        batch.push(status("B3", "nobody@example.com", "delivered", 304));
        store.log_batch(&batch).await.unwrap();

        let b7 = store.get_message("B7").await.unwrap().expect("logged");
        assert_eq!(
            b7.sender, "a@example.org",
            "the first record of an id is kept"
        );
        assert_eq!(b7.recipients.len(), 2);
        let b149 = store.get_message("B149").await.unwrap().expect("logged");
        assert_eq!(b149.recipients[1].status, "delivered");
        assert_eq!(b149.recipients[1].attempts, 1);
        assert_eq!(b149.recipients[0].status, "queued");
        let b3 = store.get_message("B3").await.unwrap().expect("logged");
        let x = &b3.recipients[0];
        assert_eq!(
            (x.status.as_str(), x.attempts, x.updated_at),
            ("bounced", 3, 303)
        );
        assert_eq!(x.reply.as_deref(), Some("bounced at 303"));
        assert_eq!(b3.recipients.len(), 2, "an unknown recipient is not added");
    }
}

store_test! {
    async fn search_is_narrowed_to_what_the_caller_sees(store) {
        use portcullis_store::Sees;
        store.log_message(&message("S1", 100, "x@outside.test", &["a@example.test"])).await.unwrap();
        store.log_message(&message("S2", 200, "b@example.test", &["y@outside.test"])).await.unwrap();
        store.log_message(&message("S3", 300, "x@outside.test", &["c@other.test"])).await.unwrap();
        let q = LogQuery::default();
        let found = store.search_log_seen(&q, &Sees::All).await.unwrap();
        assert_eq!(ids(&found), ["S3", "S2", "S1"]);
        let found = store
            .search_log_seen(&q, &Sees::Domains(vec!["example.test".into()]))
            .await
            .unwrap();
        assert_eq!(ids(&found), ["S2", "S1"]);
        let narrowed = LogQuery { sender: Some("outside".into()), ..LogQuery::default() };
        let found = store
            .search_log_seen(&narrowed, &Sees::Domains(vec!["example.test".into()]))
            .await
            .unwrap();
        assert_eq!(ids(&found), ["S1"]);
        let found = store
            .search_log_seen(&q, &Sees::Address("C@other.test".into()))
            .await
            .unwrap();
        assert_eq!(ids(&found), ["S3"]);
    }
}

store_test! {
    async fn console_search_pages_and_matches_any_field(store) {
        use portcullis_store::{LogQuery, Sees};
        for (i, (sender, rcpt)) in [
            ("x@outside.test", "a@example.test"),
            ("b@example.test", "y@outside.test"),
            ("x@outside.test", "c@other.test"),
            ("z@outside.test", "d@example.test"),
        ]
        .iter()
        .enumerate()
        {
            let mut m = message(&format!("P{i}"), 100 + i as i64, sender, &[rcpt]);
            if i == 3 {
                m.subject = Some("Invoice 100%".into());
                m.direction = "outbound".into();
                m.verdict = Some("quarantine".into());
            }
            store.log_message(&m).await.unwrap();
        }
        let page = |text: Option<&str>, limit, offset| LogQuery {
            text: text.map(str::to_string),
            limit,
            offset,
            ..LogQuery::default()
        };
        let first = store.search_log_page(&page(None, 2, 0), &Sees::All).await.unwrap();
        assert_eq!(ids(&first.messages), ["P3", "P2"]);
        assert!(first.more);
        assert_eq!(first.messages[0].recipients.len(), 1);
        let last = store.search_log_page(&page(None, 2, 2), &Sees::All).await.unwrap();
        assert_eq!(ids(&last.messages), ["P1", "P0"]);
        assert!(!last.more);

        // Sender, recipient, subject (a literal %) and Message-ID all match.
        for (text, expected) in [
            ("OUTSIDE", vec!["P3", "P2", "P1", "P0"]),
            ("c@other", vec!["P2"]),
            ("100%", vec!["P3"]),
            ("<P1@", vec!["P1"]),
            // A whole address or Message-ID is looked up exactly, case aside.
            ("C@Other.TEST", vec!["P2"]),
            ("x@outside.test", vec!["P2", "P0"]),
            ("<P1@client.example>", vec!["P1"]),
        ] {
            let found = store.search_log_page(&page(Some(text), 10, 0), &Sees::All).await.unwrap();
            assert_eq!(ids(&found.messages), expected, "{text}");
        }
        let q = LogQuery {
            direction: Some("outbound".into()),
            verdict: Some("quarantine".into()),
            ..LogQuery::default()
        };
        assert_eq!(ids(&store.search_log_page(&q, &Sees::All).await.unwrap().messages), ["P3"]);
        let seen = store
            .search_log_page(&page(Some("outside"), 10, 0), &Sees::Domains(vec!["example.test".into()]))
            .await
            .unwrap();
        assert_eq!(ids(&seen.messages), ["P3", "P1", "P0"]);
    }
}

store_test! {
    async fn search_by_header_client_verdict_direction_and_domains(store) {
        let mut a = message("a", 100, "alice@example.org", &["bob@example.com"]);
        a.subject = Some("Quarterly INVOICE 7".to_string());
        a.client_ip = "198.51.100.9".to_string();
        a.verdict = Some("quarantine:spam".to_string());
        let mut b = message("b", 200, "carol@partner.test", &["dave@other.test"]);
        b.direction = "outbound".to_string();
        b.subject = Some("lunch 100%".to_string());
        b.verdict = Some("reject".to_string());
        let mut c = message("c", 300, "x@sub.example.com", &["erin@example.net"]);
        c.subject = None;
        for m in [&a, &b, &c] {
            store.log_message(m).await.unwrap();
        }
        let search = |q: LogQuery| {
            let store = store.clone();
            async move { ids(&store.search_log(&q).await.unwrap()).iter().map(|s| s.to_string()).collect::<Vec<_>>() }
        };
        let q = |f: fn(&mut LogQuery)| {
            let mut q = LogQuery::default();
            f(&mut q);
            q
        };
        assert_eq!(search(q(|q| q.subject = Some("invoice".into()))).await, ["a"]);
        // `%` in the filter is a percent sign, not a wildcard.
        assert_eq!(search(q(|q| q.subject = Some("0%".into()))).await, ["b"]);
        // A Message-ID is whole, with or without its brackets.
        assert_eq!(search(q(|q| q.message_id = Some("b@client.example".into()))).await, ["b"]);
        assert_eq!(search(q(|q| q.message_id = Some("<b@client.example>".into()))).await, ["b"]);
        assert!(search(q(|q| q.message_id = Some("<b@".into()))).await.is_empty());
        assert_eq!(search(q(|q| q.client_ip = Some("198.51.100.9".into()))).await, ["a"]);
        assert!(search(q(|q| q.client_ip = Some("198.51.100".into()))).await.is_empty());
        assert_eq!(search(q(|q| q.verdict = Some("quarantine".into()))).await, ["a"]);
        assert_eq!(search(q(|q| q.verdict = Some("quarantine:spam".into()))).await, ["a"]);
        assert!(search(q(|q| q.verdict = Some("quarantine:virus".into()))).await.is_empty());
        assert_eq!(search(q(|q| q.verdict = Some("reject".into()))).await, ["b"]);
        assert_eq!(search(q(|q| q.verdict = Some("deliver".into()))).await, ["c"]);
        assert_eq!(search(q(|q| q.direction = Some("outbound".into()))).await, ["b"]);
        assert!(store
            .search_log(&q(|q| q.direction = Some("sideways".into())))
            .await
            .is_err());
        // A domain matches the sender's domain or a recipient's, not a subdomain nor a
        // substring.
        let seen = |domains: &[&str]| {
            let store = store.clone();
            let sees = portcullis_store::Sees::Domains(domains.iter().map(|d| d.to_string()).collect());
            async move {
                ids(&store.search_log_seen(&LogQuery::default(), &sees).await.unwrap())
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(seen(&["example.com"]).await, ["a"]);
        assert_eq!(seen(&["other.test", "example.net"]).await, ["c", "b"]);
        assert!(seen(&["ample.com"]).await.is_empty());
        // Paging: newest first, then skip.
        assert_eq!(
            search(q(|q| {
                q.limit = 1;
                q.offset = 1;
            }))
            .await,
            ["b"]
        );
    }
}

store_test! {
    async fn substrings_are_found_through_the_trigram_index(store) {
        let mut a = message("ta", 1_000, "Billing@Vendor.example", &["ops@example.com"]);
        a.subject = Some("Invoice \"Q4\" 100% paid_now".to_string());
        let mut b = message("tb", 2_000, "news@list.example", &["Carol.Smith@example.com", "x@example.com"]);
        b.subject = Some("Weekly news".to_string());
        let mut c = message("tc", 3_000, "news@list.example", &["dan@example.com"]);
        c.subject = Some("weekly NEWS again".to_string());
        for m in [&a, &b, &c] {
            store.log_message(m).await.unwrap();
        }
        let find = |q: LogQuery| {
            let store = store.clone();
            async move {
                let found = store.search_log(&q).await.unwrap();
                found.iter().map(|m| m.id.clone()).collect::<Vec<_>>()
            }
        };
        let text = |t: &str| LogQuery { text: Some(t.to_string()), ..LogQuery::default() };
        // Any field, case aside, newest first.
        assert_eq!(find(text("weekly news")).await, ["tc", "tb"]);
        assert_eq!(find(text("vendor.EX")).await, ["ta"]);
        assert_eq!(find(text("carol.smi")).await, ["tb"]);
        assert_eq!(find(text("@client.exam")).await, ["tc", "tb", "ta"]);
        // Quotes, percent and underscore are plain characters.
        assert_eq!(find(text("\"Q4\"")).await, ["ta"]);
        assert_eq!(find(text("100% paid_")).await, ["ta"]);
        assert!(find(text("100%paid")).await.is_empty());
        // Two characters: no trigram, the scan finds them all the same.
        assert_eq!(find(text("Q4")).await, ["ta"]);
        // Per field, and with a time range.
        let subject = |s: &str| LogQuery { subject: Some(s.to_string()), ..LogQuery::default() };
        assert!(find(subject("carol")).await.is_empty());
        assert_eq!(find(LogQuery { recipient: Some("carol".into()), ..LogQuery::default() }).await, ["tb"]);
        assert_eq!(find(LogQuery { sender: Some("list.exa".into()), ..LogQuery::default() }).await, ["tc", "tb"]);
        assert_eq!(
            find(LogQuery { subject: Some("news".into()), since: Some(1_500), until: Some(2_500), ..LogQuery::default() }).await,
            ["tb"]
        );
        assert_eq!(
            find(LogQuery { text: Some("news".into()), until: Some(2_000), ..LogQuery::default() }).await,
            Vec::<String>::new()
        );
    }
}

store_test! {
    async fn a_common_substring_finds_the_newest_page_and_a_rare_one_every_match(store) {
        // More matches than the index is asked for: the newest messages are read instead,
        // and a search narrowed by other filters still finds the old ones.
        let n = portcullis_store::TEXT_MATCHES_CAP + 10;
        let mut entries: Vec<LogEntry> = (0..n)
            .map(|i| {
                let mut m = message(&format!("c{i:05}"), 10_000 + i, "bulk@news.example", &["x@example.com"]);
                m.subject = Some(format!("common weekly letter {i}"));
                LogEntry::Message(m)
            })
            .collect();
        let mut old = message("old01", 5_000, "bulk@news.example", &["x@example.com"]);
        old.subject = Some("common weekly letter, the first".into());
        old.direction = "outbound".into();
        entries.push(LogEntry::Message(old));
        store.log_batch(&entries).await.unwrap();

        let q = LogQuery { subject: Some("weekly letter".into()), limit: 3, ..LogQuery::default() };
        let found = store.search_log(&q).await.unwrap();
        let last = n - 1;
        assert_eq!(ids(&found), [format!("c{last:05}"), format!("c{:05}", last - 1), format!("c{:05}", last - 2)]);
        let q = LogQuery {
            text: Some("weekly letter".into()),
            direction: Some("outbound".into()),
            ..LogQuery::default()
        };
        assert_eq!(ids(&store.search_log(&q).await.unwrap()), ["old01"]);
        // Rare within its time range: through the index.
        let q = LogQuery { text: Some("weekly letter".into()), until: Some(10_002), ..LogQuery::default() };
        assert_eq!(ids(&store.search_log(&q).await.unwrap()), ["c00001", "c00000", "old01"]);
    }
}

db_test! {
    async fn retention_purges_in_batches_and_export_pages(db) {
        use portcullis_store::{Purge, Sees};
        let store = db.open().await;
        for i in 0..7 {
            let rec = message(&format!("OLD{i}"), 1_000 + i, "a@example.org", &["b@example.com"]);
            store.log_message(&rec).await.unwrap();
        }
        store
            .log_message(&message("NEW", 5_000, "c@example.net", &["d@example.net"]))
            .await
            .unwrap();
        // The export: oldest first, page by page, narrowed to what the caller sees.
        let page = store.log_export_page(0, 10_000, None, 3, &Sees::All).await.unwrap();
        assert_eq!(ids(&page), ["OLD0", "OLD1", "OLD2"]);
        assert_eq!(page[0].recipients.len(), 1);
        let last = page.last().unwrap();
        let page = store
            .log_export_page(0, 10_000, Some((last.received_at, &last.id)), 10, &Sees::All)
            .await
            .unwrap();
        assert_eq!(ids(&page), ["OLD3", "OLD4", "OLD5", "OLD6", "NEW"]);
        let page = store
            .log_export_page(0, 5_000, None, 100, &Sees::Domains(vec!["example.com".into()]))
            .await
            .unwrap();
        assert_eq!(page.len(), 7);
        let page = store
            .log_export_page(0, 10_000, None, 100, &Sees::Domains(vec!["example.net".into()]))
            .await
            .unwrap();
        assert_eq!(ids(&page), ["NEW"]);
        // The purge: everything before the cut, two rows a statement.
        assert_eq!(store.purge_older(Purge::MessageLog, 4_000, 2).await.unwrap(), 7);
        assert!(store.get_message("OLD3").await.unwrap().is_none());
        assert!(store.get_message("NEW").await.unwrap().is_some());
        let left = store.log_export_page(0, 10_000, None, 100, &Sees::All).await.unwrap();
        assert_eq!(ids(&left), ["NEW"]);
        // The search index forgot them too.
        let q = LogQuery { text: Some("example.org".into()), ..LogQuery::default() };
        assert!(store.search_log(&q).await.unwrap().is_empty());
        assert_eq!(store.purge_older(Purge::Audit, 4_000, 2).await.unwrap(), 0);
        assert_eq!(store.purge_older(Purge::Reports, 4_000, 2).await.unwrap(), 0);
        assert_eq!(store.purge_older(Purge::Quarantine, 4_000, 2).await.unwrap(), 0);
    }
}
