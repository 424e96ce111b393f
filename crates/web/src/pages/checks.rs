//! Greylisting, DNSBL/URIBL zones and FCrDNS as the gateway runs them: the configuration
//! file's values, and the keys changed here, which the store keeps over the file's and
//! every node applies within seconds. Each key can be changed, and a changed one given
//! back to the file.

use super::{done_redirect, field};
use crate::auth::Caller;
use crate::view::{Layout, PageResult, html, time};
use askama::Template;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Form};
use portcullis_ops::check_settings::{CheckSettings, Setting, split_name};
use portcullis_ops::{Access, Scope};

/// One key as a row: its value and where it came from.
struct Row {
    key: String,
    /// `greylist.delay_secs`, as the form names it.
    name: String,
    value: String,
    /// Empty: the file's value; else who changed it, and when.
    changed: String,
}

impl Row {
    fn of(s: &Setting) -> Row {
        Row {
            key: s.key.clone(),
            name: format!("{}.{}", s.section, s.name),
            value: s.value.clone(),
            changed: match (&s.changed_by, s.changed_at) {
                (Some(by), Some(at)) => format!("changed by {by}, {}", time(at)),
                _ => String::new(),
            },
        }
    }
}

#[derive(Template)]
#[template(path = "policy_checks.html")]
struct Page {
    l: Layout,
    section: &'static str,
    s: CheckSettings,
    greylist: Vec<Row>,
    dnsbl: Vec<Row>,
    fcrdns: Vec<Row>,
    /// Who changed the zone lists, when they are changed.
    zones_changed: String,
    uribl_changed: String,
    may_change: bool,
    error: String,
    done: String,
}

#[derive(serde::Deserialize)]
pub struct Done {
    done: Option<String>,
}

async fn render(caller: &Caller, error: String, done: String) -> PageResult {
    let s = caller.ops.check_settings().await?;
    let rows = |list: &[Setting]| list.iter().map(Row::of).collect::<Vec<_>>();
    let changed = |key: &str| {
        s.changed
            .iter()
            .find(|o| o.section == "dnsbl" && o.key == key)
            .map(|o| format!("changed by {}, {}", o.changed_by, time(o.changed_at)))
            .unwrap_or_default()
    };
    let page = Page {
        l: caller.layout("Greylisting and DNSBL"),
        section: "checks",
        greylist: rows(&s.greylist),
        dnsbl: rows(&s.dnsbl),
        fcrdns: rows(&s.fcrdns),
        zones_changed: changed("zones"),
        uribl_changed: changed("uribl"),
        may_change: caller.ops.actor().may(Access::WritePolicy, &Scope::Global),
        s,
        done,
        error: error.clone(),
    };
    let status = if error.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok((status, html(page.render())).into_response())
}

pub async fn page(Extension(caller): Extension<Caller>, Query(d): Query<Done>) -> PageResult {
    render(&caller, String::new(), d.done.unwrap_or_default()).await
}

/// `POST /policy/checks`: `action=set` with `name` (`greylist.delay_secs`) and `value`,
/// or `action=reset` with `name`.
pub async fn change(
    Extension(caller): Extension<Caller>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let name = field(&form, "name");
    let outcome = match split_name(name) {
        Err(e) => Err(e),
        Ok((section, key)) => match field(&form, "action") {
            "reset" => caller
                .ops
                .reset_check_setting(section, key)
                .await
                .map(|()| format!("{name} is the configuration file's again")),
            _ => caller
                .ops
                .set_check_setting_text(section, key, field(&form, "value"))
                .await
                .map(|()| format!("{name} changed; every node applies it within seconds")),
        },
    };
    match outcome {
        Ok(said) => Ok(done_redirect("/policy/checks", &said)),
        Err(e) if e.status() == 400 || e.status() == 404 => {
            render(&caller, e.to_string(), String::new()).await
        }
        Err(e) => Err(e.into()),
    }
}
