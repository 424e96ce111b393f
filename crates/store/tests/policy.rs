//! Policy tables: domains and routes, internal networks, SMTP AUTH users.

#[macro_use]
#[path = "../src/testing.rs"]
mod testing;

use ipnet::IpNet;
use portcullis_store::{Domain, Route, StoreError};

fn route(host: &str, priority: u32, tls: &str) -> Route {
    Route {
        host: host.to_string(),
        port: 25,
        priority,
        tls: tls.to_string(),
        auth_user: None,
        auth_password: None,
    }
}

db_test! {
    async fn domain_round_trip_on_file(db) {
        let store = db.open().await;
        let mut authed = route("mx1.example.com", 10, "verify");
        authed.port = 587;
        authed.auth_user = Some("relay".to_string());
        authed.auth_password = Some("pw".to_string());
        store
            .add_domain("example.com", std::slice::from_ref(&authed))
            .await
            .unwrap();

        let got = store.get_domain("example.com").await.unwrap();
        assert_eq!(
            got,
            Some(Domain {
                name: "example.com".to_string(),
                routes: vec![authed],
            })
        );
        assert_eq!(store.get_domain("other.com").await.unwrap(), None);
    }
}

store_test! {
    async fn domain_names_are_normalized(store) {
        store.add_domain("Example.COM.", &[]).await.unwrap();
        let domains = store.list_domains().await.unwrap();
        assert_eq!(domains.len(), 1);
        assert_eq!(domains[0].name, "example.com");
        assert!(store.get_domain("EXAMPLE.com").await.unwrap().is_some());
        assert!(store.remove_domain("example.com.").await.unwrap());
        assert!(!store.remove_domain("example.com").await.unwrap());
        assert!(store.list_domains().await.unwrap().is_empty());
    }
}

store_test! {
    async fn adding_again_replaces_routes(store) {
        store
            .add_domain(
                "example.com",
                &[route("old1", 10, "may"), route("old2", 20, "may")],
            )
            .await
            .unwrap();
        store
            .add_domain("EXAMPLE.COM", &[route("new", 5, "encrypt")])
            .await
            .unwrap();
        let d = store.get_domain("example.com").await.unwrap().unwrap();
        assert_eq!(d.routes, vec![route("new", 5, "encrypt")]);
        assert_eq!(store.list_domains().await.unwrap().len(), 1);
    }
}

store_test! {
    async fn domains_sorted_by_name_routes_by_priority(store) {
        store
            .add_domain(
                "b.example",
                &[
                    route("b30", 30, "none"),
                    route("b10", 10, "may"),
                    route("b20a", 20, "may"),
                    route("b20b", 20, "may"),
                ],
            )
            .await
            .unwrap();
        store
            .add_domain("a.example", &[route("a1", 1, "verify")])
            .await
            .unwrap();
        store.add_domain("c.example", &[]).await.unwrap();

        let domains = store.list_domains().await.unwrap();
        let names: Vec<_> = domains.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["a.example", "b.example", "c.example"]);
        let hosts: Vec<_> = domains[1].routes.iter().map(|r| r.host.as_str()).collect();
        // Equal priorities keep the order they were given in.
        assert_eq!(hosts, ["b10", "b20a", "b20b", "b30"]);
        assert!(domains[2].routes.is_empty());

        let b = store.get_domain("b.example").await.unwrap().unwrap();
        assert_eq!(b.routes, domains[1].routes);
    }
}

store_test! {
    async fn removing_domain_removes_routes(store) {
        store
            .add_domain("example.com", &[route("mx", 10, "may")])
            .await
            .unwrap();
        assert!(store.remove_domain("example.com").await.unwrap());
        // Re-adding without routes must not resurrect the old ones.
        store.add_domain("example.com", &[]).await.unwrap();
        let d = store.get_domain("example.com").await.unwrap().unwrap();
        assert!(d.routes.is_empty());
    }
}

store_test! {
    async fn bad_domain_input_is_named_in_the_error(store) {
        let err = store
            .add_domain("example.com", &[route("mx", 10, "sometimes")])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }));
        let msg = err.to_string();
        assert!(msg.starts_with("adding domain example.com: "), "{msg}");
        assert!(msg.contains("sometimes"), "{msg}");

        let mut zero = route("mx", 10, "may");
        zero.port = 0;
        assert!(store.add_domain("example.com", &[zero]).await.is_err());
        assert!(store.add_domain("  ", &[]).await.is_err());
        assert!(store.add_domain("user@example.com", &[]).await.is_err());
        // Nothing half-written by the failed calls.
        assert!(store.list_domains().await.unwrap().is_empty());
    }
}

db_test! {
    async fn network_round_trip_and_canonical_form(db) {
        let store = db.open().await;
        let lan: IpNet = "10.1.2.3/8".parse().unwrap();
        store.add_network(lan, "office").await.unwrap();
        store
            .add_network("2001:db8::1/32".parse().unwrap(), "v6")
            .await
            .unwrap();
        store
            .add_network("192.168.0.0/16".parse().unwrap(), "")
            .await
            .unwrap();
        store
            .add_network("100.64.0.0/10".parse().unwrap(), "cgnat")
            .await
            .unwrap();

        let nets = store.list_networks().await.unwrap();
        let shown: Vec<_> = nets.iter().map(|(n, c)| format!("{n} {c}")).collect();
        assert_eq!(
            shown,
            [
                "10.0.0.0/8 office",
                "100.64.0.0/10 cgnat",
                "192.168.0.0/16 ",
                "2001:db8::/32 v6",
            ]
        );

        // Same network written differently replaces the comment, not a second row.
        store
            .add_network("10.9.9.9/8".parse().unwrap(), "hq")
            .await
            .unwrap();
        let nets = store.list_networks().await.unwrap();
        assert_eq!(nets.len(), 4);
        assert_eq!(nets[0], ("10.0.0.0/8".parse().unwrap(), "hq".to_string()));

        assert!(store.remove_network(lan).await.unwrap());
        assert!(!store.remove_network(lan).await.unwrap());
        assert_eq!(store.list_networks().await.unwrap().len(), 3);
    }
}

db_test! {
    async fn user_round_trip_replace_and_case(db) {
        let store = db.open().await;
        store
            .add_user("Alice@Example.com", "$argon2id$v=19$one")
            .await
            .unwrap();
        store
            .add_user("bob@example.com", "$argon2id$b")
            .await
            .unwrap();
        assert_eq!(
            store.user_password_hash("ALICE@example.COM").await.unwrap(),
            Some("$argon2id$v=19$one".to_string())
        );

        store
            .add_user("alice@example.com", "$argon2id$v=19$two")
            .await
            .unwrap();
        assert_eq!(
            store.user_password_hash("alice@example.com").await.unwrap(),
            Some("$argon2id$v=19$two".to_string())
        );
        assert_eq!(
            store.list_users().await.unwrap(),
            ["alice@example.com", "bob@example.com"]
        );

        assert!(store.remove_user("BOB@example.com").await.unwrap());
        assert!(!store.remove_user("bob@example.com").await.unwrap());
        assert_eq!(
            store.user_password_hash("bob@example.com").await.unwrap(),
            None
        );
        assert_eq!(store.list_users().await.unwrap(), ["alice@example.com"]);

        let err = store.add_user("carol@example.com", "").await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("adding user carol@example.com: ")
        );
    }
}

store_test! {
    async fn a_nul_character_is_the_callers_mistake_on_either_engine(store) {
        // PostgreSQL refuses NUL in text, SQLite takes it: on neither may it look like a
        // failing store (503 in the API); on PostgreSQL it is an invalid value (400).
        match store.remove_domain("bad\u{0}.example").await {
            Ok(removed) => assert!(!removed),
            Err(e) => assert!(matches!(e, StoreError::Invalid { .. }), "{e:?}"),
        }
    }
}

store_test! {
    async fn config_overrides_are_set_replaced_listed_and_removed(store) {
        let mut o = portcullis_store::ConfigOverride {
            section: "greylist".into(),
            key: "delay_secs".into(),
            value: "60".into(),
            changed_by: "root".into(),
            changed_at: 100,
        };
        store.set_config_override(&o).await.unwrap();
        o.value = "120".into();
        o.changed_at = 200;
        store.set_config_override(&o).await.unwrap();
        let fcrdns = portcullis_store::ConfigOverride {
            section: "fcrdns".into(),
            key: "enabled".into(),
            value: "false".into(),
            changed_by: "cli".into(),
            changed_at: 150,
        };
        store.set_config_override(&fcrdns).await.unwrap();
        assert_eq!(store.list_config_overrides().await.unwrap(), vec![fcrdns, o]);
        assert!(store.remove_config_override("greylist", "delay_secs").await.unwrap());
        assert!(!store.remove_config_override("greylist", "delay_secs").await.unwrap());
        assert_eq!(store.list_config_overrides().await.unwrap().len(), 1);
    }
}
