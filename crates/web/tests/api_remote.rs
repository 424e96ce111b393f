//! The endpoints the remote command line (`portcullis --url`) needs beyond the console's:
//! content lists, a token for another account, the role checks on both.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use portcullis_ops::accounts::TokenSpec;
use portcullis_ops::{Actor, Ops, Role, Via};

fn admin(ops: &Ops) -> Ops {
    ops.acting_as(Actor {
        name: "admin".into(),
        role: Role::Admin,
        domains: Vec::new(),
        address: String::new(),
        read_only: false,
        via: Via::Api,
        remote: None,
    })
}

async fn token(ops: &Ops, name: &str, read_only: bool) -> String {
    let spec = TokenSpec {
        name: name.into(),
        role: Role::Admin,
        domains: Vec::new(),
        read_only,
        expires: None,
    };
    admin(ops).token_create(&spec).await.expect("token").1
}

async fn call(app: &App, method: &str, path: &str, secret: &str, json: &str) -> Answer {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {secret}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(if json.is_empty() {
            Body::empty()
        } else {
            Body::from(json.to_string())
        })
        .unwrap();
    app.send(req).await
}

#[tokio::test]
async fn content_lists_are_listed_added_and_removed() {
    let app = app().await;
    app.ops.bootstrap_admin().await.unwrap();
    let secret = token(&app.ops, "rw", false).await;
    let reader = token(&app.ops, "ro", true).await;
    let pattern = r#"{"list":"words","pattern":"cheap pills","score":2.5}"#;

    let a = call(&app, "POST", "/api/v1/content", &reader, pattern).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    let a = call(&app, "POST", "/api/v1/content", &secret, pattern).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = call(&app, "GET", "/api/v1/content", &reader, "").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["items"][0]["pattern"], "cheap pills");
    assert_eq!(v["items"][0]["field"], "any");
    assert_eq!(v["items"][0]["score"], 2.5);

    let bad = r#"{"list":"words","pattern":"(","regex":true,"score":1}"#;
    let a = call(&app, "POST", "/api/v1/content", &secret, bad).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);

    let old = r#"{"list":"words","pattern":"cheap pills"}"#;
    let a = call(&app, "DELETE", "/api/v1/content", &secret, old).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = call(&app, "DELETE", "/api/v1/content", &secret, old).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
    let actions: Vec<String> = app
        .ops
        .store()
        .audit_list(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(actions.contains(&"content.add".to_string()), "{actions:?}");
    assert!(
        actions.contains(&"content.remove".to_string()),
        "{actions:?}"
    );
}

#[tokio::test]
async fn a_token_for_another_account_needs_the_right_to_manage_it() {
    let app = app().await;
    app.ops.bootstrap_admin().await.unwrap();
    admin(&app.ops)
        .account_add("helen", Role::Helpdesk, &[], "a long enough passphrase")
        .await
        .unwrap();
    let secret = token(&app.ops, "rw", false).await;
    let body = r#"{"account":"helen","name":"desk","role":"helpdesk"}"#;
    let a = call(&app, "POST", "/api/v1/tokens", &secret, body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["token"]["account"], "helen");
    let desk = v["secret"].as_str().unwrap().to_string();

    // Helen's token may not make one for the administrator.
    let body = r#"{"account":"admin","name":"up","role":"helpdesk"}"#;
    let a = call(&app, "POST", "/api/v1/tokens", &desk, body).await;
    assert!(
        matches!(a.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
        "{} {}",
        a.status,
        a.body
    );
}
