//! The console's DKIM and report pages in process: keys and their records shown (never a
//! private key), CSRF and confirmation on the key forms, roles that may not change keys
//! refused, reports listed, shown and charted with a stranger's markup escaped, and a
//! domain-admin kept to its domains' reports.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::*;
use mail_auth::report::{DKIMAuthResult, DkimResult, Record, Report};
use portcullis_ops::Role;
use portcullis_queue::spool::now;
use portcullis_store::{ReportSummary, StoredReport};

async fn api(app: &App, method: Method, path: &str, s: &Session) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::COOKIE, s.cookie())
        .header("x-csrf-token", &s.csrf)
        .body(Body::empty())
        .unwrap();
    let a = app.send(req).await;
    (a.status, a.body)
}

#[tokio::test]
async fn keys_are_made_shown_and_removed_with_confirmation() {
    let app = app().await;
    let s = app.login().await;

    let a = app.get("/dkim", Some(&s)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body.contains("id=\"dkim-empty\""));
    assert!(a.body.contains("id=\"nav-dkim\"") && a.body.contains("id=\"nav-reports\""));

    // No CSRF token: refused, nothing made.
    let a = app
        .post_form("/dkim", Some(&s), "action=generate&domain=example.com")
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(app.ops.dkim_list(None).await.unwrap().is_empty());

    let a = app
        .post_form(
            "/dkim",
            Some(&s),
            &s.form(&[
                ("action", "generate"),
                ("domain", "Example.com"),
                ("algorithm", "ed25519"),
                ("selector", "mail1"),
                ("stage", "on"),
            ]),
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let done = a.headers.get(header::LOCATION).unwrap().to_str().unwrap();
    assert!(done.starts_with("/dkim?done="), "{done}");

    let keys = app.ops.dkim_list(None).await.unwrap();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(key.key.state, "pending");
    let page = app.get(done, Some(&s)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"dkim-done\""));
    assert!(page.body.contains("mail1._domainkey.example.com."));
    assert!(page.body.contains(key.txt.as_deref().unwrap()));
    assert!(page.body.contains("data-state=\"pending\""));
    assert!(page.body.contains("data-test=\"dkim-activate\""));
    assert!(
        !page.body.contains(&key.key.private_key),
        "a private key on the page"
    );

    let (status, body) = api(&app, Method::GET, "/api/v1/dkim", &s).await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["items"][0]["record_name"],
        "mail1._domainkey.example.com."
    );
    assert_eq!(v["items"][0]["state"], "pending");
    assert!(
        !body.contains(&key.key.private_key),
        "a private key in the API"
    );
    assert!(!body.contains("private"));

    // Activate through the API, then delete: refused while it signs.
    let (status, body) = api(&app, Method::POST, "/api/v1/dkim/example.com/activate", &s).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = api(&app, Method::DELETE, "/api/v1/dkim/example.com/mail1", &s).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Retire asks first; only the confirmed form acts.
    let fields = [
        ("action", "retire"),
        ("domain", "example.com"),
        ("selector", "mail1"),
    ];
    let a = app.post_form("/dkim", Some(&s), &s.form(&fields)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.contains("id=\"dkim-confirm\""));
    assert!(a.body.contains("name=\"confirm\" value=\"yes\""));
    assert_eq!(
        app.ops.dkim_list(None).await.unwrap()[0].key.state,
        "active"
    );
    let mut confirmed = fields.to_vec();
    confirmed.push(("confirm", "yes"));
    let a = app.post_form("/dkim", Some(&s), &s.form(&confirmed)).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(
        app.ops.dkim_list(None).await.unwrap()[0].key.state,
        "retired"
    );

    let fields = [
        ("action", "delete"),
        ("domain", "example.com"),
        ("selector", "mail1"),
        ("confirm", "yes"),
    ];
    let a = app.post_form("/dkim", Some(&s), &s.form(&fields)).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert!(app.ops.dkim_list(None).await.unwrap().is_empty());

    // The check of a key that does not exist is a 404, not a DNS answer.
    let a = app
        .get("/dkim?check=example.com&selector=mail1", Some(&s))
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn helpdesk_and_auditor_cannot_make_or_delete_keys() {
    let app = app().await;
    app.ops.bootstrap_admin().await.unwrap();
    app.ops
        .acting_as(portcullis_ops::Actor::cli())
        .dkim_generate("example.com", Some("k1"), "ed25519", true)
        .await
        .unwrap();
    for (name, role) in [("helen", Role::Helpdesk), ("audrey", Role::Auditor)] {
        let s = app.login_as(name, role, &[]).await;
        let page = app.get("/dkim", Some(&s)).await;
        assert_eq!(page.status, StatusCode::OK, "{name}");
        assert!(page.body.contains("data-selector=\"k1\""));
        assert!(
            !page.body.contains("id=\"dkim-generate\""),
            "{name} sees the form"
        );
        assert!(!page.body.contains("data-test=\"dkim-delete\""));

        let a = app
            .post_form(
                "/dkim",
                Some(&s),
                &s.form(&[("action", "generate"), ("domain", "example.com")]),
            )
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{name}: {}", a.body);
        let a = app
            .post_form(
                "/dkim",
                Some(&s),
                &s.form(&[
                    ("action", "delete"),
                    ("domain", "example.com"),
                    ("selector", "k1"),
                    ("confirm", "yes"),
                ]),
            )
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{name}");
        let (status, _) = api(&app, Method::POST, "/api/v1/dkim/example.com/generate", &s).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}");
        let (status, _) = api(&app, Method::DELETE, "/api/v1/dkim/example.com/k1", &s).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}");
        let (status, _) = api(&app, Method::POST, "/api/v1/dkim/example.com/k1/retire", &s).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}");
    }
    assert_eq!(app.ops.dkim_list(None).await.unwrap().len(), 1);
}

/// A DMARC report from a reporter whose name and results carry markup.
async fn dmarc_report(app: &App, id: &str, org: &str, domain: &str) {
    let mut report = Report::default();
    report.report_metadata.org_name = org.into();
    report.report_metadata.report_id = id.into();
    report.policy_published.domain = domain.into();
    let mut record = Record::default();
    record.row.source_ip = Some("192.0.2.7".parse().unwrap());
    record.row.count = 12;
    record.identifiers.header_from = format!("{EVIL}{domain}");
    record.auth_results.dkim.push(DKIMAuthResult {
        domain: domain.into(),
        selector: EVIL.into(),
        result: DkimResult::Pass,
        human_result: None,
    });
    report.record.push(record);
    let begin = now() - 86_400;
    app.ops
        .store()
        .report_insert(&StoredReport {
            summary: ReportSummary {
                id: id.into(),
                kind: "dmarc".into(),
                org: org.into(),
                report_id: id.into(),
                domain: domain.into(),
                begin,
                end: begin + 86_399,
                received_at: now(),
                messages: 12,
                pass: 12,
                fail: 0,
            },
            report: serde_json::to_string(&report).unwrap(),
        })
        .await
        .expect("insert");
}

#[tokio::test]
async fn reports_are_listed_shown_and_charted_escaped() {
    let app = app().await;
    let s = app.login().await;
    let evil_org = format!("{EVIL} Mail");
    dmarc_report(&app, "REP1", &evil_org, "example.com").await;
    dmarc_report(&app, "REP2", "Other Mail", "example.org").await;

    let list = app.get("/reports", Some(&s)).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert!(list.body.contains("data-id=\"REP1\"") && list.body.contains("data-id=\"REP2\""));
    assert!(!list.body.contains(EVIL), "script in the list");

    let filtered = app
        .get("/reports?org=other&kind=dmarc&since=7d", Some(&s))
        .await;
    assert!(filtered.body.contains("data-id=\"REP2\""));
    assert!(!filtered.body.contains("data-id=\"REP1\""));
    let bad = app.get("/reports?since=yesterday", Some(&s)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("id=\"reports-error\""));

    let typo = app.get("/reports?domain=examplecom", Some(&s)).await;
    assert_eq!(typo.status, StatusCode::OK);
    assert!(typo.body.contains("id=\"reports-empty\""));

    let charts = app.get("/reports?domain=example.com", Some(&s)).await;
    assert_eq!(charts.status, StatusCode::OK);
    assert!(charts.body.contains("data-chart=\"days\""));
    assert!(charts.body.contains("data-chart=\"orgs\""));
    assert!(charts.body.contains("class=\"pass\""));
    assert!(!charts.body.contains(EVIL), "script in a chart");
    assert!(charts.body.contains("&#60;script&#62;"));

    let one = app.get("/reports/REP1", Some(&s)).await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.body);
    assert!(one.body.contains("data-source=\"192.0.2.7\""));
    assert!(one.body.contains(">12<"));
    assert!(!one.body.contains(EVIL), "script in the report");

    let (status, body) = api(&app, Method::GET, "/api/v1/reports/REP1", &s).await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["org"], evil_org);
    assert_eq!(v["report"]["record"][0]["row"]["count"], 12);
    let (_, body) = api(&app, Method::GET, "/api/v1/reports?domain=example.org", &s).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    let (_, body) = api(
        &app,
        Method::GET,
        "/api/v1/reports/trend?domain=example.com&days=3",
        &s,
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["days"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_domain_admin_sees_only_its_domains_reports() {
    let app = app().await;
    app.ops.bootstrap_admin().await.unwrap();
    dmarc_report(&app, "MINE", "Mail Co", "example.org").await;
    dmarc_report(&app, "THEIRS", "Mail Co", "example.com").await;
    let s = app
        .login_as("dora", Role::DomainAdmin, &["example.org"])
        .await;

    let list = app.get("/reports", Some(&s)).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("data-id=\"MINE\""));
    assert!(!list.body.contains("data-id=\"THEIRS\""));
    let asked = app.get("/reports?domain=example.com", Some(&s)).await;
    assert!(!asked.body.contains("data-id=\"THEIRS\""));
    assert!(!asked.body.contains("data-chart"));
    assert_eq!(
        app.get("/reports/THEIRS", Some(&s)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/reports/MINE", Some(&s)).await.status,
        StatusCode::OK
    );

    let (_, body) = api(&app, Method::GET, "/api/v1/reports", &s).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ids: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["MINE"]);
    let (status, _) = api(&app, Method::GET, "/api/v1/reports/THEIRS", &s).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Its own domain's keys it may make; another domain's not.
    let a = app
        .post_form(
            "/dkim",
            Some(&s),
            &s.form(&[("action", "generate"), ("domain", "example.com")]),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = app
        .post_form(
            "/dkim",
            Some(&s),
            &s.form(&[
                ("action", "generate"),
                ("domain", "example.org"),
                ("algorithm", "ed25519"),
            ]),
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
}

#[tokio::test]
async fn the_api_check_says_when_dns_fails() {
    // A loopback port where no DNS server answers: every lookup fails.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut config = portcullis_gateway::config::Config {
        data_dir: temp_dir(),
        ..Default::default()
    };
    config.dns.nameservers = vec![silent.local_addr().unwrap()];
    config.dns.timeout_secs = 1;
    let store = portcullis_store::Store::open("sqlite::memory:")
        .await
        .expect("store");
    let ops = portcullis_ops::Ops::new(store, config);
    let app = App {
        router: portcullis_web::router(ops.clone()),
        ops,
    };
    let s = app.login().await;
    app.ops
        .acting_as(portcullis_ops::Actor::cli())
        .dkim_generate("example.com", Some("k1"), "ed25519", false)
        .await
        .unwrap();
    let (status, body) = api(&app, Method::GET, "/api/v1/dkim/example.com/k1/check", &s).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "error", "{body}");
    assert_eq!(v["name"], "k1._domainkey.example.com.");
    assert!(
        v["expected"]
            .as_str()
            .unwrap()
            .starts_with("v=DKIM1; k=ed25519; p=")
    );
    let (status, _) = api(&app, Method::GET, "/api/v1/dkim/example.com/nope/check", &s).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    drop(silent);
}

/// The answers of the key changes carry what the command line prints: generate's algorithm
/// and state, retire's record and whether the domain still signs, delete's record; `ok` and
/// `detail` stay where they were.
#[tokio::test]
async fn key_changes_answer_what_a_client_prints() {
    let app = app().await;
    let s = app.login().await;
    let (status, body) = api(&app, Method::POST, "/api/v1/dkim/example.com/generate", &s).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let made: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(made["algorithm"], "rsa-sha256", "{body}");
    assert_eq!(made["state"], "active", "{body}");
    let selector = made["selectors"][0].as_str().unwrap().to_string();
    assert_eq!(made["new_records"].as_array().unwrap().len(), 1, "{body}");

    // rotate's answer has no generate fields.
    let (status, body) = api(&app, Method::POST, "/api/v1/dkim/example.com/rotate", &s).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v.get("algorithm").is_none() && v.get("state").is_none(),
        "{body}"
    );
    assert_eq!(v["new_records"].as_array().unwrap().len(), 1, "{body}");
    let keys = app.ops.dkim_list(None).await.unwrap();
    let new = keys
        .iter()
        .find(|k| k.key.state == "active")
        .map(|k| k.key.selector.clone())
        .unwrap();
    assert_ne!(new, selector);

    let path = format!("/api/v1/dkim/example.com/{selector}/retire");
    let (status, body) = api(&app, Method::POST, &path, &s).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let record = format!("{selector}._domainkey.example.com.");
    assert_eq!(v["ok"], true);
    assert_eq!(v["record"], record.as_str(), "{body}");
    assert_eq!(v["still_signed"], true, "{body}");

    let path = format!("/api/v1/dkim/example.com/{selector}");
    let (status, body) = api(&app, Method::DELETE, &path, &s).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["record"], record.as_str(), "{body}");
    assert!(
        v["detail"].as_str().unwrap().starts_with("deleted"),
        "{body}"
    );

    // Retiring the last active key: the domain signs no more.
    let path = format!("/api/v1/dkim/example.com/{new}/retire");
    let (status, body) = api(&app, Method::POST, &path, &s).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["still_signed"], false, "{body}");
    assert_eq!(
        v["record"],
        format!("{new}._domainkey.example.com."),
        "{body}"
    );
    assert!(
        v["detail"].as_str().unwrap().contains("goes unsigned"),
        "{body}"
    );
    assert_eq!(app.ops.dkim_list(None).await.unwrap().len(), 1);
}
