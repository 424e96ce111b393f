//! The console and API in process, on an in-memory store: the router is driven request by
//! request (`tower::ServiceExt::oneshot`), as a browser or a client would, without sockets.
//! Here: headers, authentication, CSRF, errors, tokens, the OpenAPI document, limits.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::*;
use portcullis_ops::Role;
use portcullis_ops::accounts::TokenSpec;

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
async fn health_is_open_and_metrics_are_for_whole_gateway_roles() {
    let plain = app().await;
    let ops = plain.ops.clone().with_metrics(std::sync::Arc::new(|| {
        "portcullis_smtp_connections_total{listener=\"smtp\"} 3\n".to_string()
    }));
    let app = App {
        router: portcullis_web::router(ops.clone()),
        ops,
    };
    let a = app.get("/health/live", None).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (StatusCode::OK, r#"{"status":"live"}"#)
    );
    // No spool yet under the data directory: not ready, and why.
    let a = app.get("/health/ready", None).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    let v: serde_json::Value = serde_json::from_str(&a.body).expect("JSON");
    assert_eq!(v["status"], "unavailable");
    assert!(v["reason"].as_str().unwrap().starts_with("spool: "), "{v}");
    std::fs::create_dir_all(app.ops.config().data_dir.join("spool/tmp")).expect("spool");
    let a = app.get("/health/ready", None).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (StatusCode::OK, r#"{"status":"ready"}"#)
    );

    // A scraper without credentials gets 401 JSON, not the login page.
    let a = app.get("/metrics", None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let admin = app.login().await;
    let a = app.get("/metrics", Some(&admin)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    assert_eq!(
        a.body,
        "portcullis_smtp_connections_total{listener=\"smtp\"} 3\n"
    );
    let desk = app
        .login_as("desk@example.com", portcullis_ops::Role::Helpdesk, &[])
        .await;
    let a = app.get("/metrics", Some(&desk)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // Without a renderer (not a running gateway), an administrator hears why.
    // (The same store: the administrator's session holds there too.)
    assert_eq!(
        plain.get("/metrics", Some(&admin)).await.status,
        StatusCode::CONFLICT
    );
}
