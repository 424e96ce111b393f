//! Message tracking: the search form with its results, and one message's whole story on
//! one screen, from the client that sent it to the last reply of the server it went to.

use crate::api::messages::Search;
use crate::auth::Caller;
use crate::view::{Layout, PageError, PageResult, html, size, time};
use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use portcullis_ops::tracking::{Finding, MessageStory};
use portcullis_store::MessageRecord;

struct Row {
    id: String,
    received: String,
    direction: String,
    sender: String,
    recipients: String,
    subject: String,
    verdict: String,
    status: String,
}

fn row(m: &MessageRecord) -> Row {
    let mut statuses: Vec<&str> = m.recipients.iter().map(|r| r.status.as_str()).collect();
    statuses.dedup();
    Row {
        id: m.id.clone(),
        received: time(m.received_at),
        direction: m.direction.clone(),
        sender: if m.sender.is_empty() {
            "<>".into()
        } else {
            m.sender.clone()
        },
        recipients: m
            .recipients
            .iter()
            .map(|r| r.address.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        subject: m.subject.clone().unwrap_or_default(),
        verdict: m.verdict.clone().unwrap_or_default(),
        status: statuses.join(", "),
    }
}

#[derive(Template)]
#[template(path = "messages.html")]
struct SearchPage {
    l: Layout,
    q: SearchForm,
    verdicts: Vec<(&'static str, bool)>,
    rows: Vec<Row>,
    error: String,
    prev: String,
    next: String,
}

/// The form's values, as typed.
#[derive(Default)]
struct SearchForm {
    q: String,
    sender: String,
    recipient: String,
    subject: String,
    message_id: String,
    client_ip: String,
    verdict: String,
    direction: String,
    since: String,
    until: String,
}

fn s(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

fn query_string(q: &Search, offset: i64) -> String {
    let mut pairs: Vec<(&str, String)> = [
        ("q", &q.q),
        ("sender", &q.sender),
        ("recipient", &q.recipient),
        ("subject", &q.subject),
        ("message_id", &q.message_id),
        ("client_ip", &q.client_ip),
        ("verdict", &q.verdict),
        ("direction", &q.direction),
        ("since", &q.since),
        ("until", &q.until),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.clone().filter(|v| !v.is_empty()).map(|v| (k, v)))
    .collect();
    pairs.push(("offset", offset.to_string()));
    pairs.push(("limit", q.paging().limit().to_string()));
    format!(
        "/messages?{}",
        serde_urlencoded::to_string(&pairs).unwrap_or_default()
    )
}

pub async fn search(Extension(caller): Extension<Caller>, Query(q): Query<Search>) -> PageResult {
    let form = SearchForm {
        q: s(&q.q),
        sender: s(&q.sender),
        recipient: s(&q.recipient),
        subject: s(&q.subject),
        message_id: s(&q.message_id),
        client_ip: s(&q.client_ip),
        verdict: s(&q.verdict),
        direction: s(&q.direction),
        since: s(&q.since),
        until: s(&q.until),
    };
    let paging = q.paging();
    let (rows, more, error) = match q.filter() {
        Ok(filter) => {
            let page = caller.ops.log_search_page(&filter).await?;
            (
                page.messages.iter().map(row).collect::<Vec<_>>(),
                page.more,
                String::new(),
            )
        }
        Err(e) => (Vec::new(), false, e.message),
    };
    let prev = if paging.offset() > 0 {
        query_string(&q, (paging.offset() - paging.limit()).max(0))
    } else {
        String::new()
    };
    let next = if more {
        query_string(&q, paging.offset() + paging.limit())
    } else {
        String::new()
    };
    let status = if error.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let verdicts = ["deliver", "reject", "tempfail", "discard", "quarantine"]
        .into_iter()
        .map(|v| (v, form.verdict == v))
        .collect();
    let page = SearchPage {
        l: caller.layout("Messages"),
        verdicts,
        q: form,
        rows,
        error,
        prev,
        next,
    };
    Ok((status, html(page.render())).into_response())
}

struct RecipientView {
    address: String,
    status: String,
    attempts: i64,
    remote_host: String,
    reply: String,
    updated: String,
}

#[derive(Template)]
#[template(path = "message.story.html")]
struct StoryPage {
    l: Layout,
    m: MessageStory,
    received: String,
    size: String,
    sender: String,
    findings: Vec<Finding>,
    ptr: String,
    tls: String,
    recipients: Vec<RecipientView>,
    next_attempt: String,
}

pub async fn show(Extension(caller): Extension<Caller>, Path(id): Path<String>) -> PageResult {
    let m = caller.ops.message_story(&id).await.map_err(PageError)?;
    let mut findings = m.findings.clone();
    findings.sort_by(|a, b| b.score.abs().total_cmp(&a.score.abs()));
    let about = |prefixes: &[&str]| {
        m.findings
            .iter()
            .filter(|f| prefixes.iter().any(|p| f.name.starts_with(p)))
            .map(|f| format!("{}: {}", f.name, f.detail))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let ptr = match about(&["fcrdns", "ptr"]) {
        s if s.is_empty() => "no finding (forward-confirmed, or not checked)".to_string(),
        s => s,
    };
    let tls = match about(&["tls"]) {
        s if s.is_empty() => "not recorded".to_string(),
        s => s,
    };
    let r = &m.record;
    let recipients = r
        .recipients
        .iter()
        .map(|x| RecipientView {
            address: x.address.clone(),
            status: x.status.clone(),
            attempts: x.attempts,
            remote_host: x.remote_host.clone().unwrap_or_default(),
            reply: x.reply.clone().unwrap_or_default(),
            updated: time(x.updated_at),
        })
        .collect();
    let page = StoryPage {
        l: caller.layout(&format!("Message {}", r.id)),
        received: time(r.received_at),
        size: size(r.size),
        sender: if r.sender.is_empty() {
            "<> (null sender)".into()
        } else {
            r.sender.clone()
        },
        findings,
        ptr,
        tls,
        recipients,
        next_attempt: m
            .queue
            .as_ref()
            .map(|q| time(q.next_attempt))
            .unwrap_or_default(),
        m,
    };
    Ok(html(page.render()))
}
