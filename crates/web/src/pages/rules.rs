//! The rules: listed in order as TOML, added or replaced by pasting TOML (as `portcullis
//! rule add` takes), removed by name, or tried first against a held message (a dry run
//! that saves nothing). Validation errors come back with the text kept.

use super::field;
use crate::auth::Caller;
use crate::view::{Layout, PageResult, html};
use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::{Extension, Form};
use portcullis_ops::filter::DryRun;

struct RuleView {
    name: String,
    toml: String,
}

#[derive(Template)]
#[template(path = "rules.html")]
struct Page {
    l: Layout,
    rules: Vec<RuleView>,
    text: String,
    error: String,
    item: String,
    dry_run: Option<DryRun>,
}

async fn render(caller: &Caller, text: String, error: String) -> PageResult {
    render_with(caller, text, error, String::new(), None).await
}

async fn render_with(
    caller: &Caller,
    text: String,
    error: String,
    item: String,
    dry_run: Option<DryRun>,
) -> PageResult {
    let rules = caller
        .ops
        .list_rules_raw()
        .await?
        .into_iter()
        .map(|v| {
            let name = v
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or("")
                .to_string();
            let mut doc = toml::Table::new();
            let toml = match toml::Value::try_from(&v) {
                Ok(value) => {
                    doc.insert("rule".into(), toml::Value::Array(vec![value]));
                    toml::to_string_pretty(&doc).unwrap_or_default()
                }
                Err(_) => v.to_string(),
            };
            RuleView { name, toml }
        })
        .collect();
    let status = if error.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let page = Page {
        l: caller.layout("Rules"),
        rules,
        text,
        error,
        item,
        dry_run,
    };
    Ok((status, html(page.render())).into_response())
}

pub async fn page(Extension(caller): Extension<Caller>) -> PageResult {
    render(&caller, String::new(), String::new()).await
}

pub async fn save(
    Extension(caller): Extension<Caller>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let text = field(&form, "rules").to_string();
    match caller.ops.add_rules(&text, "the rule form").await {
        Ok(_) => Ok(Redirect::to("/rules").into_response()),
        Err(e) if e.status() == 400 => render(&caller, text, e.to_string()).await,
        Err(e) => Err(e.into()),
    }
}

/// The pasted rules tried against a held copy; nothing is saved.
pub async fn dry_run(
    Extension(caller): Extension<Caller>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let text = field(&form, "rules").to_string();
    let item = field(&form, "item").trim().to_string();
    if item.is_empty() {
        let error = "Name a held message (its id from the quarantine) to try the rules on.";
        return render_with(&caller, text, error.into(), item, None).await;
    }
    match caller.ops.rule_dry_run(&text, "the rule form", &item).await {
        Ok(run) => render_with(&caller, text, String::new(), item, Some(run)).await,
        Err(e) if matches!(e.status(), 400 | 404) => {
            render_with(&caller, text, e.to_string(), item, None).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn delete(
    Extension(caller): Extension<Caller>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    caller.ops.remove_rule(field(&form, "name")).await?;
    Ok(Redirect::to("/rules").into_response())
}
