//! The console's reading of the message log: the search with every filter and an
//! offset, narrowed to what a caller sees; counts per bucket; the busiest names.

#[macro_use]
#[path = "../src/testing.rs"]
mod testing;

use portcullis_store::{MessageFilter, MessageRecord, RecipientRecord, Sees};

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

fn ids(found: &[MessageRecord]) -> Vec<&str> {
    found.iter().map(|m| m.id.as_str()).collect()
}

store_test! {
    async fn search_by_every_filter_with_pages(store) {
        let mut out = message("M3", 1_030, "carol@example.org", "dan@example.net", "delivered");
        out.direction = "outbound".to_string();
        for m in [
            message("M1", 1_010, "alice@example.net", "bob@example.com", "delivered"),
            message("M2", 1_020, "eve@example.net", "bob@example.com", "rejected"),
            out,
        ] {
            store.log_message(&m).await.unwrap();
        }
        let all = Sees::All;
        let search = |f: MessageFilter| {
            let store = store.clone();
            async move { store.search_messages(&MessageFilter { limit: 10, ..f }, &Sees::All).await.unwrap() }
        };
        assert_eq!(ids(&search(MessageFilter::default()).await), ["M3", "M2", "M1"]);
        let f = |subject: &str| MessageFilter { subject: Some(subject.into()), ..Default::default() };
        assert_eq!(ids(&search(f("of m2")).await), ["M2"]);
        // Wildcards of the input are literal.
        assert_eq!(search(f("100%_off")).await.len(), 3);
        assert!(search(f("100%%")).await.is_empty());
        let q = MessageFilter { client_ip: Some("192.0.2.20".into()), ..Default::default() };
        assert_eq!(ids(&search(q).await), ["M2"]);
        let q = MessageFilter { verdict: Some("rej".into()), ..Default::default() };
        assert_eq!(ids(&search(q).await), ["M2"]);
        let q = MessageFilter { direction: Some("outbound".into()), ..Default::default() };
        assert_eq!(ids(&search(q).await), ["M3"]);
        let q = MessageFilter { message_id: Some("<m1@".into()), ..Default::default() };
        assert_eq!(ids(&search(q).await), ["M1"]);
        let q = MessageFilter { recipient: Some("BOB@".into()), since: Some(1_015), ..Default::default() };
        assert_eq!(ids(&search(q).await), ["M2"]);
        let page = store
            .search_messages(&MessageFilter { limit: 1, offset: 1, ..Default::default() }, &all)
            .await
            .unwrap();
        assert_eq!(ids(&page), ["M2"]);
        assert_eq!(page[0].recipients.len(), 1);
        // A domain admin of example.net sees mail from or to it only.
        let sees = Sees::Domains(vec!["example.net".into()]);
        let mine = store
            .search_messages(&MessageFilter { limit: 10, ..Default::default() }, &sees)
            .await
            .unwrap();
        assert_eq!(ids(&mine), ["M3", "M2", "M1"]);
        let sees = Sees::Address("dan@example.net".into());
        let mine = store
            .search_messages(&MessageFilter { limit: 10, ..Default::default() }, &sees)
            .await
            .unwrap();
        assert_eq!(ids(&mine), ["M3"]);
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
        let mut counts = store.message_counts(1_000, 60, 2).await.unwrap();
        counts.sort_by(|a, b| (a.bucket, &a.status).cmp(&(b.bucket, &b.status)));
        let got: Vec<(i64, &str, i64)> =
            counts.iter().map(|c| (c.bucket, c.status.as_str(), c.count)).collect();
        assert_eq!(got, [(0, "delivered", 1), (0, "rejected", 1), (1, "quarantined", 1)]);
        let top = store.message_top("sender", 1_000, 10).await.unwrap();
        assert_eq!(top[0].name, "alice@example.net");
        assert_eq!(top[0].count, 2);
        let top = store.message_top("rejection", 1_000, 10).await.unwrap();
        assert_eq!((top[0].name.as_str(), top[0].count), ("block-exe", 1));
        let top = store.message_top("recipient", 1_500, 10).await.unwrap();
        assert_eq!((top[0].name.as_str(), top[0].count), ("carol@example.com", 1));
        assert!(store.message_top("nonsense", 0, 1).await.is_err());
    }
}
