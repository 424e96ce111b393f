//! The console's pages in process: quarantine (stored markup escaped, HTML sanitized),
//! digest links, the message story, TOTP login, roles and what each role sees.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::*;
use portcullis_filter::token::LinkAction;
use portcullis_ops::Role;
use portcullis_ops::accounts::TokenSpec;
use portcullis_queue::spool::now;
use portcullis_store::{MessageRecord, QuarantineQuery, RecipientRecord, Store};

#[tokio::test]
async fn quarantined_markup_is_escaped_and_sanitized() {
    let app = app().await;
    let s = app.login().await;
    let item = hold(app.ops.store(), "AB12", "bob@example.com").await;

    let list = app.get("/quarantine", Some(&s)).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains(&format!("data-id=\"{item}\"")));
    assert!(!list.body.contains(EVIL), "script in the list");
    assert!(list.body.contains("&#60;script&#62;"));

    let page = app.get(&format!("/quarantine/{item}"), Some(&s)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("<script"), "script in the preview page");
    assert!(page.body.contains("id=\"preview-from\""));
    assert!(
        page.body
            .contains("&#60;script&#62;alert(1)&#60;/script&#62;.html")
    );
    assert!(page.body.contains("<iframe id=\"preview-frame\" sandbox"));

    let frame = app
        .get(&format!("/quarantine/{item}/preview"), Some(&s))
        .await;
    assert_eq!(frame.status, StatusCode::OK);
    assert!(frame.body.contains("<p>hi</p>"));
    assert!(!frame.body.contains("<script"), "{}", frame.body);
    assert!(!frame.body.contains("tracker.example"), "{}", frame.body);
    let csp = frame.headers.get("content-security-policy").unwrap();
    assert!(csp.to_str().unwrap().starts_with("default-src 'none'"));

    let raw = app.get(&format!("/quarantine/{item}/raw"), Some(&s)).await;
    assert!(
        raw.headers
            .get(header::CONTENT_TYPE)
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );

    let api = app
        .get(&format!("/api/v1/quarantine/{item}"), Some(&s))
        .await;
    let v: serde_json::Value = serde_json::from_str(&api.body).expect("JSON");
    assert!(!v["preview"]["html"].as_str().unwrap().contains("<script"));
}

#[tokio::test]
async fn a_digest_link_acts_only_when_confirmed() {
    let app = app().await;
    let store = app.ops.store().clone();
    let item = hold(&store, "CD34", "carol@example.com").await;
    let signer = portcullis_gateway::digest::signer(&store).await.unwrap();
    let token = signer.sign(&item, LinkAction::Release, now() + 3600);
    let state = |store: Store| async move {
        let q = QuarantineQuery {
            recipient: Some("carol@example.com".into()),
            state: Some("held".into()),
            limit: 10,
            ..Default::default()
        };
        store.quarantine_list(&q).await.unwrap().len()
    };

    // A link scanner fetches the link: nothing happens.
    let a = app.get(&format!("/q/{token}"), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body.contains("id=\"digest-confirm\""));
    assert!(!a.body.contains("<script"));
    assert_eq!(state(store.clone()).await, 1, "a GET released the message");
    // The digest's own link form (`/q/release?t=...`) is the same page.
    let a = app.get(&format!("/q/release?t={token}"), None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(state(store.clone()).await, 1);

    // A forged token is refused.
    let a = app.get("/q/AAAA.1.release.1.xyz", None).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);

    // The person confirms.
    let form = serde_urlencoded::to_string([("token", token.as_str())]).unwrap();
    let a = app.post_form(&format!("/q/{token}"), None, &form).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(state(store.clone()).await, 0, "the POST did not release");
    // Once only.
    let a = app.post_form(&format!("/q/{token}"), None, &form).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn the_message_page_tells_the_whole_story() {
    let app = app().await;
    let s = app.login().await;
    app.ops
        .store()
        .log_message(&MessageRecord {
            id: "EF56".into(),
            received_at: now() - 60,
            client_ip: "192.0.2.9".into(),
            helo: "mail.example.net".into(),
            direction: "inbound".into(),
            sender: "alice@example.net".into(),
            size: 2048,
            auth_user: None,
            message_id: Some("<m1@example.net>".into()),
            subject: Some("Quarterly <figures>".into()),
            verdict: Some("deliver".into()),
            rule: Some("default".into()),
            score: Some(1.5),
            findings: Some(
                r#"[{"name":"fcrdns.mismatch","score":1.5,"detail":"PTR mail.example.net"}]"#
                    .into(),
            ),
            recipients: vec![RecipientRecord {
                address: "bob@example.com".into(),
                status: "delivered".into(),
                reply: Some("250 2.0.0 Ok: queued as 123".into()),
                remote_host: Some("mx.example.com".into()),
                updated_at: now(),
                attempts: 1,
            }],
        })
        .await
        .unwrap();

    let found = app
        .get("/messages?subject=quarterly&direction=inbound", Some(&s))
        .await;
    assert_eq!(found.status, StatusCode::OK);
    assert!(found.body.contains("id=\"messages\""));
    assert!(found.body.contains("data-id=\"EF56\""));
    assert!(
        found.body.contains("Quarterly &#60;figures&#62;"),
        "{}",
        found.body
    );
    let none = app.get("/messages?subject=nothing-like-it", Some(&s)).await;
    assert!(!none.body.contains("data-id=\"EF56\""));

    let story = app.get("/messages/EF56", Some(&s)).await;
    assert_eq!(story.status, StatusCode::OK);
    for needle in [
        "192.0.2.9",
        "mail.example.net",
        "fcrdns.mismatch",
        "250 2.0.0 Ok: queued as 123",
        "mx.example.com",
        "id=\"m-rule\"",
    ] {
        assert!(story.body.contains(needle), "{needle} missing");
    }

    let api = app
        .get("/api/v1/messages?client_ip=192.0.2.9&limit=10", Some(&s))
        .await;
    let v: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!(v["items"][0]["id"], "EF56");

    let dash = app.get("/", Some(&s)).await;
    assert_eq!(dash.status, StatusCode::OK);
    assert!(dash.body.contains("<svg class=\"chart\""));
    assert!(dash.body.contains("alice@example.net"));
    let totals = between(&dash.body, "data-test=\"totals-hour\">", "</p>");
    assert!(totals.contains("in 1"), "{totals}");
    assert!(totals.contains("delivered 1"), "{totals}");
}

#[tokio::test]
async fn totp_enrolment_and_the_second_login_step() {
    let app = app().await;
    let s = app.login().await;
    let form = format!("csrf={}", s.csrf);
    let a = app.post_form("/account/totp", Some(&s), &form).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body.contains("id=\"totp-qr\""));
    assert!(a.body.contains("src=\"data:image/svg+xml;base64,"));
    let secret = between(&a.body, "<code id=\"totp-secret\">", "</code>").to_string();
    let totp = portcullis_ops::credentials::totp(&secret, "admin").unwrap();
    let code = totp.generate(now() as u64).to_string();
    let a = app
        .post_form(
            "/account/totp/confirm",
            Some(&s),
            &format!("csrf={}&code={code}", s.csrf),
        )
        .await;
    assert!(a.body.contains("id=\"recovery-codes\""), "{}", a.body);
    let recovery = between(&a.body, "<li><code>", "</code>").to_string();

    // The password alone now leads to the second step, which carries no password.
    let password = "a long enough passphrase 2";
    app.ops
        .acting_as(portcullis_ops::Actor::cli())
        .account_set_password("admin", None, password)
        .await
        .unwrap();
    let form =
        serde_urlencoded::to_string([("username", "admin"), ("password", password)]).unwrap();
    let a = app.post_form("/login", None, &form).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body.contains("id=\"totp\""));
    assert!(!a.body.contains(password));
    assert!(a.headers.get(header::SET_COOKIE).is_none());
    let pending = between(&a.body, "name=\"pending\" value=\"", "\"").to_string();

    // A wrong code ends the attempt.
    let wrong =
        serde_urlencoded::to_string([("pending", pending.as_str()), ("totp", "000000")]).unwrap();
    let a = app.post_form("/login/totp", None, &wrong).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let again = app.post_form("/login/totp", None, &wrong).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);

    let a = app.post_form("/login", None, &form).await;
    let pending = between(&a.body, "name=\"pending\" value=\"", "\"").to_string();
    let right =
        serde_urlencoded::to_string([("pending", pending.as_str()), ("totp", &recovery)]).unwrap();
    let a = app.post_form("/login/totp", None, &right).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert!(a.headers.get(header::SET_COOKIE).is_some());
}

#[tokio::test]
async fn roles_are_enforced_through_the_api_and_the_pages() {
    let app = app().await;
    app.ops.bootstrap_admin().await.unwrap();
    let s = app.login_as("helen", Role::Helpdesk, &[]).await;
    let item = hold(app.ops.store(), "GH78", "dan@example.com").await;

    // Helpdesk reads and releases, but does not delete, change policy or read the audit log.
    assert_eq!(
        app.get("/quarantine", Some(&s)).await.status,
        StatusCode::OK
    );
    let req = Request::builder()
        .method(Method::DELETE)
        .uri(format!("/api/v1/quarantine/{item}"))
        .header(header::COOKIE, s.cookie())
        .header("x-csrf-token", &s.csrf)
        .body(Body::empty())
        .unwrap();
    let a = app.send(req).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    let a = app
        .post_form("/rules", Some(&s), &format!("csrf={}&rules=x", s.csrf))
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert_eq!(
        app.get("/audit", Some(&s)).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/api/v1/audit", Some(&s)).await.status,
        StatusCode::FORBIDDEN
    );

    // The bulk form releases every checked copy.
    let form = serde_urlencoded::to_string([
        ("csrf", s.csrf.as_str()),
        ("id", item.as_str()),
        ("action", "release"),
    ])
    .unwrap();
    let a = app.post_form("/quarantine", Some(&s), &form).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let done = a.headers.get(header::LOCATION).unwrap().to_str().unwrap();
    assert!(done.contains("1+of+1+done"), "{done}");
}

#[tokio::test]
async fn a_domain_admin_sees_only_its_domains_messages() {
    let app = app().await;
    let store = app.ops.store();
    for (id, rcpt) in [("M1", "bob@example.com"), ("M2", "eve@example.org")] {
        store
            .log_message(&MessageRecord {
                id: id.into(),
                received_at: now() - 10,
                client_ip: "192.0.2.1".into(),
                helo: "h".into(),
                direction: "inbound".into(),
                sender: "x@example.net".into(),
                size: 1,
                auth_user: None,
                message_id: None,
                subject: Some("hello".into()),
                verdict: Some("deliver".into()),
                rule: None,
                score: None,
                findings: None,
                recipients: vec![RecipientRecord {
                    address: rcpt.into(),
                    status: "delivered".into(),
                    reply: None,
                    remote_host: None,
                    updated_at: now(),
                    attempts: 1,
                }],
            })
            .await
            .unwrap();
    }
    let dora = app.ops.acting_as(portcullis_ops::Actor {
        name: "dora".into(),
        role: Role::DomainAdmin,
        domains: vec!["example.org".into()],
        address: String::new(),
        read_only: false,
        via: portcullis_ops::Via::Api,
        remote: None,
    });
    let cli = app.ops.acting_as(portcullis_ops::Actor::cli());
    cli.account_add(
        "dora",
        Role::DomainAdmin,
        &["example.org".to_string()],
        "a long enough passphrase",
    )
    .await
    .unwrap();
    let (_, secret) = dora
        .token_create(&TokenSpec {
            name: "t".into(),
            role: Role::DomainAdmin,
            domains: vec!["example.org".into()],
            read_only: true,
            expires: None,
        })
        .await
        .expect("token");
    let get = |path: &str| {
        Request::get(path)
            .header(header::AUTHORIZATION, format!("Bearer {secret}"))
            .body(Body::empty())
            .unwrap()
    };
    let a = app.send(get("/api/v1/messages?subject=hello")).await;
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    let ids: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["M2"]);
    assert_eq!(
        app.send(get("/api/v1/messages/M1")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.send(get("/api/v1/messages/M2")).await.status,
        StatusCode::OK
    );

    // The dashboard's numbers are its domains': one message in, not two.
    let a = app.send(get("/api/v1/dashboard")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let d: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(d["domains"], serde_json::json!(["example.org"]), "{d}");
    let inbound: i64 = d["series"][0]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["inbound"].as_i64().unwrap())
        .sum();
    assert_eq!(inbound, 1, "{d}");
    let top: Vec<&str> = d["top_recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(top, ["eve@example.org"]);
    // The page says whose numbers they are and leaves out the gateway's service checks.
    let s = app
        .login_as("dina", Role::DomainAdmin, &["example.org"])
        .await;
    let page = app.get("/", Some(&s)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Mail of example.org"), "{}", page.body);
    assert!(!page.body.contains("id=\"services\""));
    assert!(!page.body.contains("<script"));
    assert_eq!(
        app.send(get("/api/v1/services")).await.status,
        StatusCode::FORBIDDEN
    );
    // A user's start page is their quarantine.
    let u = app.login_as("eve@example.org", Role::User, &[]).await;
    let a = app.get("/", Some(&u)).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.headers.get(header::LOCATION).unwrap(), "/quarantine");
}

#[tokio::test]
async fn report_spam_teaches_the_classifier_and_deletes_the_copy() {
    let app = app().await;
    let s = app.login().await;
    let store = app.ops.store().clone();
    let first = hold(&store, "RS01", "erin@example.com").await;
    let second = hold(&store, "RS02", "erin@example.com").await;
    let before = store.bayes_summary().await.unwrap().spam_messages;

    // The held copy's page offers it.
    let page = app.get(&format!("/quarantine/{first}"), Some(&s)).await;
    assert!(page.body.contains("value=\"report-spam\""), "{}", page.body);

    // The bulk form.
    let form = serde_urlencoded::to_string([
        ("csrf", s.csrf.as_str()),
        ("id", first.as_str()),
        ("action", "report-spam"),
    ])
    .unwrap();
    let a = app.post_form("/quarantine", Some(&s), &form).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let (item, ..) = store.quarantine_get(&first).await.unwrap().unwrap();
    assert_eq!(item.state, "deleted");
    assert_eq!(
        store.bayes_summary().await.unwrap().spam_messages,
        before + 1
    );

    // The API, and once only.
    let path = format!("/api/v1/quarantine/{second}/report-spam");
    let post = || {
        Request::builder()
            .method(Method::POST)
            .uri(&path)
            .header(header::COOKIE, s.cookie())
            .header("x-csrf-token", &s.csrf)
            .body(Body::empty())
            .unwrap()
    };
    let a = app.send(post()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        store.bayes_summary().await.unwrap().spam_messages,
        before + 2
    );
    let a = app.send(post()).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    assert_eq!(
        store.bayes_summary().await.unwrap().spam_messages,
        before + 2
    );
}

#[tokio::test]
async fn a_digests_release_all_and_settings_links() {
    let app = app().await;
    let store = app.ops.store().clone();
    let rcpt = "fay@example.com";
    let first = hold(&store, "RA01", rcpt).await;
    let second = hold(&store, "RA02", rcpt).await;
    store
        .quarantine_mark_digested("RA0D", rcpt, &[first.clone(), second.clone()], now())
        .await
        .unwrap();
    let signer = portcullis_gateway::digest::signer(&store).await.unwrap();
    let all = signer.sign("RA0D", LinkAction::ReleaseAll, now() + 3600);
    let settings = signer.sign("RA0D", LinkAction::Settings, now() + 3600);
    let held = |store: Store| async move {
        let q = QuarantineQuery {
            recipient: Some(rcpt.into()),
            state: Some("held".into()),
            limit: 10,
            ..Default::default()
        };
        store.quarantine_list(&q).await.unwrap().len()
    };

    // GET lists both and releases nothing.
    let a = app.get(&format!("/q/release-all?t={all}"), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body.contains(&format!("data-id=\"{first}\"")));
    assert!(a.body.contains(&format!("data-id=\"{second}\"")));
    assert!(!a.body.contains("<script"), "stored subject not escaped");
    assert_eq!(held(store.clone()).await, 2);

    // A settings link releases nothing, even when posted without a frequency.
    let form = serde_urlencoded::to_string([("token", settings.as_str())]).unwrap();
    let a = app.post_form(&format!("/q/{settings}"), None, &form).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert_eq!(held(store.clone()).await, 2);

    // POST releases both, once.
    let form = serde_urlencoded::to_string([("token", all.as_str())]).unwrap();
    let a = app.post_form(&format!("/q/{all}"), None, &form).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body.contains("2 messages were released"), "{}", a.body);
    assert_eq!(held(store.clone()).await, 0);
    let a = app.post_form(&format!("/q/{all}"), None, &form).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);

    // The settings link shows the frequency and changes it; a release link cannot.
    let a = app.get(&format!("/q/settings?t={settings}"), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(
        a.body.contains("<option value=\"default\" selected>"),
        "{}",
        a.body
    );
    let form = serde_urlencoded::to_string([("token", settings.as_str()), ("frequency", "weekly")])
        .unwrap();
    let a = app.post_form(&format!("/q/{settings}"), None, &form).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        store.digest_schedule(rcpt).await.unwrap().every_secs,
        Some(7 * 86400)
    );
    let form = serde_urlencoded::to_string([("token", settings.as_str()), ("frequency", "often")])
        .unwrap();
    let a = app.post_form(&format!("/q/{settings}"), None, &form).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    let form =
        serde_urlencoded::to_string([("token", all.as_str()), ("frequency", "never")]).unwrap();
    let a = app.post_form(&format!("/q/{all}"), None, &form).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert_eq!(
        store.digest_schedule(rcpt).await.unwrap().every_secs,
        Some(7 * 86400)
    );
}

#[tokio::test]
async fn a_user_sets_their_own_digest_frequency_and_nobody_elses() {
    let app = app().await;
    let s = app.login_as("gus@example.com", Role::User, &[]).await;

    let page = app.get("/account", Some(&s)).await;
    assert!(
        page.body.contains("id=\"digest-frequency-form\""),
        "{}",
        page.body
    );
    // Without the CSRF token: refused.
    let a = app
        .post_form("/account/digest", Some(&s), "frequency=never")
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    let a = app
        .post_form(
            "/account/digest",
            Some(&s),
            &format!("csrf={}&frequency=never", s.csrf),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body.contains("Quarantine digests: never."), "{}", a.body);
    let store = app.ops.store();
    assert_eq!(
        store
            .digest_schedule("gus@example.com")
            .await
            .unwrap()
            .every_secs,
        Some(0)
    );
    // Through the API: their own, yes; another's, no.
    let put = |address: &str| {
        Request::builder()
            .method(Method::PUT)
            .uri(format!("/api/v1/digest-frequency/{address}"))
            .header(header::COOKIE, s.cookie())
            .header("x-csrf-token", &s.csrf)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"frequency":"daily"}"#))
            .unwrap()
    };
    assert_eq!(
        app.send(put("gus@example.com")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.send(put("hal@example.com")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        store
            .digest_schedule("hal@example.com")
            .await
            .unwrap()
            .every_secs,
        None
    );
    let a = app
        .get("/api/v1/digest-frequency/gus@example.com", Some(&s))
        .await;
    assert!(a.body.contains("\"frequency\":\"daily\""), "{}", a.body);
}

#[tokio::test]
async fn a_rule_dry_run_on_a_held_message_saves_nothing() {
    let app = app().await;
    let s = app.login().await;
    let item = hold(app.ops.store(), "DR01", "ivy@example.com").await;
    let rules = "[[rule]]\nname = \"no-html-attachments\"\n\
                 when = [{ attachment_extension = [\"html\"] }]\n\
                 actions = [{ action = \"reject\", code = 550, status = \"5.7.1\", text = \"No HTML files\" }]\n";
    let form = serde_urlencoded::to_string([
        ("csrf", s.csrf.as_str()),
        ("rules", rules),
        ("item", item.as_str()),
    ])
    .unwrap();
    let a = app.post_form("/rules/dry-run", Some(&s), &form).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(
        a.body.contains(&format!("data-item=\"{item}\"")),
        "{}",
        a.body
    );
    let dry = between(&a.body, "data-test=\"dry-disposition\">", "<");
    assert_eq!(dry, "reject 550 5.7.1 No HTML files");
    assert_eq!(
        between(&a.body, "data-test=\"dry-rule\">", "<"),
        "no-html-attachments"
    );
    let now = between(&a.body, "data-test=\"now-disposition\">", "<");
    assert!(!now.starts_with("reject"), "{now}");
    assert!(!a.body.contains("<script"), "stored subject not escaped");
    assert!(
        app.ops.list_rules().await.unwrap().is_empty(),
        "a dry run saved a rule"
    );

    // Without the CSRF token, an unknown message, a broken rule: refused, precisely.
    let a = app
        .post_form("/rules/dry-run", Some(&s), &format!("item={item}"))
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let form = serde_urlencoded::to_string([
        ("csrf", s.csrf.as_str()),
        ("rules", rules),
        ("item", "NOPE.1"),
    ])
    .unwrap();
    let a = app.post_form("/rules/dry-run", Some(&s), &form).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(a.body.contains("NOPE.1"), "{}", a.body);
    let form = serde_urlencoded::to_string([
        ("csrf", s.csrf.as_str()),
        ("rules", "[[rule]]\nname = 3\n"),
        ("item", item.as_str()),
    ])
    .unwrap();
    let a = app.post_form("/rules/dry-run", Some(&s), &form).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(a.body.contains("the rule form:2"), "{}", a.body);

    // The API answers the same as JSON.
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/rules/dry-run?item={item}"))
        .header(header::COOKIE, s.cookie())
        .header("x-csrf-token", &s.csrf)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(rules))
        .unwrap();
    let a = app.send(req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["candidate"]["rule"], "no-html-attachments");
    assert_eq!(v["candidate"]["matched"][0], "no-html-attachments");
    assert_eq!(v["findings"][0]["name"], "spam.bayes");
}

#[tokio::test]
async fn service_checks_as_json_as_a_fragment_and_refused_to_users() {
    let app = app().await;
    let s = app.login().await;

    // Nothing configured but the store: the store answers, clamd and routes are off.
    let a = app.get("/api/v1/services", Some(&s)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    let checks = v["checks"].as_array().unwrap();
    let status = |service: &str| {
        checks
            .iter()
            .find(|c| c["service"] == service)
            .map(|c| c["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status("store").as_deref(), Some("ok"), "{v}");
    assert_eq!(status("clamd").as_deref(), Some("off"), "{v}");
    assert_eq!(status("route").as_deref(), Some("off"), "{v}");
    // The test's resolver is a loopback port where nothing answers.
    assert_eq!(status("dns").as_deref(), Some("failed"), "{v}");

    // htmx asks for the table alone; a browser without script gets the whole page.
    let req = Request::get("/services")
        .header(header::COOKIE, s.cookie())
        .header("hx-request", "true")
        .body(Body::empty())
        .unwrap();
    let a = app.send(req).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.contains("id=\"services-table\""), "{}", a.body);
    assert!(!a.body.contains("<html"), "{}", a.body);
    let a = app.get("/services", Some(&s)).await;
    assert!(a.body.contains("<html") && a.body.contains("services-table"));

    // A user's view is their own mail: the gateway's services are not theirs to see.
    let u = app.login_as("ursula@example.com", Role::User, &[]).await;
    assert_eq!(
        app.get("/api/v1/services", Some(&u)).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/services", Some(&u)).await.status,
        StatusCode::FORBIDDEN
    );
}
