//! What each role may do through the operations layer, on a real (in-memory SQLite) store
//! and spool: for each area (policy, quarantine, queue, message log, accounts, audit log)
//! a call allowed and a call refused, and lists narrowed to what the actor may see.

use portcullis_gateway::config::Config;
use portcullis_ops::policy::RoutesSpec;
use portcullis_ops::queue::QueueChange;
use portcullis_ops::{Actor, Ops, Role, Via};
use portcullis_queue::spool::{Direction, Envelope, new_id};
use portcullis_store::{
    AuditQuery, HeldMessage, ListEntry, LogQuery, MessageRecord, QuarantineQuery, Store,
};

async fn ops() -> Ops {
    let store = Store::open("sqlite::memory:").await.expect("store");
    let dir = std::env::temp_dir().join(format!(
        "portcullis-roles-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("data dir");
    Ops::new(
        store,
        Config {
            data_dir: dir,
            ..Config::default()
        },
    )
}

fn actor(role: Role) -> Actor {
    Actor {
        name: format!("test-{role}"),
        role,
        domains: if role == Role::DomainAdmin {
            vec!["example.com".into()]
        } else {
            Vec::new()
        },
        address: if role == Role::User {
            "bob@example.com".into()
        } else {
            String::new()
        },
        read_only: false,
        via: Via::Api,
        remote: None,
    }
}

fn routes() -> RoutesSpec {
    RoutesSpec {
        routes: vec!["mx.example.net:25".into()],
        tls: "may".into(),
        ..RoutesSpec::default()
    }
}

fn entry(scope: &str) -> ListEntry {
    ListEntry {
        kind: "block".into(),
        field: "sender".into(),
        value: "spammer@example.net".into(),
        scope: scope.into(),
        comment: String::new(),
    }
}

fn forbidden<T: std::fmt::Debug>(r: portcullis_ops::Result<T>) {
    let e = r.expect_err("refused");
    assert_eq!(e.status(), 403, "{e}");
}

fn not_found<T: std::fmt::Debug>(r: portcullis_ops::Result<T>) {
    let e = r.expect_err("not found");
    assert_eq!(e.status(), 404, "{e}");
}

#[tokio::test]
async fn policy_writes() {
    let ops = ops().await;
    let admin = ops.acting_as(actor(Role::Admin));
    let dom = ops.acting_as(actor(Role::DomainAdmin));
    let help = ops.acting_as(actor(Role::Helpdesk));
    let audit = ops.acting_as(actor(Role::Auditor));
    let user = ops.acting_as(actor(Role::User));

    admin.add_domain("example.org", &routes()).await.unwrap();
    forbidden(
        admin
            .acting_as(Actor {
                read_only: true,
                ..actor(Role::Admin)
            })
            .add_domain("example.net", &routes())
            .await,
    );
    dom.add_domain("example.com", &routes()).await.unwrap();
    forbidden(dom.add_domain("example.org", &routes()).await);
    forbidden(dom.add_network("10.0.0.0/8", "").await);
    forbidden(help.add_domain("example.com", &routes()).await);
    forbidden(audit.remove_domain("example.com").await);
    forbidden(user.add_domain("example.com", &routes()).await);

    user.add_list_entry(&entry("bob@example.com"))
        .await
        .unwrap();
    forbidden(user.add_list_entry(&entry("carol@example.com")).await);
    forbidden(user.add_list_entry(&entry("")).await);
    dom.add_list_entry(&entry("example.com")).await.unwrap();
    forbidden(dom.add_list_entry(&entry("example.org")).await);
    admin.add_list_entry(&entry("")).await.unwrap();

    // Lists are narrowed, not refused.
    let names: Vec<String> = dom
        .list_domains()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["example.com"]);
    assert_eq!(audit.list_domains().await.unwrap().len(), 2);
    assert_eq!(user.list_entries().await.unwrap().len(), 1);
    assert_eq!(dom.list_entries().await.unwrap().len(), 2);
    assert_eq!(admin.list_entries().await.unwrap().len(), 3);
    forbidden(dom.list_rules().await);
    forbidden(user.policy_export().await);
    audit.policy_export().await.unwrap();
}

fn held(id: &str, recipient: &str) -> HeldMessage {
    let envelope = Envelope::notice(
        id.to_string(),
        "mx.test",
        Direction::Inbound,
        &[recipient.to_string()],
    );
    HeldMessage {
        id: id.into(),
        received_at: 1000,
        expires_at: i64::MAX / 2,
        sender: "someone@example.net".into(),
        subject: Some("held".into()),
        class: "virus".into(),
        score: 0.0,
        rule: None,
        findings: "[]".into(),
        envelope: serde_json::to_string(&envelope).unwrap(),
        body: b"Subject: held\r\n\r\nbody\r\n".to_vec(),
        recipients: vec![recipient.into()],
        direction: "inbound".into(),
    }
}

#[tokio::test]
async fn quarantine_release_and_visibility() {
    let ops = ops().await;
    for (id, rcpt) in [
        ("m1", "bob@example.com"),
        ("m2", "carol@example.com"),
        ("m3", "dave@example.org"),
        ("m4", "erin@example.org"),
        ("m5", "frank@example.com"),
        ("m6", "gina@example.org"),
    ] {
        ops.store().quarantine_hold(&held(id, rcpt)).await.unwrap();
    }
    // bob's spam, besides his copy held for a virus.
    for id in ["s1", "s2"] {
        let mut spam = held(id, "bob@example.com");
        spam.class = "spam".into();
        ops.store().quarantine_hold(&spam).await.unwrap();
    }
    let dom = ops.acting_as(actor(Role::DomainAdmin));
    let user = ops.acting_as(actor(Role::User));
    let help = ops.acting_as(actor(Role::Helpdesk));
    let audit = ops.acting_as(actor(Role::Auditor));
    let all = QuarantineQuery::default();

    assert_eq!(audit.quarantine_list(&all).await.unwrap().len(), 8);
    let seen = dom.quarantine_list(&all).await.unwrap();
    assert_eq!(seen.len(), 5);
    assert!(seen.iter().all(|i| i.recipient.ends_with("@example.com")));
    let own = user.quarantine_list(&all).await.unwrap();
    assert_eq!(own.len(), 3);
    assert!(own.iter().all(|i| i.recipient == "bob@example.com"));

    // Another domain's item is not there for a domain-admin, nor another's for a user.
    not_found(dom.quarantine_show("m3.1").await);
    not_found(dom.quarantine_release("m3.1", false).await);
    not_found(user.quarantine_show("m2.1").await);
    not_found(user.quarantine_release("m2.1", false).await);
    forbidden(audit.quarantine_release("m3.1", false).await);
    forbidden(help.quarantine_delete("m3.1").await);
    // A user sees their copy held for a virus, and leaves it to an administrator; their
    // spam they release or delete.
    forbidden(user.quarantine_delete("m1.1").await);
    forbidden(user.quarantine_release("m1.1", false).await);
    forbidden(user.quarantine_report_spam("m1.1").await);
    user.quarantine_delete("s2.1").await.unwrap();

    let released = user.quarantine_release("s1.1", true).await.unwrap();
    assert_eq!(
        released.allowed_sender.as_deref(),
        Some("someone@example.net")
    );
    help.quarantine_release("m3.1", false).await.unwrap();
    dom.quarantine_delete("m2.1").await.unwrap();
    ops.quarantine_delete("m4.1").await.unwrap();
    dom.quarantine_release("m5.1", false).await.unwrap();
    ops.acting_as(actor(Role::Admin))
        .quarantine_release("m6.1", false)
        .await
        .unwrap();

    let rows = ops
        .audit_list(&AuditQuery {
            action: Some("quarantine.".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 7);
    assert!(
        rows.iter()
            .any(|r| r.actor == "test-user" && r.action == "quarantine.release")
    );
    assert!(
        rows.iter()
            .any(|r| r.actor == "test-user" && r.action == "quarantine.delete")
    );
}

#[tokio::test]
async fn queue_changes() {
    let ops = ops().await;
    let inject = ops.injector().unwrap();
    let mut ids = Vec::new();
    for rcpt in ["bob@example.com", "dave@example.org"] {
        let envelope =
            Envelope::notice(new_id(), "mx.test", Direction::Inbound, &[rcpt.to_string()]);
        let id = inject
            .write(&envelope, b"Subject: queued\r\n\r\nbody\r\n".to_vec())
            .await
            .unwrap()
            .0;
        ids.push(id);
    }
    let dom = ops.acting_as(actor(Role::DomainAdmin));
    let help = ops.acting_as(actor(Role::Helpdesk));
    let user = ops.acting_as(actor(Role::User));

    assert_eq!(help.queue().list().unwrap().len(), 2);
    assert_eq!(dom.queue().list().unwrap().len(), 1);
    assert_eq!(user.queue().list().unwrap().len(), 1);
    forbidden(
        help.queue()
            .change(&QueueChange::Delete(ids[0].clone()))
            .await,
    );
    forbidden(dom.queue().change(&QueueChange::Flush).await);
    forbidden(
        user.queue()
            .change(&QueueChange::Delete(ids[0].clone()))
            .await,
    );
    forbidden(
        ops.acting_as(actor(Role::Auditor))
            .queue()
            .change(&QueueChange::Delete(ids[0].clone()))
            .await,
    );
    forbidden(
        ops.acting_as(Actor {
            read_only: true,
            ..actor(Role::Admin)
        })
        .queue()
        .change(&QueueChange::Delete(ids[0].clone()))
        .await,
    );
    not_found(
        dom.queue()
            .change(&QueueChange::Delete(ids[1].clone()))
            .await,
    );
    not_found(dom.queue().show(&ids[1]));
    dom.queue()
        .change(&QueueChange::Delete(ids[0].clone()))
        .await
        .unwrap();
    ops.acting_as(actor(Role::Admin))
        .queue()
        .change(&QueueChange::Delete(ids[1].clone()))
        .await
        .unwrap();
    assert!(ops.queue().list().unwrap().is_empty());
    let rows = ops
        .audit_list(&AuditQuery {
            action: Some("queue.delete".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
}

fn record(id: &str, sender: &str, rcpt: &str) -> MessageRecord {
    MessageRecord {
        id: id.into(),
        received_at: 1000,
        client_ip: "192.0.2.1".into(),
        helo: "client.test".into(),
        direction: "inbound".into(),
        sender: sender.into(),
        size: 10,
        auth_user: None,
        message_id: None,
        subject: None,
        verdict: Some("deliver".into()),
        rule: None,
        score: None,
        findings: None,
        recipients: vec![portcullis_store::RecipientRecord {
            address: rcpt.into(),
            status: "queued".into(),
            reply: None,
            remote_host: None,
            updated_at: 1000,
            attempts: 0,
        }],
    }
}

#[tokio::test]
async fn message_log_reads() {
    let ops = ops().await;
    for r in [
        record("a1", "x@example.net", "bob@example.com"),
        record("a2", "carol@example.com", "y@example.net"),
        record("a3", "x@example.net", "dave@example.org"),
    ] {
        ops.store().log_message(&r).await.unwrap();
    }
    let q = LogQuery::default();
    let ids = |v: Vec<MessageRecord>| {
        let mut ids: Vec<String> = v.into_iter().map(|m| m.id).collect();
        ids.sort();
        ids
    };
    assert_eq!(
        ids(ops
            .acting_as(actor(Role::Helpdesk))
            .log_search(&q)
            .await
            .unwrap())
        .len(),
        3
    );
    assert_eq!(
        ids(ops
            .acting_as(actor(Role::DomainAdmin))
            .log_search(&q)
            .await
            .unwrap()),
        ["a1", "a2"]
    );
    assert_eq!(
        ids(ops
            .acting_as(actor(Role::User))
            .log_search(&q)
            .await
            .unwrap()),
        ["a1"]
    );
    assert_eq!(
        ids(ops
            .acting_as(actor(Role::Auditor))
            .log_search(&q)
            .await
            .unwrap())
        .len(),
        3
    );
    ops.acting_as(actor(Role::Admin))
        .log_get("a3")
        .await
        .unwrap();
    let dom = ops.acting_as(actor(Role::DomainAdmin));
    dom.log_get("a2").await.unwrap();
    not_found(dom.log_get("a3").await);
    not_found(ops.acting_as(actor(Role::User)).log_get("a2").await);
    let page = ops
        .acting_as(actor(Role::User))
        .log_search_page(&portcullis_store::LogQuery::default())
        .await
        .unwrap();
    assert_eq!(ids(page.messages), ["a1"]);
}

#[tokio::test]
async fn accounts_and_audit_by_role() {
    let ops = ops().await;
    let pw = "a long enough passphrase";
    ops.acting_as(actor(Role::Admin))
        .account_add("helen", Role::Helpdesk, &[], pw)
        .await
        .unwrap();
    forbidden(
        ops.acting_as(actor(Role::Helpdesk))
            .account_add("ivan", Role::Auditor, &[], pw)
            .await,
    );
    forbidden(
        ops.acting_as(actor(Role::Auditor))
            .account_remove("helen")
            .await,
    );
    forbidden(ops.acting_as(actor(Role::User)).account_list().await);
    forbidden(
        ops.acting_as(actor(Role::DomainAdmin))
            .account_remove("helen")
            .await,
    );

    ops.acting_as(actor(Role::Auditor))
        .audit_list(&AuditQuery::default())
        .await
        .unwrap();
    ops.acting_as(actor(Role::Admin))
        .audit_list(&AuditQuery::default())
        .await
        .unwrap();
    for role in [Role::Helpdesk, Role::DomainAdmin, Role::User] {
        forbidden(
            ops.acting_as(actor(role))
                .audit_list(&AuditQuery::default())
                .await,
        );
    }
}
