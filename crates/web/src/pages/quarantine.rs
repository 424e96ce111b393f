//! The quarantine: held copies with filters and bulk actions, one copy with its findings
//! and a safe preview (escaped headers and text; HTML sanitized, in a sandboxed frame whose
//! policy loads nothing), its raw source as text on request, and release / delete /
//! release-and-allow.

use super::field;
use crate::api::quarantine::{Action, Filter, raw_response};
use crate::auth::Caller;
use crate::preview::{FRAME_CSP, Preview, frame_document, preview};
use crate::view::{Layout, PageResult, html, message_page, time};
use askama::Template;
use axum::extract::{Path, Query};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use portcullis_ops::tracking::{Finding, findings};

struct Row {
    id: String,
    received: String,
    sender: String,
    recipient: String,
    subject: String,
    class: String,
    score: String,
    state: String,
}

#[derive(Template)]
#[template(path = "quarantine.html")]
struct ListPage {
    l: Layout,
    recipient: String,
    sender: String,
    subject: String,
    class: String,
    states: Vec<(&'static str, bool)>,
    rows: Vec<Row>,
    done: String,
}

#[derive(serde::Deserialize, Default)]
pub struct Done {
    done: Option<String>,
}

pub async fn list(
    Extension(caller): Extension<Caller>,
    Query(f): Query<Filter>,
    Query(d): Query<Done>,
) -> PageResult {
    let page = match f.run(&caller.ops).await {
        Ok(page) => page,
        Err(e) => {
            return Ok((e.status, html(message_page("Quarantine", &e.message))).into_response());
        }
    };
    let state = f.state.clone().unwrap_or_default();
    let rows = page
        .items
        .into_iter()
        .map(|i| Row {
            received: time(i.received_at),
            sender: i.sender,
            recipient: i.recipient,
            subject: i.subject.unwrap_or_default(),
            class: i.class,
            score: format!("{:.1}", i.score),
            state: i.state,
            id: i.id,
        })
        .collect();
    let p = ListPage {
        l: caller.layout("Quarantine"),
        recipient: f.recipient.clone().unwrap_or_default(),
        sender: f.sender.clone().unwrap_or_default(),
        subject: f.subject.clone().unwrap_or_default(),
        class: f.class.clone().unwrap_or_default(),
        states: ["held", "released", "deleted"]
            .into_iter()
            .map(|s| (s, state == s))
            .collect(),
        rows,
        done: d.done.unwrap_or_default(),
    };
    Ok(html(p.render()))
}

fn back(done: &str) -> Response {
    let target = format!(
        "/quarantine?{}",
        serde_urlencoded::to_string([("done", done)]).unwrap_or_default()
    );
    Redirect::to(&target).into_response()
}

/// The 400 page of a form without a known `action`.
fn no_action() -> Response {
    (
        StatusCode::BAD_REQUEST,
        html(message_page(
            "Quarantine",
            "Choose release, release and allow, report spam, or delete.",
        )),
    )
        .into_response()
}

/// The bulk form: every checked `id`, one `action`.
pub async fn bulk(
    Extension(caller): Extension<Caller>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let Some(action) = Action::parse(field(&form, "action")) else {
        return Ok(no_action());
    };
    let ids: Vec<&str> = form
        .iter()
        .filter(|(k, _)| k == "id")
        .map(|(_, v)| v.as_str())
        .collect();
    let (mut ok, mut failed) = (0, Vec::new());
    for id in &ids {
        match action.apply(&caller.ops, id).await {
            Ok(_) => ok += 1,
            Err(e) => failed.push(e.to_string()),
        }
    }
    let mut said = format!("{ok} of {} done", ids.len());
    if !failed.is_empty() {
        said.push_str(&format!("; {}", failed.join("; ")));
    }
    Ok(back(&said))
}

/// One copy's action (the buttons of its row or of its page).
pub async fn act(
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let Some(action) = Action::parse(field(&form, "action")) else {
        return Ok(no_action());
    };
    let said = action.apply(&caller.ops, &id).await?;
    Ok(back(&said))
}

#[derive(Template)]
#[template(path = "quarantine.item.html")]
struct ItemPage {
    l: Layout,
    id: String,
    message: String,
    recipient: String,
    sender: String,
    class: String,
    score: String,
    rule: String,
    state: String,
    received: String,
    expires: String,
    findings: Vec<Finding>,
    p: Preview,
}

pub async fn show(Extension(caller): Extension<Caller>, Path(id): Path<String>) -> PageResult {
    let held = caller.ops.quarantine_show(&id).await?;
    let i = held.item;
    let page = ItemPage {
        l: caller.layout("Quarantined message"),
        id: i.id,
        message: i.message,
        recipient: i.recipient,
        sender: i.sender,
        class: i.class,
        score: format!("{:.1}", i.score),
        rule: i.rule.unwrap_or_default(),
        state: i.state,
        received: time(i.received_at),
        expires: time(i.expires_at),
        findings: findings(Some(&held.findings)),
        p: preview(&held.body),
    };
    Ok(html(page.render()))
}

/// The sanitized HTML body, for the sandboxed frame.
pub async fn frame(Extension(caller): Extension<Caller>, Path(id): Path<String>) -> PageResult {
    let held = caller.ops.quarantine_show(&id).await?;
    let doc = frame_document(preview(&held.body).html.as_deref().unwrap_or(""));
    let mut res = axum::response::Html(doc).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(FRAME_CSP),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    Ok(res)
}

pub async fn raw(Extension(caller): Extension<Caller>, Path(id): Path<String>) -> PageResult {
    let held = caller.ops.quarantine_show(&id).await?;
    Ok(raw_response(held.body))
}
