//! Domains and their routes: listed (never a route's AUTH password), added or replaced,
//! removed, and tested: a "test route" button probes every route of a domain and shows
//! the whole SMTP dialogue on the page.

use super::{done_redirect, field};
use crate::auth::Caller;
use crate::view::{Layout, PageResult, html};
use askama::Template;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Form};
use portcullis_ops::policy::RoutesSpec;
use portcullis_ops::route_test::RouteTest;
use portcullis_ops::{Access, Scope};
use portcullis_queue::probe::Side;
use portcullis_store::TLS_MODES;

struct RouteRow {
    host: String,
    port: u16,
    priority: u32,
    tls: String,
    auth_user: String,
}

struct DomainRow {
    name: String,
    routes: Vec<RouteRow>,
    can_write: bool,
}

struct LineView {
    side: &'static str,
    text: String,
}

struct TestView {
    route: String,
    priority: u32,
    tls_mode: String,
    address: String,
    lines: Vec<LineView>,
    tls: String,
    certificate: String,
    elapsed_ms: u64,
    error: String,
}

/// What the add form held when it is shown again with an error.
#[derive(Default)]
struct Draft {
    name: String,
    routes: String,
    tls: String,
    auth_user: String,
}

#[derive(Template)]
#[template(path = "policy_domains.html")]
struct Page {
    l: Layout,
    section: &'static str,
    domains: Vec<DomainRow>,
    may_add: bool,
    tls_modes: Vec<&'static str>,
    draft: Draft,
    error: String,
    done: String,
    tested: String,
    tests: Vec<TestView>,
}

#[derive(serde::Deserialize)]
pub struct Done {
    done: Option<String>,
}

fn test_view(t: RouteTest) -> TestView {
    let r = t.report;
    let (tls, certificate) = match &r.tls {
        Some(f) => (
            format!("{} {}", f.version, f.cipher),
            format!(
                "{} (issuer {}){}",
                f.subject,
                f.issuer,
                if f.verified {
                    ", verified"
                } else {
                    ", not verified"
                }
            ),
        ),
        None => (String::new(), String::new()),
    };
    TestView {
        route: format!("{}:{}", r.host, r.port),
        priority: t.priority,
        tls_mode: t.tls_mode,
        address: r.address.map(|a| a.to_string()).unwrap_or_default(),
        lines: r
            .lines
            .into_iter()
            .map(|l| LineView {
                side: match l.side {
                    Side::Client => "client",
                    Side::Server => "server",
                    Side::Note => "note",
                },
                text: l.text,
            })
            .collect(),
        tls,
        certificate,
        elapsed_ms: r.elapsed_ms,
        error: r.error.unwrap_or_default(),
    }
}

async fn render(
    caller: &Caller,
    draft: Draft,
    error: String,
    done: String,
    tested: String,
    tests: Vec<RouteTest>,
) -> PageResult {
    let actor = caller.ops.actor();
    let domains = caller
        .ops
        .list_domains()
        .await?
        .into_iter()
        .map(|d| DomainRow {
            can_write: actor.may(Access::WritePolicy, &Scope::domain(&d.name)),
            routes: d
                .routes
                .into_iter()
                .map(|r| RouteRow {
                    host: r.host,
                    port: r.port,
                    priority: r.priority,
                    tls: r.tls,
                    auth_user: r.auth_user.unwrap_or_default(),
                })
                .collect(),
            name: d.name,
        })
        .collect();
    // An administrator adds any domain, a domain-admin (re)writes the routes of its own.
    let may_add = actor.may(Access::WritePolicy, &Scope::Global)
        || actor
            .domains
            .iter()
            .any(|d| actor.may(Access::WritePolicy, &Scope::domain(d)));
    let status = if error.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let page = Page {
        l: caller.layout("Domains and routes"),
        section: "domains",
        domains,
        may_add,
        tls_modes: TLS_MODES.to_vec(),
        draft,
        error,
        done,
        tested,
        tests: tests.into_iter().map(test_view).collect(),
    };
    Ok((status, html(page.render())).into_response())
}

pub async fn page(Extension(caller): Extension<Caller>, Query(d): Query<Done>) -> PageResult {
    let done = d.done.unwrap_or_default();
    render(
        &caller,
        Draft::default(),
        String::new(),
        done,
        String::new(),
        Vec::new(),
    )
    .await
}

pub async fn add(
    Extension(caller): Extension<Caller>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let draft = Draft {
        name: field(&form, "name").trim().to_string(),
        routes: field(&form, "routes").to_string(),
        tls: field(&form, "tls").to_string(),
        auth_user: field(&form, "auth_user").trim().to_string(),
    };
    let password = field(&form, "auth_password");
    let spec = RoutesSpec {
        routes: draft
            .routes
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect(),
        tls: if draft.tls.is_empty() {
            "may".into()
        } else {
            draft.tls.clone()
        },
        auth_user: Some(draft.auth_user.clone()).filter(|u| !u.is_empty()),
        auth_password: Some(password.to_string()).filter(|p| !p.is_empty()),
    };
    match caller.ops.add_domain(&draft.name, &spec).await {
        Ok(name) => Ok(done_redirect(
            "/policy/domains",
            &format!("domain {name} saved"),
        )),
        Err(e) if e.status() == 400 => {
            render(
                &caller,
                draft,
                e.to_string(),
                String::new(),
                String::new(),
                Vec::new(),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn remove(
    Extension(caller): Extension<Caller>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let name = field(&form, "name");
    caller.ops.remove_domain(name).await?;
    Ok(done_redirect(
        "/policy/domains",
        &format!("domain {name} removed"),
    ))
}

pub async fn test(
    Extension(caller): Extension<Caller>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let name = field(&form, "name").to_string();
    let tests = caller.ops.test_route(&name).await?;
    render(
        &caller,
        Draft::default(),
        String::new(),
        String::new(),
        name,
        tests,
    )
    .await
}
