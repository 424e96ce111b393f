//! The console's policy pages: domains and routes (with the route test against an SMTP
//! server on loopback), internal networks, users, allow/block and content lists, the
//! checks' settings; CSRF on every form, and what each role may see and change.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::*;
use portcullis_ops::Role;
use portcullis_ops::policy::RoutesSpec;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

async fn add_domain(app: &App, name: &str, route: &str) {
    let spec = RoutesSpec {
        routes: vec![route.to_string()],
        tls: "may".into(),
        auth_user: Some("relay".into()),
        auth_password: Some("route-secret-123".into()),
    };
    app.ops.add_domain(name, &spec).await.expect("domain");
}

/// A one-connection SMTP server on loopback that offers no STARTTLS.
async fn smtp_sink() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let (r, mut w) = sock.into_split();
        let mut lines = BufReader::new(r).lines();
        w.write_all(b"220 sink.test ESMTP ready\r\n").await.unwrap();
        while let Ok(Some(line)) = lines.next_line().await {
            let reply: &[u8] = match line.to_ascii_uppercase().get(..4) {
                Some("EHLO") => b"250-sink.test hello\r\n250 PIPELINING\r\n",
                Some("QUIT") => b"221 2.0.0 bye\r\n",
                _ => b"502 5.5.1 no\r\n",
            };
            w.write_all(reply).await.unwrap();
            if reply.starts_with(b"221") {
                break;
            }
        }
    });
    addr
}

#[tokio::test]
async fn every_policy_page_renders_for_an_admin() {
    let app = app().await;
    let s = app.login().await;
    add_domain(&app, "example.com", "mail.example.com:25").await;
    let home = app.get("/", Some(&s)).await;
    assert!(home.body.contains("id=\"nav-policy\""));
    for (path, form_id) in [
        ("/policy/domains", "domain-add"),
        ("/policy/networks", "network-add"),
        ("/policy/users", "user-add"),
        ("/policy/lists", "list-add"),
        ("/policy/content", "content-add"),
        ("/policy/checks", "checks-greylist"),
    ] {
        let a = app.get(path, Some(&s)).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
        assert!(a.body.contains(&format!("id=\"{form_id}\"")), "{path}");
    }
    let a = app.get("/policy/domains", Some(&s)).await;
    assert!(a.body.contains("data-domain=\"example.com\""));
    assert!(a.body.contains("AUTH as relay"));
    assert!(
        !a.body.contains("route-secret-123"),
        "a route password shown"
    );
    let a = app.get("/policy/checks", Some(&s)).await;
    assert!(a.body.contains("[greylist] delay_secs"));
    assert!(a.body.contains("built-in defaults"));
}

#[tokio::test]
async fn every_policy_form_needs_the_csrf_token() {
    let app = app().await;
    let s = app.login().await;
    for path in [
        "/policy/domains",
        "/policy/domains/remove",
        "/policy/domains/test",
        "/policy/networks",
        "/policy/networks/remove",
        "/policy/users",
        "/policy/users/remove",
        "/policy/lists",
        "/policy/lists/remove",
        "/policy/content",
        "/policy/content/remove",
        "/policy/checks",
    ] {
        let a = app
            .post_form(path, Some(&s), "name=example.com&cidr=10.0.0.0/8")
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{path}");
        let a = app
            .post_form(path, Some(&s), "csrf=wrong&cidr=10.0.0.0/8")
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert!(app.ops.list_networks().await.unwrap().is_empty());
}

#[tokio::test]
async fn networks_users_lists_and_content_are_added_and_removed() {
    let app = app().await;
    let s = app.login().await;

    let a = app
        .post_form(
            "/policy/networks",
            Some(&s),
            &s.form(&[("cidr", "10.1.2.3/8"), ("comment", "office")]),
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let page = app.get("/policy/networks", Some(&s)).await;
    assert!(page.body.contains("data-cidr=\"10.0.0.0/8\""));
    let a = app
        .post_form(
            "/policy/networks",
            Some(&s),
            &s.form(&[("cidr", "10.0.0.0/33<b>")]),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("id=\"policy-error\""));
    assert!(a.body.contains("10.0.0.0/33&#60;b&#62;"), "{}", a.body);
    let a = app
        .post_form(
            "/policy/networks/remove",
            Some(&s),
            &s.form(&[("cidr", "10.0.0.0/8")]),
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert!(app.ops.list_networks().await.unwrap().is_empty());

    let a = app
        .post_form(
            "/policy/users",
            Some(&s),
            &s.form(&[
                ("email", "al@example.com"),
                ("password", "short"),
                ("password_again", "short"),
            ]),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("at least 8 characters"), "{}", a.body);
    let good = [
        ("email", "al@example.com"),
        ("password", "long enough"),
        ("password_again", "long enough"),
    ];
    let a = app
        .post_form("/policy/users", Some(&s), &s.form(&good))
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(app.ops.list_users().await.unwrap(), ["al@example.com"]);
    let a = app
        .post_form(
            "/policy/users/remove",
            Some(&s),
            &s.form(&[("email", "al@example.com")]),
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert!(app.ops.list_users().await.unwrap().is_empty());

    let entry = [
        ("kind", "block"),
        ("field", "sender"),
        ("value", "spam@example.net"),
        ("scope", ""),
    ];
    let a = app
        .post_form("/policy/lists", Some(&s), &s.form(&entry))
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let allow = [
        ("kind", "allow"),
        ("field", "ip"),
        ("value", "192.0.2.0/24"),
        ("scope", ""),
    ];
    app.post_form("/policy/lists", Some(&s), &s.form(&allow))
        .await;
    let page = app.get("/policy/lists?kind=block", Some(&s)).await;
    assert!(page.body.contains("data-value=\"spam@example.net\""));
    assert!(!page.body.contains("data-value=\"192.0.2.0/24\""));
    let page = app.get("/policy/lists?q=192.0.2", Some(&s)).await;
    assert!(!page.body.contains("data-value=\"spam@example.net\""));
    assert!(page.body.contains("data-value=\"192.0.2.0/24\""));
    let a = app
        .post_form("/policy/lists/remove", Some(&s), &s.form(&entry))
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(app.ops.list_entries().await.unwrap().len(), 1);

    let pattern = [
        ("list", "words"),
        ("pattern", "cheap pills"),
        ("field", "any"),
        ("score", "2.5"),
    ];
    let a = app
        .post_form("/policy/content", Some(&s), &s.form(&pattern))
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let bad = [
        ("list", "words"),
        ("pattern", "(unclosed"),
        ("field", "any"),
        ("regex", "on"),
        ("score", "1"),
    ];
    let a = app
        .post_form("/policy/content", Some(&s), &s.form(&bad))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    let page = app.get("/policy/content?q=pills", Some(&s)).await;
    assert!(page.body.contains("cheap pills"));
    let api = app.get("/api/v1/content?list=words", Some(&s)).await;
    assert!(api.body.contains("\"cheap pills\""), "{}", api.body);
    let a = app
        .post_form("/policy/content/remove", Some(&s), &s.form(&pattern))
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert!(app.ops.list_content().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_helpdesk_reads_the_policy_but_changes_nothing() {
    let app = app().await;
    app.ops.bootstrap_admin().await.unwrap();
    add_domain(&app, "example.com", "127.0.0.1:9").await;
    let s = app.login_as("helen", Role::Helpdesk, &[]).await;
    for path in [
        "/policy/domains",
        "/policy/networks",
        "/policy/lists",
        "/policy/checks",
    ] {
        let a = app.get(path, Some(&s)).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert!(
            !a.body.contains("method=\"post\" action=\"/policy"),
            "{path} shows a form"
        );
    }
    for (path, fields) in [
        ("/policy/networks", vec![("cidr", "10.0.0.0/8")]),
        (
            "/policy/domains",
            vec![("name", "evil.example"), ("routes", "127.0.0.1:25")],
        ),
        ("/policy/domains/remove", vec![("name", "example.com")]),
        ("/policy/domains/test", vec![("name", "example.com")]),
        (
            "/policy/checks",
            vec![("name", "greylist.mode"), ("value", "never")],
        ),
        (
            "/policy/users",
            vec![
                ("email", "x@example.com"),
                ("password", "long enough"),
                ("password_again", "long enough"),
            ],
        ),
    ] {
        let a = app.post_form(path, Some(&s), &s.form(&fields)).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{path}: {}", a.body);
    }
    assert!(app.ops.list_networks().await.unwrap().is_empty());
    assert_eq!(app.ops.list_domains().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_domain_admin_sees_and_changes_only_its_domains() {
    let app = app().await;
    app.ops.bootstrap_admin().await.unwrap();
    add_domain(&app, "example.org", "mx.example.org:25").await;
    add_domain(&app, "example.com", "mx.example.com:25").await;
    let s = app
        .login_as("dora", Role::DomainAdmin, &["example.org"])
        .await;
    let a = app.get("/policy/domains", Some(&s)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.contains("data-domain=\"example.org\""));
    assert!(!a.body.contains("example.com"), "another domain shown");
    // No links to the gateway-wide pages it may not open.
    for page in ["policy-networks", "policy-content", "policy-checks"] {
        assert!(
            !a.body.contains(&format!("id=\"{page}\"")),
            "{page} offered"
        );
    }
    assert!(a.body.contains("id=\"policy-lists\""));
    let a = app
        .post_form(
            "/policy/domains/remove",
            Some(&s),
            &s.form(&[("name", "example.com")]),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // Gateway-wide settings are not a domain's.
    assert_eq!(
        app.get("/policy/networks", Some(&s)).await.status,
        StatusCode::FORBIDDEN
    );
    // Its own domain's routes it may change.
    let fields = [
        ("name", "example.org"),
        ("routes", "mx2.example.org:25"),
        ("tls", "verify"),
    ];
    let a = app
        .post_form("/policy/domains", Some(&s), &s.form(&fields))
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let users = [
        ("email", "u@example.com"),
        ("password", "long enough"),
        ("password_again", "long enough"),
    ];
    let a = app
        .post_form("/policy/users", Some(&s), &s.form(&users))
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_route_test_shows_the_servers_dialogue() {
    let app = app().await;
    let s = app.login().await;
    let addr = smtp_sink().await;
    add_domain(&app, "sink.test", &addr.to_string()).await;
    let a = app
        .post_form(
            "/policy/domains/test",
            Some(&s),
            &s.form(&[("name", "sink.test")]),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let test = between(&a.body, "id=\"route-test\"", "</section>");
    assert!(test.contains("data-ok=\"yes\""), "{test}");
    assert!(test.contains("220 sink.test ESMTP ready"), "{test}");
    assert!(test.contains("250-sink.test hello"), "{test}");
    assert!(test.contains("221 2.0.0 bye"), "{test}");
    assert!(test.contains("STARTTLS not offered"), "{test}");
    assert!(!test.contains("route-secret-123"));
    let audit = app.get("/api/v1/audit?action=domain.test", Some(&s)).await;
    assert!(audit.body.contains("sink.test"), "{}", audit.body);

    // A refused connection, through the API: a 200 with the route's error.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    add_domain(&app, "dead.test", &format!("127.0.0.1:{port}")).await;
    let req = Request::post("/api/v1/domains/dead.test/test")
        .header(header::COOKIE, s.cookie())
        .header("x-csrf-token", &s.csrf)
        .body(Body::empty())
        .unwrap();
    let a = app.send(req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    let error = v[0]["error"].as_str().expect("an error");
    assert!(error.contains("refused"), "{error}");
    let req = Request::post("/api/v1/domains/none.test/test")
        .header(header::COOKIE, s.cookie())
        .header("x-csrf-token", &s.csrf)
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn check_settings_change_over_the_file_and_reset_through_the_api() {
    let app = app().await;
    let s = app.login().await;
    let call = |method: Method, path: &str, body: Option<&str>| {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::COOKIE, s.cookie())
            .header("x-csrf-token", &s.csrf);
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        req.body(Body::from(body.unwrap_or("").to_string()))
            .unwrap()
    };
    let path = "/api/v1/settings/checks/greylist/delay_secs";
    let a = app
        .send(call(Method::PUT, path, Some(r#"{"value": 90}"#)))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = app
        .send(call(
            Method::PUT,
            "/api/v1/settings/checks/fcrdns/enabled",
            Some(r#"{"text": "off"}"#),
        ))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = app.get("/api/v1/settings/checks", Some(&s)).await;
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    let delay = v["greylist"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "delay_secs")
        .unwrap();
    assert_eq!(delay["value"], "90", "{v}");
    assert_eq!(delay["changed_by"], "admin", "{v}");
    assert_eq!(v["changed"].as_array().unwrap().len(), 2, "{v}");

    // Wrong type, wrong key, both forms at once, the section's own rule: 400 with why.
    for (path, body, says) in [
        (path, r#"{"value": "soon"}"#, "delay_secs"),
        (
            "/api/v1/settings/checks/greylist/delay",
            r#"{"value": 1}"#,
            "delay_secs",
        ),
        (
            "/api/v1/settings/checks/spam/x",
            r#"{"value": 1}"#,
            "greylist, dnsbl, fcrdns",
        ),
        (path, r#"{"value": 1, "text": "1"}"#, "either"),
        (path, r#"{"value": 999999}"#, "retry_window"),
    ] {
        let a = app.send(call(Method::PUT, path, Some(body))).await;
        assert_eq!(
            a.status,
            StatusCode::BAD_REQUEST,
            "{path} {body}: {}",
            a.body
        );
        assert!(a.body.contains(says), "{path} {body}: {}", a.body);
    }

    let a = app.send(call(Method::DELETE, path, None)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = app.send(call(Method::DELETE, path, None)).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
    let left = app.ops.store().list_config_overrides().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(
        (left[0].section.as_str(), left[0].key.as_str()),
        ("fcrdns", "enabled")
    );

    // Read-only roles read them and change nothing.
    let h = app.login_as("helen", Role::Helpdesk, &[]).await;
    assert_eq!(
        app.get("/api/v1/settings/checks", Some(&h)).await.status,
        StatusCode::OK
    );
    let req = Request::builder()
        .method(Method::PUT)
        .uri(path)
        .header(header::COOKIE, h.cookie())
        .header("x-csrf-token", &h.csrf)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"value": 60}"#))
        .unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::FORBIDDEN);
}
