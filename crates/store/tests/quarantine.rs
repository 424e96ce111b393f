#[macro_use]
#[path = "../src/testing.rs"]
mod testing;

use portcullis_store::{HeldMessage, ListEntry, QuarantineQuery};

fn held(id: &str, recipients: &[&str]) -> HeldMessage {
    HeldMessage {
        id: id.into(),
        received_at: 1_700_000_000,
        expires_at: 1_700_000_000 + 86_400,
        sender: "spammer@outside.test".into(),
        subject: Some("Cheap pills".into()),
        class: "spam".into(),
        score: 12.5,
        rule: Some("default: spam quarantine".into()),
        findings: r#"[{"name":"spam.bayes","score":12.5,"detail":"0.999"}]"#.into(),
        envelope: "{}".into(),
        body: b"Subject: Cheap pills\r\n\r\nBuy\r\n".to_vec(),
        recipients: recipients.iter().map(|s| s.to_string()).collect(),
        direction: "inbound".into(),
    }
}

store_test! {
    async fn hold_list_release_once_and_expire(store) {
        store
            .quarantine_hold(&held("Q1", &["A@example.test", "b@example.test"]))
            .await
            .unwrap();
        let all = store
            .quarantine_list(&QuarantineQuery::default())
            .await
            .unwrap();
        assert_eq!(all.len(), 2);
        let a = store
            .quarantine_list(&QuarantineQuery {
                recipient: Some("a@EXAMPLE.test".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].id, "Q1.1");
        assert_eq!(a[0].class, "spam");

        let (item, findings, _, body) = store.quarantine_get("Q1.1").await.unwrap().unwrap();
        assert_eq!(item.recipient, "a@example.test");
        assert!(findings.contains("spam.bayes"));
        assert!(body.starts_with(b"Subject: Cheap pills"));

        assert!(
            store
                .quarantine_transition("Q1.1", "held", "released", 1)
                .await
                .unwrap()
        );
        // Released once only.
        assert!(
            !store
                .quarantine_transition("Q1.1", "held", "released", 2)
                .await
                .unwrap()
        );
        assert!(
            !store
                .quarantine_transition("Q1.1", "held", "deleted", 2)
                .await
                .unwrap()
        );
        assert!(
            !store
                .quarantine_transition("nope", "held", "released", 2)
                .await
                .unwrap()
        );
        // A failed re-queue puts it back.
        store
            .quarantine_transition("Q1.1", "released", "held", 3)
            .await
            .unwrap();
        assert!(
            store
                .quarantine_transition("Q1.1", "held", "released", 4)
                .await
                .unwrap()
        );
        let held_now = store
            .quarantine_list(&QuarantineQuery::default())
            .await
            .unwrap();
        assert_eq!(held_now.len(), 1);
        assert_eq!(held_now[0].id, "Q1.2");

        assert_eq!(store.quarantine_digest_due().await.unwrap().len(), 1);
        store
            .quarantine_mark_digested("D1", "b@example.com", &["Q1.2".into()], 5)
            .await
            .unwrap();
        assert!(store.quarantine_digest_due().await.unwrap().is_empty());
        let listed = store.digest_items("D1").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, "Q1.2");
        assert!(store.digest_items("D2").await.unwrap().is_empty());
        let schedule = store.digest_schedule("b@example.com").await.unwrap();
        assert_eq!(schedule.last_sent, Some(5));
        assert_eq!(schedule.every_secs, None);
        store
            .digest_set_every("b@example.com", Some(7 * 86400))
            .await
            .unwrap();
        store.digest_set_every("c@example.com", Some(0)).await.unwrap();
        let all = store.digest_schedules().await.unwrap();
        assert_eq!(all["b@example.com"].last_sent, Some(5), "the last digest was kept");
        assert_eq!(all["b@example.com"].every_secs, Some(7 * 86400));
        assert_eq!(all["c@example.com"].every_secs, Some(0));
        assert_eq!(all["c@example.com"].last_sent, None);
        store.digest_set_every("b@example.com", None).await.unwrap();
        assert_eq!(store.digest_schedule("b@example.com").await.unwrap().every_secs, None);

        assert_eq!(store.quarantine_expire(1_700_000_000).await.unwrap(), 0);
        assert_eq!(store.quarantine_expire(1_800_000_000).await.unwrap(), 1);
        assert!(store.quarantine_get("Q1.2").await.unwrap().is_none());
    }
}

store_test! {
    async fn rules_keep_order_and_lists_normalise(store) {
        store.put_rule("b", "{\"x\":1}").await.unwrap();
        store.put_rule("a", "{\"x\":2}").await.unwrap();
        store.put_rule("b", "{\"x\":3}").await.unwrap();
        let rules = store.list_rules().await.unwrap();
        assert_eq!(
            rules,
            vec![
                ("b".into(), "{\"x\":3}".into()),
                ("a".into(), "{\"x\":2}".into())
            ]
        );
        assert!(store.remove_rule("b").await.unwrap());
        assert!(!store.remove_rule("b").await.unwrap());

        let e = ListEntry {
            kind: "block".into(),
            field: "sender".into(),
            value: " Spammer@Outside.test ".into(),
            scope: "".into(),
            comment: "".into(),
        };
        store.add_list_entry(&e).await.unwrap();
        let got = store.list_entries().await.unwrap();
        assert_eq!(got[0].value, "spammer@outside.test");
        let bad = ListEntry {
            kind: "maybe".into(),
            ..e.clone()
        };
        assert!(
            store
                .add_list_entry(&bad)
                .await
                .unwrap_err()
                .to_string()
                .contains("kind")
        );
        assert!(store.remove_list_entry(&e).await.unwrap());

        store
            .replace_filter_policy(&[("z".into(), "{}".into())], std::slice::from_ref(&e), &[])
            .await
            .unwrap();
        assert_eq!(store.list_rules().await.unwrap().len(), 1);
        assert_eq!(store.list_entries().await.unwrap().len(), 1);
    }
}

store_test! {
    async fn lists_are_narrowed_to_what_the_caller_sees(store) {
        use portcullis_store::Sees;
        store
            .quarantine_hold(&held("Q9", &["a@example.test", "b@other.test", "c@ex_mple.test"]))
            .await
            .unwrap();
        let q = QuarantineQuery::default();
        let recipients = |items: Vec<portcullis_store::QuarantineItem>| {
            items.into_iter().map(|i| i.recipient).collect::<Vec<_>>()
        };
        assert_eq!(store.quarantine_list_seen(&q, &Sees::All).await.unwrap().len(), 3);
        let seen = store
            .quarantine_list_seen(&q, &Sees::Domains(vec!["example.test".into()]))
            .await
            .unwrap();
        // `_` is a letter here, not a wildcard.
        assert_eq!(recipients(seen), ["a@example.test"]);
        let seen = store
            .quarantine_list_seen(&q, &Sees::Domains(vec!["other.test".into(), "ex_mple.test".into()]))
            .await
            .unwrap();
        assert_eq!(seen.len(), 2);
        let seen = store
            .quarantine_list_seen(&q, &Sees::Address("B@other.test".into()))
            .await
            .unwrap();
        assert_eq!(recipients(seen), ["b@other.test"]);
        assert!(store.quarantine_list_seen(&q, &Sees::Domains(Vec::new())).await.unwrap().is_empty());
    }
}

store_test! {
    async fn the_quarantine_list_filters_and_pages_in_the_store(store) {
        for (id, sender, subject, class) in [
            ("F1", "Billing@Vendor.example", "Invoice 100%", "spam"),
            ("F2", "news@list.example", "Weekly news", "spam"),
            ("F3", "x@virus.example", "Invoice_attached", "virus"),
        ] {
            let mut m = held(id, &["a@example.test"]);
            m.sender = sender.into();
            m.subject = Some(subject.into());
            m.class = class.into();
            m.received_at = 1_600_000_000 + id[1..].parse::<i64>().unwrap();
            store.quarantine_hold(&m).await.unwrap();
        }
        let ids = |items: Vec<portcullis_store::QuarantineItem>| {
            items.into_iter().map(|i| i.id).collect::<Vec<_>>()
        };
        let q = |f: fn(&mut QuarantineQuery)| {
            let mut q = QuarantineQuery::default();
            f(&mut q);
            q
        };
        let found = store.quarantine_list(&q(|q| q.sender = Some("vendor.EX".into()))).await.unwrap();
        assert_eq!(ids(found), ["F1.1"]);
        let found = store.quarantine_list(&q(|q| q.subject = Some("invoice".into()))).await.unwrap();
        assert_eq!(ids(found), ["F3.1", "F1.1"]);
        // `%` and `_` are plain characters.
        let found = store.quarantine_list(&q(|q| q.subject = Some("100%".into()))).await.unwrap();
        assert_eq!(ids(found), ["F1.1"]);
        let found = store.quarantine_list(&q(|q| q.subject = Some("ly_n".into()))).await.unwrap();
        assert!(ids(found).is_empty());
        let found = store.quarantine_list(&q(|q| q.class = Some("Virus".into()))).await.unwrap();
        assert_eq!(ids(found), ["F3.1"]);
        // Pages, newest first.
        let found = store.quarantine_list(&q(|q| { q.limit = 2; q.offset = 1; })).await.unwrap();
        assert_eq!(ids(found), ["F2.1", "F1.1"]);
    }
}
