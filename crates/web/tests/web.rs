//! The console and API in process, on an in-memory store: the router is driven request by
//! request (`tower::ServiceExt::oneshot`), as a browser or a client would, without sockets.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use portcullis_filter::token::LinkAction;
use portcullis_gateway::config::Config;
use portcullis_ops::accounts::{Login, TokenSpec};
use portcullis_ops::{Ops, Role};
use portcullis_queue::spool::{Direction, Envelope, now};
use portcullis_store::{HeldMessage, MessageRecord, QuarantineQuery, RecipientRecord, Store};
use std::path::PathBuf;
use tower::ServiceExt;

fn temp_dir() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "portcullis-web-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

struct App {
    ops: Ops,
    router: Router,
}

async fn app() -> App {
    let store = Store::open("sqlite::memory:").await.expect("store");
    let config = Config {
        data_dir: temp_dir(),
        ..Config::default()
    };
    let ops = Ops::new(store, config);
    App {
        router: portcullis_web::router(ops.clone()),
        ops,
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl App {
    async fn send(&self, req: Request<Body>) -> Answer {
        let res = self
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("router answers");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, path: &str, session: Option<&Session>) -> Answer {
        let mut req = Request::get(path);
        if let Some(s) = session {
            req = req.header(header::COOKIE, s.cookie());
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    async fn post_form(&self, path: &str, session: Option<&Session>, form: &str) -> Answer {
        let mut req =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(s) = session {
            req = req.header(header::COOKIE, s.cookie());
        }
        self.send(req.body(Body::from(form.to_string())).unwrap())
            .await
    }

    /// Log in as the first administrator through the login form.
    async fn login(&self) -> Session {
        let password = self
            .ops
            .bootstrap_admin()
            .await
            .expect("bootstrap")
            .expect("first account");
        let form =
            serde_urlencoded::to_string([("username", "admin"), ("password", &password)]).unwrap();
        let a = self.post_form("/login", None, &form).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
        let cookie = a
            .headers
            .get(header::SET_COOKIE)
            .expect("a session cookie")
            .to_str()
            .unwrap()
            .to_string();
        for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(cookie.contains(attr), "{cookie}");
        }
        let secret = cookie
            .strip_prefix("__Host-portcullis-session=")
            .and_then(|c| c.split(';').next())
            .expect("cookie value")
            .to_string();
        let csrf = self
            .ops
            .session(&secret)
            .await
            .expect("session lookup")
            .expect("session")
            .csrf;
        Session { secret, csrf }
    }
}

struct Session {
    secret: String,
    csrf: String,
}

impl Session {
    fn cookie(&self) -> String {
        format!("__Host-portcullis-session={}", self.secret)
    }
}

#[tokio::test]
async fn every_answer_has_the_security_headers() {
    let app = app().await;
    for path in [
        "/login",
        "/api/v1/messages",
        "/messages",
        "/nowhere",
        "/api",
    ] {
        let a = app.get(path, None).await;
        let h = |n: &str| {
            a.headers
                .get(n)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        assert_eq!(
            h("content-security-policy"),
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
            "{path}"
        );
        assert!(
            h("strict-transport-security").starts_with("max-age="),
            "{path}"
        );
        assert_eq!(h("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(h("referrer-policy"), "no-referrer", "{path}");
    }
}

#[tokio::test]
async fn unauthenticated_pages_redirect_and_api_calls_get_401() {
    let app = app().await;
    let a = app.get("/messages", None).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.headers.get(header::LOCATION).unwrap(), "/login");
    let a = app.get("/api/v1/quarantine", None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let v: serde_json::Value = serde_json::from_str(&a.body).expect("JSON");
    assert_eq!(v["error"]["code"], "unauthorized");
    // A session that does not exist is no session.
    let fake = Session {
        secret: "not-a-session".into(),
        csrf: String::new(),
    };
    let a = app.get("/api/v1/messages", Some(&fake)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // Nor is a bearer token that does not exist.
    let req = Request::get("/api/v1/messages")
        .header(header::AUTHORIZATION, "Bearer nope")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_wrong_password_is_refused() {
    let app = app().await;
    app.ops.bootstrap_admin().await.unwrap();
    let a = app
        .post_form("/login", None, "username=admin&password=wrong-password")
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.headers.get(header::SET_COOKIE).is_none());
    assert!(a.body.contains("id=\"login-error\""), "{}", a.body);
}

#[tokio::test]
async fn state_changes_need_the_csrf_token() {
    let app = app().await;
    let s = app.login().await;
    let a = app.post_form("/rules/delete", Some(&s), "name=x").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = app
        .post_form("/rules/delete", Some(&s), "name=x&csrf=wrong")
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let req = Request::builder()
        .method(Method::DELETE)
        .uri("/api/v1/rules/x")
        .header(header::COOKIE, s.cookie())
        .header("x-csrf-token", "wrong")
        .body(Body::empty())
        .unwrap();
    let a = app.send(req).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let v: serde_json::Value = serde_json::from_str(&a.body).expect("JSON");
    assert_eq!(v["error"]["code"], "forbidden");
    // With the token the request goes through to the operation (no such rule).
    let form = format!("name=x&csrf={}", s.csrf);
    let a = app.post_form("/rules/delete", Some(&s), &form).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
    let req = Request::builder()
        .method(Method::DELETE)
        .uri("/api/v1/rules/x")
        .header(header::COOKIE, s.cookie())
        .header("x-csrf-token", &s.csrf)
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn errors_have_one_json_shape() {
    let app = app().await;
    let s = app.login().await;
    let a = app.get("/api/v1/messages/nope", Some(&s)).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let v: serde_json::Value = serde_json::from_str(&a.body).expect("JSON");
    assert_eq!(v["error"]["code"], "not_found");
    assert!(v["error"]["message"].as_str().unwrap().contains("nope"));
    assert!(v["error"]["field"].is_null());
    let a = app
        .get("/api/v1/messages?direction=sideways", Some(&s))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let v: serde_json::Value = serde_json::from_str(&a.body).expect("JSON");
    assert_eq!(v["error"]["code"], "invalid");
    assert_eq!(v["error"]["field"], "direction");
}

#[tokio::test]
async fn bearer_tokens_need_no_csrf_token() {
    let app = app().await;
    app.ops.bootstrap_admin().await.unwrap();
    let admin = app.ops.acting_as(portcullis_ops::Actor {
        name: "admin".into(),
        role: Role::Admin,
        domains: Vec::new(),
        address: String::new(),
        read_only: false,
        via: portcullis_ops::Via::Api,
        remote: None,
    });
    let (_, secret) = admin
        .token_create(&TokenSpec {
            name: "ci".into(),
            role: Role::Admin,
            domains: Vec::new(),
            read_only: false,
            expires: None,
        })
        .await
        .expect("token");
    let req = Request::get("/api/v1/messages?limit=5")
        .header(header::AUTHORIZATION, format!("Bearer {secret}"))
        .body(Body::empty())
        .unwrap();
    let a = app.send(req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["limit"], 5);
    let req = Request::post("/api/v1/networks")
        .header(header::AUTHORIZATION, format!("Bearer {secret}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"cidr":"10.0.0.0/8","comment":"office"}"#))
        .unwrap();
    let a = app.send(req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    // The policy document goes out and comes back in, larger than the usual body limit
    // allows for other requests.
    let req = Request::get("/api/v1/policy")
        .header(header::AUTHORIZATION, format!("Bearer {secret}"))
        .body(Body::empty())
        .unwrap();
    let doc = app.send(req).await;
    assert_eq!(doc.status, StatusCode::OK, "{}", doc.body);
    assert!(doc.body.contains("10.0.0.0/8"), "{}", doc.body);
    let padded = format!("{}\n{}", doc.body, "# padding\n".repeat(150_000));
    let req = Request::put("/api/v1/policy")
        .header(header::AUTHORIZATION, format!("Bearer {secret}"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(padded))
        .unwrap();
    let a = app.send(req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["networks"], 1);
}

#[tokio::test]
async fn the_openapi_document_lists_the_paths() {
    let app = app().await;
    let a = app.get("/api/v1/openapi.json", None).await;
    assert_eq!(a.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&a.body).expect("JSON");
    assert!(
        v["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        v["openapi"]
    );
    for path in [
        "/api/v1/messages",
        "/api/v1/messages/{id}",
        "/api/v1/quarantine",
        "/api/v1/quarantine/{id}/release",
        "/api/v1/queue",
        "/api/v1/domains",
        "/api/v1/rules",
        "/api/v1/tokens",
        "/api/v1/audit",
    ] {
        assert!(v["paths"].get(path).is_some(), "{path} missing");
    }
    let page = app.get("/api", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("/api/v1/quarantine/{id}/release"));
    assert!(!page.body.contains("<script"));
}

const EVIL: &str = "<script>alert(1)</script>";

/// Hold a message for `rcpt` whose subject, From display name, attachment name and HTML
/// carry a script; the item's id.
async fn hold(store: &Store, id: &str, rcpt: &str) -> String {
    let body = format!(
        "From: \"{EVIL}\" <evil@example.net>\r\nTo: {rcpt}\r\nSubject: {EVIL}\r\n\
         Message-ID: <{id}@example.net>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
         Content-Type: text/html\r\n\r\n<p>hi</p>{EVIL}<img src=\"https://tracker.example/x.png\">\r\n\
         --b\r\nContent-Type: application/octet-stream\r\n\
         Content-Disposition: attachment; filename=\"{EVIL}.html\"\r\n\r\nAAAA\r\n--b--\r\n"
    );
    let mut envelope = Envelope::notice(
        id.to_string(),
        "gw.test",
        Direction::Inbound,
        &[rcpt.to_string()],
    );
    envelope.sender = "evil@example.net".into();
    store
        .quarantine_hold(&HeldMessage {
            id: id.to_string(),
            received_at: now(),
            expires_at: now() + 86400,
            sender: "evil@example.net".into(),
            subject: Some(EVIL.into()),
            class: "spam".into(),
            score: 9.5,
            rule: Some("spam".into()),
            findings: r#"[{"name":"spam.bayes","score":9.5,"detail":"<b>x</b>"}]"#.into(),
            envelope: serde_json::to_string(&envelope).unwrap(),
            body: body.into_bytes(),
            recipients: vec![rcpt.to_string()],
            direction: "inbound".into(),
        })
        .await
        .expect("hold");
    format!("{id}.1")
}

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
        .get("/api/v1/messages?client_ip=192.0.2&limit=10", Some(&s))
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
async fn a_session_ends_at_logout() {
    let app = app().await;
    let s = app.login().await;
    assert_eq!(app.get("/account", Some(&s)).await.status, StatusCode::OK);
    let form = format!("csrf={}", s.csrf);
    let a = app.post_form("/logout", Some(&s), &form).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert!(
        a.headers
            .get(header::SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        app.get("/account", Some(&s)).await.status,
        StatusCode::SEE_OTHER
    );
    let _ = Login::NeedTotp;
}

/// The value of the first `name="..." value="..."` hidden field, or the text of an element
/// by id, in a page.
fn between<'a>(page: &'a str, start: &str, end: &str) -> &'a str {
    let from = page.find(start).map(|i| i + start.len()).expect(start);
    let len = page[from..].find(end).expect(end);
    &page[from..from + len]
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
    let password = "a long enough passphrase";
    app.ops
        .acting_as(portcullis_ops::Actor::cli())
        .account_add("helen", Role::Helpdesk, &[], password)
        .await
        .unwrap();
    let item = hold(app.ops.store(), "GH78", "dan@example.com").await;
    let form =
        serde_urlencoded::to_string([("username", "helen"), ("password", password)]).unwrap();
    let a = app.post_form("/login", None, &form).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let cookie = a.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    let secret = between(cookie, "__Host-portcullis-session=", ";").to_string();
    let csrf = app.ops.session(&secret).await.unwrap().unwrap().csrf;
    let s = Session { secret, csrf };

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
async fn bodies_are_limited() {
    let app = app().await;
    let s = app.login().await;
    let big = format!("csrf={}&rules={}", s.csrf, "x".repeat(2 * 1024 * 1024));
    let a = app.post_form("/rules", Some(&s), &big).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
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
}
