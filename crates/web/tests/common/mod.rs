//! What the console's tests share: the router on an in-memory store, requests and their
//! answers, a logged-in session, a quarantined message full of markup.

#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use portcullis_gateway::config::Config;
use portcullis_ops::Ops;
use portcullis_queue::spool::{Direction, Envelope, now};
use portcullis_store::{HeldMessage, Store};
use std::path::PathBuf;
use tower::ServiceExt;

pub fn temp_dir() -> PathBuf {
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

pub struct App {
    pub ops: Ops,
    pub router: Router,
}

pub async fn app() -> App {
    let store = Store::open("sqlite::memory:").await.expect("store");
    let mut config = Config {
        data_dir: temp_dir(),
        ..Config::default()
    };
    // Never the machine's resolver from a test: a loopback port where nothing listens.
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    config.dns.nameservers = vec![closed.local_addr().expect("address")];
    config.dns.timeout_secs = 1;
    let ops = Ops::new(store, config);
    App {
        router: portcullis_web::router(ops.clone()),
        ops,
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl App {
    pub async fn send(&self, req: Request<Body>) -> Answer {
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

    pub async fn get(&self, path: &str, session: Option<&Session>) -> Answer {
        let mut req = Request::get(path);
        if let Some(s) = session {
            req = req.header(header::COOKIE, s.cookie());
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    pub async fn post_form(&self, path: &str, session: Option<&Session>, form: &str) -> Answer {
        let mut req =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(s) = session {
            req = req.header(header::COOKIE, s.cookie());
        }
        self.send(req.body(Body::from(form.to_string())).unwrap())
            .await
    }

    /// Log in as the first administrator through the login form.
    pub async fn login(&self) -> Session {
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

    /// An account `name` of `role` (made first, with [`PASSWORD`]) logged in through the
    /// login form.
    pub async fn login_as(
        &self,
        name: &str,
        role: portcullis_ops::Role,
        domains: &[&str],
    ) -> Session {
        let domains: Vec<String> = domains.iter().map(|d| d.to_string()).collect();
        self.ops
            .acting_as(portcullis_ops::Actor::cli())
            .account_add(name, role, &domains, PASSWORD)
            .await
            .expect("account");
        let form =
            serde_urlencoded::to_string([("username", name), ("password", PASSWORD)]).unwrap();
        let a = self.post_form("/login", None, &form).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
        let cookie = a.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
        let secret = between(cookie, "__Host-portcullis-session=", ";").to_string();
        let csrf = self.ops.session(&secret).await.unwrap().unwrap().csrf;
        Session { secret, csrf }
    }
}

/// The password of the accounts [`App::login_as`] makes.
pub const PASSWORD: &str = "a long enough passphrase";

pub struct Session {
    pub secret: String,
    pub csrf: String,
}

impl Session {
    pub fn cookie(&self) -> String {
        format!("__Host-portcullis-session={}", self.secret)
    }

    /// A form body with this session's CSRF token and `fields`.
    pub fn form(&self, fields: &[(&str, &str)]) -> String {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(fields);
        serde_urlencoded::to_string(all).unwrap()
    }
}

pub const EVIL: &str = "<script>alert(1)</script>";

/// Hold a message for `rcpt` whose subject, From display name, attachment name and HTML
/// carry a script; the item's id.
pub async fn hold(store: &Store, id: &str, rcpt: &str) -> String {
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

/// The value of the first `name="..." value="..."` hidden field, or the text of an element
/// by id, in a page.
pub fn between<'a>(page: &'a str, start: &str, end: &str) -> &'a str {
    let from = page.find(start).map(|i| i + start.len()).expect(start);
    let len = page[from..].find(end).expect(end);
    &page[from..from + len]
}
