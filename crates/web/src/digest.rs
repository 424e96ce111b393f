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
use portcullis_ops::Actor;
use portcullis_ops::quarantine::Redeemed;
use portcullis_queue::spool::now;
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

#[derive(Template)]
#[template(path = "digest.html")]
struct ConfirmPage {
    l: Layout,
    action: &'static str,
    verb: &'static str,
    sender: String,
    subject: String,
    recipient: String,
    token: String,
}

async fn confirm(
    State(state): State<AppState>,
    Path(segment): Path<String>,
    Query(q): Query<LinkQuery>,
) -> Response {
    let token = token(segment, q);
    let invalid = || {
        (
            StatusCode::BAD_REQUEST,
            html(message_page(
                "Link not valid",
                "This link is not valid or has expired. Ask your administrator to release the message.",
            )),
        )
            .into_response()
    };
    let Ok(signer) = portcullis_gateway::digest::signer(state.ops.store()).await else {
        return invalid();
    };
    let Ok((id, action)) = signer.verify(token.trim(), now()) else {
        return invalid();
    };
    let item = match state.ops.store().quarantine_get(&id).await {
        Ok(Some((item, ..))) => item,
        _ => return invalid(),
    };
    let (action, verb) = match action {
        LinkAction::Release => ("release", "Deliver this message"),
        LinkAction::AllowSender => ("allow", "Deliver this message and always accept its sender"),
        LinkAction::Delete => ("delete", "Delete this message"),
    };
    let page = ConfirmPage {
        l: Layout::anonymous("Quarantined message"),
        action,
        verb,
        sender: item.sender,
        subject: item.subject.unwrap_or_default(),
        recipient: item.recipient,
        token,
    };
    html(page.render())
}

#[derive(Deserialize)]
struct ConfirmForm {
    #[serde(default)]
    token: String,
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
            Ok(axum::Form(f)) => f.token,
            Err(_) => String::new(),
        };
    let token = if form.is_empty() {
        token(segment, q)
    } else {
        form
    };
    match state.ops.acting_as(actor).quarantine_redeem(&token).await {
        Ok(Redeemed::Released(..)) => html(message_page(
            "Released",
            "The message was released and is on its way to your mailbox.",
        )),
        Ok(Redeemed::Deleted(_)) => html(message_page("Deleted", "The message was deleted.")),
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
