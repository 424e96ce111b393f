//! The queue: what waits for delivery, with hold, release, retry and delete.

use super::field;
use crate::api::queue::{change, queue_items};
use crate::auth::Caller;
use crate::view::{Layout, PageResult, html, message_page, size, time};
use askama::Template;
use axum::extract::Query;
use axum::response::{IntoResponse, Redirect};
use axum::{Extension, Form};

struct Row {
    id: String,
    received: String,
    sender: String,
    recipients: String,
    size: String,
    attempts: u32,
    next: String,
    held: bool,
    reply: String,
}

#[derive(Template)]
#[template(path = "queue.html")]
struct Page {
    l: Layout,
    rows: Vec<Row>,
    done: String,
}

#[derive(serde::Deserialize)]
pub struct Done {
    done: Option<String>,
}

pub async fn list(Extension(caller): Extension<Caller>, Query(d): Query<Done>) -> PageResult {
    let items = match queue_items(&caller.ops) {
        Ok(items) => items,
        Err(e) => return Ok((e.status, html(message_page("Queue", &e.message))).into_response()),
    };
    let rows = items
        .into_iter()
        .map(|i| Row {
            received: time(i.received_at),
            sender: if i.sender.is_empty() {
                "<>".into()
            } else {
                i.sender
            },
            recipients: i.recipients.join(", "),
            size: size(i.size as i64),
            attempts: i.attempts,
            next: time(i.next_attempt),
            held: i.held,
            reply: i.last_reply.unwrap_or_default(),
            id: i.id,
        })
        .collect();
    Ok(html(
        Page {
            l: caller.layout("Queue"),
            rows,
            done: d.done.unwrap_or_default(),
        }
        .render(),
    ))
}

pub async fn act(
    Extension(caller): Extension<Caller>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let said = match change(&caller.ops, field(&form, "action"), field(&form, "id")).await {
        Ok(s) if s.is_empty() => "done".to_string(),
        Ok(s) => s,
        Err(e) => e.message,
    };
    let target = format!(
        "/queue?{}",
        serde_urlencoded::to_string([("done", said)]).unwrap_or_default()
    );
    Ok(Redirect::to(&target).into_response())
}
