//! The one-click links of quarantine digests (`<portal_url>/<action>?t=<token>`, or
//! `/q/<token>`). Opening a link (GET) only shows what it will do and asks to confirm;
//! the confirming form (POST) acts, as the gateway itself on the strength of the signed
//! token. Link scanners that fetch every URL of a mail so release nothing.

use crate::AppState;
use crate::auth::client_ip;
use crate::view::{Layout, html, message_page};
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use portcullis_filter::token::LinkAction;
use portcullis_gateway::digest::FREQUENCIES;
use portcullis_ops::Actor;
use portcullis_ops::digests::Redeemed;
use serde::Deserialize;

#[derive(Deserialize)]
pub struct LinkQuery {
    t: Option<String>,
}

/// The token of a link: the query's `t` (digest links name the action in the path), or
/// the path itself.
fn token(segment: String, q: LinkQuery) -> String {
    q.t.filter(|t| !t.is_empty()).unwrap_or(segment)
}

/// One copy as the confirmation page lists it.
struct Listed {
    id: String,
    sender: String,
    subject: String,
    state: String,
}

#[derive(Template)]
#[template(path = "digest.html")]
struct ConfirmPage {
    l: Layout,
    action: &'static str,
    verb: &'static str,
    recipient: String,
    items: Vec<Listed>,
    /// The settings link: the recipient's frequency now, and the choices.
    frequency: Option<String>,
    frequencies: Vec<String>,
    token: String,
}

fn invalid_link() -> Response {
    (
        StatusCode::BAD_REQUEST,
        html(message_page(
            "Link not valid",
            "This link is not valid or has expired. Ask your administrator to release the message.",
        )),
    )
        .into_response()
}

async fn confirm(
    State(state): State<AppState>,
    Path(segment): Path<String>,
    Query(q): Query<LinkQuery>,
) -> Response {
    let token = token(segment, q);
    let Ok(link) = state.ops.digest_link(&token).await else {
        return invalid_link();
    };
    let (action, verb, title) = match link.action {
        LinkAction::Release => ("release", "Deliver this message", "Quarantined message"),
        LinkAction::AllowSender => (
            "allow",
            "Deliver this message and always accept its sender",
            "Quarantined message",
        ),
        LinkAction::Delete => ("delete", "Delete this message", "Quarantined message"),
        LinkAction::ReleaseAll => (
            "release-all",
            "Deliver every message still held",
            "Quarantined messages",
        ),
        LinkAction::Settings => ("settings", "Save", "Quarantine digests"),
    };
    let frequency = match link.action {
        LinkAction::Settings => match state.ops.digest_frequency(&link.recipient).await {
            Ok(f) => Some(f),
            Err(_) => return invalid_link(),
        },
        _ => None,
    };
    let page = ConfirmPage {
        l: Layout::anonymous(title),
        action,
        verb,
        recipient: link.recipient,
        items: link
            .items
            .into_iter()
            .map(|i| Listed {
                id: i.id,
                sender: i.sender,
                subject: i.subject.unwrap_or_default(),
                state: i.state,
            })
            .collect(),
        frequency,
        frequencies: FREQUENCIES.iter().map(|(n, _)| n.to_string()).collect(),
        token,
    };
    html(page.render())
}

#[derive(Deserialize)]
struct ConfirmForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    frequency: Option<String>,
}

async fn act(
    State(state): State<AppState>,
    Path(segment): Path<String>,
    Query(q): Query<LinkQuery>,
    req: Request,
) -> Response {
    let mut actor = Actor::system("digest-link");
    actor.remote = client_ip(&req);
    let form =
        match <axum::Form<ConfirmForm> as axum::extract::FromRequest<()>>::from_request(req, &())
            .await
        {
            Ok(axum::Form(f)) => f,
            Err(_) => ConfirmForm {
                token: String::new(),
                frequency: None,
            },
        };
    let token = if form.token.is_empty() {
        token(segment, q)
    } else {
        form.token
    };
    let ops = state.ops.acting_as(actor);
    let done = match form.frequency {
        Some(f) => ops
            .digest_frequency_by_link(&token, &f)
            .await
            .map(|rcpt| message_page("Saved", &format!("Quarantine digests for {rcpt}: {f}."))),
        None => ops.quarantine_redeem(&token).await.map(|r| match r {
            Redeemed::Released(..) => message_page(
                "Released",
                "The message was released and is on its way to your mailbox.",
            ),
            Redeemed::Deleted(_) => message_page("Deleted", "The message was deleted."),
            Redeemed::ReleasedAll(released, gone) => message_page(
                "Released",
                &if gone == 0 {
                    format!("{} messages were released and are on their way to your mailbox.", released.len())
                } else {
                    format!(
                        "{} messages were released and are on their way to your mailbox; {gone} were no longer held.",
                        released.len()
                    )
                },
            ),
        }),
    };
    match done {
        Ok(page) => html(page),
        Err(e) => {
            let status =
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, html(message_page("Not done", &e.to_string()))).into_response()
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/q/{token}", get(confirm).post(act))
}
