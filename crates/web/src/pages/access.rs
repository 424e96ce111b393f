//! Who may send through the gateway: internal networks (relay outbound without login)
//! and submission users (SMTP AUTH). Listed, added, removed; the operations layer
//! validates (CIDR syntax, address, password length) and decides who may change what.

use super::{done_redirect, field};
use crate::auth::Caller;
use crate::view::{Layout, PageResult, html};
use askama::Template;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Form};
use portcullis_ops::{Access, Scope};

#[derive(serde::Deserialize)]
pub struct Done {
    done: Option<String>,
}

struct NetworkRow {
    cidr: String,
    comment: String,
}

#[derive(Template)]
#[template(path = "policy_networks.html")]
struct NetworksPage {
    l: Layout,
    section: &'static str,
    networks: Vec<NetworkRow>,
    may_change: bool,
    cidr: String,
    comment: String,
    error: String,
    done: String,
}

fn status(error: &str) -> StatusCode {
    if error.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    }
}

async fn render_networks(
    caller: &Caller,
    cidr: String,
    comment: String,
    error: String,
    done: String,
) -> PageResult {
    let networks = caller
        .ops
        .list_networks()
        .await?
        .into_iter()
        .map(|(net, comment)| NetworkRow {
            cidr: net.to_string(),
            comment,
        })
        .collect();
    let page = NetworksPage {
        l: caller.layout("Internal networks"),
        section: "networks",
        networks,
        may_change: caller.ops.actor().may(Access::WritePolicy, &Scope::Global),
        cidr,
        comment,
        done,
        error: error.clone(),
    };
    Ok((status(&error), html(page.render())).into_response())
}

pub async fn networks(Extension(caller): Extension<Caller>, Query(d): Query<Done>) -> PageResult {
    let done = d.done.unwrap_or_default();
    render_networks(&caller, String::new(), String::new(), String::new(), done).await
}

pub async fn add_network(
    Extension(caller): Extension<Caller>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let cidr = field(&form, "cidr").trim().to_string();
    let comment = field(&form, "comment").trim().to_string();
    match caller.ops.add_network(&cidr, &comment).await {
        Ok(net) => Ok(done_redirect(
            "/policy/networks",
            &format!("network {net} added"),
        )),
        Err(e) if e.status() == 400 => {
            render_networks(&caller, cidr, comment, e.to_string(), String::new()).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn remove_network(
    Extension(caller): Extension<Caller>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let cidr = field(&form, "cidr");
    caller.ops.remove_network(cidr).await?;
    Ok(done_redirect(
        "/policy/networks",
        &format!("network {cidr} removed"),
    ))
}

struct UserRow {
    email: String,
    can_write: bool,
}

#[derive(Template)]
#[template(path = "policy_users.html")]
struct UsersPage {
    l: Layout,
    section: &'static str,
    users: Vec<UserRow>,
    may_add: bool,
    email: String,
    min_password: usize,
    error: String,
    done: String,
}

async fn render_users(caller: &Caller, email: String, error: String, done: String) -> PageResult {
    let actor = caller.ops.actor();
    let scope_of = |u: &str| match u.rsplit_once('@') {
        Some((_, d)) => Scope::domain(d),
        None => Scope::Global,
    };
    let users = caller
        .ops
        .list_users()
        .await?
        .into_iter()
        .map(|u| UserRow {
            can_write: actor.may(Access::WritePolicy, &scope_of(&u)),
            email: u,
        })
        .collect();
    let may_add = actor.may(Access::WritePolicy, &Scope::Global)
        || actor
            .domains
            .iter()
            .any(|d| actor.may(Access::WritePolicy, &Scope::domain(d)));
    let page = UsersPage {
        l: caller.layout("Users"),
        section: "users",
        users,
        may_add,
        email,
        min_password: portcullis_ops::policy::MIN_PASSWORD_LEN,
        done,
        error: error.clone(),
    };
    Ok((status(&error), html(page.render())).into_response())
}

pub async fn users(Extension(caller): Extension<Caller>, Query(d): Query<Done>) -> PageResult {
    let done = d.done.unwrap_or_default();
    render_users(&caller, String::new(), String::new(), done).await
}

pub async fn add_user(
    Extension(caller): Extension<Caller>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let email = field(&form, "email").trim().to_string();
    let password = field(&form, "password");
    if password != field(&form, "password_again") {
        let error = "the two passwords differ".to_string();
        return render_users(&caller, email, error, String::new()).await;
    }
    match caller.ops.add_user(&email, password).await {
        Ok(name) => Ok(done_redirect(
            "/policy/users",
            &format!("user {name} saved"),
        )),
        Err(e) if e.status() == 400 => {
            render_users(&caller, email, e.to_string(), String::new()).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn remove_user(
    Extension(caller): Extension<Caller>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let email = field(&form, "email");
    caller.ops.remove_user(email).await?;
    Ok(done_redirect(
        "/policy/users",
        &format!("user {email} removed"),
    ))
}
