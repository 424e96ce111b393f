//! The dashboard's counts of the message log: per bucket, and the busiest names.

#[macro_use]
#[path = "../src/testing.rs"]
mod testing;

use portcullis_store::{MessageRecord, RecipientRecord, Sees};

fn message(id: &str, at: i64, sender: &str, rcpt: &str, status: &str) -> MessageRecord {
    MessageRecord {
        id: id.to_string(),
        received_at: at,
        client_ip: format!("192.0.2.{}", at % 100),
        helo: "client.example".to_string(),
        direction: "inbound".to_string(),
        sender: sender.to_string(),
        size: 100,
        auth_user: None,
        message_id: Some(format!("<{id}@client.example>")),
        subject: Some(format!("Subject of {id} 100%_off")),
        verdict: Some(
            if status == "rejected" {
                "reject"
            } else {
                "deliver"
            }
            .to_string(),
        ),
        rule: (status == "rejected").then(|| "block-exe".to_string()),
        score: None,
        findings: None,
        recipients: vec![RecipientRecord {
            address: rcpt.to_string(),
            status: status.to_string(),
            reply: None,
            remote_host: None,
            updated_at: at,
            attempts: 0,
        }],
    }
}

store_test! {
    async fn counts_per_bucket_and_top_names(store) {
        for m in [
            message("M1", 1_010, "alice@example.net", "bob@example.com", "delivered"),
            message("M2", 1_020, "alice@example.net", "bob@example.com", "rejected"),
            message("M3", 1_075, "eve@example.net", "carol@example.com", "quarantined"),
            message("M4", 2_000, "eve@example.net", "carol@example.com", "delivered"),
        ] {
            store.log_message(&m).await.unwrap();
        }
        let mut counts = store.message_counts(1_000, 60, 2, &Sees::All).await.unwrap();
        counts.sort_by(|a, b| (a.bucket, &a.status).cmp(&(b.bucket, &b.status)));
        let got: Vec<(i64, &str, i64)> =
            counts.iter().map(|c| (c.bucket, c.status.as_str(), c.count)).collect();
        assert_eq!(got, [(0, "delivered", 1), (0, "rejected", 1), (1, "quarantined", 1)]);
        let top = store.message_top("sender", 1_000, 10, &Sees::All).await.unwrap();
        assert_eq!(top[0].name, "alice@example.net");
        assert_eq!(top[0].count, 2);
        let top = store.message_top("rejection", 1_000, 10, &Sees::All).await.unwrap();
        assert_eq!((top[0].name.as_str(), top[0].count), ("block-exe", 1));
        let top = store.message_top("recipient", 1_500, 10, &Sees::All).await.unwrap();
        assert_eq!((top[0].name.as_str(), top[0].count), ("carol@example.com", 1));
        assert!(store.message_top("nonsense", 0, 1, &Sees::All).await.is_err());
    }
}

store_test! {
    async fn hourly_counters_follow_the_log(store) {
        // Hours 0 and 1 of a day-long range, in hour buckets read from the counters.
        let day = 86_400 * 20_000;
        for m in [
            message("H1", day + 10, "a@example.net", "b@example.com", "queued"),
            message("H2", day + 3_000, "a@example.net", "c@example.com", "queued"),
            message("H3", day + 3_700, "a@example.net", "d@example.com", "quarantined"),
        ] {
            store.log_message(&m).await.unwrap();
        }
        // Delivery moves a recipient from one status to another: the old status loses it.
        store
            .log_recipient_status("H1", "b@example.com", "deferred", Some("451 4.3.0 later"), None, day + 60)
            .await
            .unwrap();
        store
            .log_recipient_status("H1", "b@example.com", "delivered", Some("250 ok"), None, day + 120)
            .await
            .unwrap();
        // The same status again (a second delivery report) counts once.
        store
            .log_recipient_status("H1", "b@example.com", "delivered", Some("250 ok"), None, day + 130)
            .await
            .unwrap();
        let sorted = |mut counts: Vec<portcullis_store::BucketCount>| {
            counts.retain(|c| c.count != 0);
            counts.sort_by(|a, b| (a.bucket, &a.status).cmp(&(b.bucket, &b.status)));
            counts
                .iter()
                .map(|c| (c.bucket, c.status.clone(), c.count))
                .collect::<Vec<_>>()
        };
        let hourly = sorted(store.message_counts(day, 3_600, 24, &Sees::All).await.unwrap());
        assert_eq!(
            hourly,
            [
                (0, "delivered".to_string(), 1),
                (0, "queued".to_string(), 1),
                (1, "quarantined".to_string(), 1)
            ]
        );
        // The same figures as counting the log itself (a range not aligned to the hour).
        let live = sorted(store.message_counts(day - 1_800, 1_800, 6, &Sees::All).await.unwrap());
        assert_eq!(
            live,
            [
                (1, "delivered".to_string(), 1),
                (2, "queued".to_string(), 1),
                (3, "quarantined".to_string(), 1)
            ]
        );
        let daily = sorted(store.message_counts(day, 86_400, 1, &Sees::All).await.unwrap());
        assert_eq!(
            daily,
            [
                (0, "delivered".to_string(), 1),
                (0, "quarantined".to_string(), 1),
                (0, "queued".to_string(), 1)
            ]
        );
    }
}

store_test! {
    async fn a_domain_administrators_counts_are_its_domains(store) {
        let day = 86_400 * 20_001;
        let mut out = message("O1", day + 100, "ann@example.com", "x@elsewhere.test", "delivered");
        out.direction = "outbound".to_string();
        for m in [
            message("D1", day + 10, "a@example.net", "bob@Example.com", "delivered"),
            message("D2", day + 20, "a@example.net", "carol@example.org", "rejected"),
            message("D3", day + 30, "eve@example.net", "dan@example.com", "quarantined"),
            out,
        ] {
            store.log_message(&m).await.unwrap();
        }
        // A status change moves the recipient in the domain's counters too.
        store
            .log_recipient_status("D1", "bob@Example.com", "bounced", Some("550 5.1.1 no"), None, day + 60)
            .await
            .unwrap();
        let mine = Sees::Domains(vec!["example.com".to_string()]);
        let sum = |counts: Vec<portcullis_store::BucketCount>| {
            let mut v: Vec<(String, String, i64)> = counts
                .into_iter()
                .filter(|c| c.count != 0)
                .map(|c| (c.direction, c.status, c.count))
                .collect();
            v.sort();
            v
        };
        let want = vec![
            ("inbound".to_string(), "bounced".to_string(), 1),
            ("inbound".to_string(), "quarantined".to_string(), 1),
            ("outbound".to_string(), "delivered".to_string(), 1),
        ];
        // From the counters (whole hours) and from the log (finer buckets): the same.
        assert_eq!(sum(store.message_counts(day, 3_600, 24, &mine).await.unwrap()), want);
        assert_eq!(sum(store.message_counts(day, 300, 12, &mine).await.unwrap()), want);
        assert_eq!(sum(store.message_counts(day, 3_600, 24, &Sees::All).await.unwrap()).len(), 4);
        let none = Sees::Domains(Vec::new());
        assert!(store.message_counts(day, 3_600, 24, &none).await.unwrap().is_empty());
        assert!(store.message_counts(day, 300, 12, &none).await.unwrap().is_empty());
        assert!(store
            .message_counts(day, 300, 12, &Sees::Address("bob@example.com".into()))
            .await
            .is_err());

        let top = store.message_top("recipient", day, 10, &mine).await.unwrap();
        let names: Vec<&str> = top.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(!names.contains(&"carol@example.org"), "{names:?}");
        let top = store.message_top("sender", day, 10, &mine).await.unwrap();
        let names: Vec<&str> = top.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a@example.net", "ann@example.com", "eve@example.net"], "{names:?}");
        assert!(store.message_top("rejection", day, 10, &mine).await.unwrap().is_empty());
        let other = Sees::Domains(vec!["example.org".to_string()]);
        let top = store.message_top("rejection", day, 10, &other).await.unwrap();
        assert_eq!((top[0].name.as_str(), top[0].count), ("block-exe", 1));
    }
}
