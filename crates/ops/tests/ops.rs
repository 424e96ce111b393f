//! The operations layer on a real (in-memory SQLite) store: what an administrator gets
//! back for good and bad input, the same for the CLI, the REST API and the console.

use portcullis_gateway::config::Config;
use portcullis_ops::policy::RoutesSpec;
use portcullis_ops::{Ops, OpsError};
use portcullis_store::{ContentRow, ListEntry, Store};

async fn ops() -> Ops {
    let store = Store::open("sqlite::memory:").await.expect("store");
    let dir = std::env::temp_dir().join(format!("portcullis-ops-{}", std::process::id()));
    let config = Config {
        data_dir: dir,
        ..Config::default()
    };
    Ops::new(store, config)
}

fn routes(routes: &[&str], tls: &str) -> RoutesSpec {
    RoutesSpec {
        routes: routes.iter().map(|r| r.to_string()).collect(),
        tls: tls.into(),
        ..RoutesSpec::default()
    }
}

#[tokio::test]
async fn domains_are_validated_and_found() {
    let ops = ops().await;
    let name = ops
        .add_domain(
            "Example.COM",
            &routes(&["mx1.example.com:25", "[192.0.2.1]:2525"], "verify"),
        )
        .await
        .expect("added");
    assert_eq!(name, "example.com");
    let listed = ops.list_domains().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].routes.len(), 2);
    assert_eq!(listed[0].routes[0].priority, 10);

    let e = ops
        .add_domain("example.org", &routes(&["mx.example.org:25"], "sometimes"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            OpsError::Invalid {
                what: "TLS mode",
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("none, may, encrypt, verify, dane"),
        "{e}"
    );
    assert_eq!(e.status(), 400);

    let e = ops
        .add_domain("example.org", &routes(&["mx.example.org"], "may"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("host:port"), "{e}");
    let e = ops
        .add_domain("example.org", &routes(&[], "may"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("at least one route"), "{e}");

    let e = ops.remove_domain("nope.example").await.unwrap_err();
    assert!(matches!(e, OpsError::NotFound { .. }));
    assert_eq!(e.status(), 404);
    ops.remove_domain("example.com").await.expect("removed");
    assert!(ops.list_domains().await.unwrap().is_empty());
}

#[tokio::test]
async fn networks_and_users() {
    let ops = ops().await;
    assert_eq!(
        ops.add_network("10.1.2.3/8", "office")
            .await
            .unwrap()
            .to_string(),
        "10.0.0.0/8"
    );
    assert_eq!(
        ops.add_network("192.0.2.7", "").await.unwrap().to_string(),
        "192.0.2.7/32"
    );
    let e = ops.add_network("10.0.0.0/33", "").await.unwrap_err();
    assert!(e.to_string().contains("CIDR"), "{e}");
    assert!(ops.remove_network("172.16.0.0/12").await.is_err());
    ops.remove_network("10.0.0.0/8").await.unwrap();

    let e = ops.add_user("alice", "a long password").await.unwrap_err();
    assert!(e.to_string().contains("user@example.com"), "{e}");
    let e = ops
        .add_user("alice@example.com", "short")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("at least 8"), "{e}");
    assert!(
        !e.to_string().contains("short"),
        "the password is never echoed: {e}"
    );
    assert_eq!(
        ops.add_user("Alice@Example.com", "a long password")
            .await
            .unwrap(),
        "alice@example.com"
    );
    assert_eq!(ops.list_users().await.unwrap(), ["alice@example.com"]);
    assert!(matches!(
        ops.remove_user("bob@example.com").await,
        Err(OpsError::NotFound { .. })
    ));
}

#[tokio::test]
async fn rules_lists_and_content_are_checked_before_they_are_stored() {
    let ops = ops().await;
    let doc = "[[rule]]\nname = \"x\"\nactions = [{ action = \"reject\", code = 450 }]\n";
    let e = ops.add_rules(doc, "big.toml").await.unwrap_err();
    assert!(matches!(e, OpsError::Document { .. }), "{e}");
    assert!(
        e.to_string().starts_with("big.toml") && e.to_string().contains("not a 5xx"),
        "{e}"
    );
    assert!(ops.list_rules().await.unwrap().is_empty());
    let e = ops
        .add_rules("[[rule]]\nname = 3\n", "x.toml")
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("x.toml:2"), "names the line: {e}");
    let e = ops.add_rules("", "empty.toml").await.unwrap_err();
    assert!(e.to_string().contains("no [[rule]]"), "{e}");

    let entry = |kind: &str, field: &str, value: &str| ListEntry {
        kind: kind.into(),
        field: field.into(),
        value: value.into(),
        scope: String::new(),
        comment: String::new(),
    };
    assert!(
        ops.add_list_entry(&entry("allow", "ip", "not-an-ip"))
            .await
            .is_err()
    );
    assert!(
        ops.add_list_entry(&entry("maybe", "ip", "192.0.2.1"))
            .await
            .is_err()
    );
    assert!(
        ops.add_list_entry(&entry("block", "colour", "red"))
            .await
            .is_err()
    );
    ops.add_list_entry(&entry("block", "sender", "spam@example.net"))
        .await
        .unwrap();
    assert_eq!(ops.list_entries().await.unwrap().len(), 1);
    assert!(
        ops.remove_list_entry(&entry("allow", "sender", "x@y.z"))
            .await
            .is_err()
    );

    let row = |pattern: &str, field: &str, regex: bool| ContentRow {
        list: "words".into(),
        pattern: pattern.into(),
        field: field.into(),
        regex,
        score: 2.0,
    };
    let e = ops
        .add_content(&row("(unclosed", "body", true))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("pattern"), "{e}");
    let e = ops
        .add_content(&row("viagra", "footer", false))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("field"), "{e}");
    ops.add_content(&row("viagra", "body", false))
        .await
        .unwrap();
    assert!(ops.remove_content("words", "cialis", "body").await.is_err());
}

#[tokio::test]
async fn policy_document_round_trips_and_refuses_bad_entries_whole() {
    let ops = ops().await;
    ops.add_domain("example.com", &routes(&["mx.example.com:25"], "encrypt"))
        .await
        .unwrap();
    ops.add_network("10.0.0.0/8", "office").await.unwrap();
    let text = ops.policy_export().await.unwrap();
    assert!(
        text.contains("example.com") && text.contains("10.0.0.0/8"),
        "{text}"
    );

    let other = self::ops().await;
    let n = other.policy_import(&text, "policy.toml").await.unwrap();
    assert_eq!((n.domains, n.networks), (1, 1));
    assert_eq!(other.policy_export().await.unwrap(), text);

    let bad = "[[domain]]\nname = \"example.com\"\n[[domain.routes]]\nhost = \"mx.example.com\"\nport = 25\npriority = 10\ntls = \"may\"\n\n[[list]]\nkind = \"allow\"\nfield = \"ip\"\nvalue = \"nonsense\"\nscope = \"\"\ncomment = \"\"\n";
    let third = self::ops().await;
    let e = third.policy_import(bad, "bad.toml").await.unwrap_err();
    assert!(e.to_string().starts_with("bad.toml: list entry"), "{e}");
    assert!(
        third.list_domains().await.unwrap().is_empty(),
        "nothing imported"
    );
}

#[tokio::test]
async fn quarantine_answers_for_what_is_not_there() {
    let ops = ops().await;
    for e in [
        ops.quarantine_show("nope.1").await.unwrap_err(),
        ops.quarantine_delete("nope.1").await.unwrap_err(),
        ops.quarantine_release("nope.1", false).await.unwrap_err(),
    ] {
        assert!(matches!(e, OpsError::NotFound { .. }), "{e}");
    }
    let e = ops
        .quarantine_redeem("forged.release.1.abc")
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400, "{e}");
}
