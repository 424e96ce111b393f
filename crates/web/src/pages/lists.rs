//! Allow, block and valid-recipient lists, and content lists (words and patterns with
//! scores): listed with a filter, added, removed. The operations layer checks the values
//! and who may change which list (a domain-admin its domains' entries, a user its own).

use super::{done_redirect, field};
use crate::api::checks::ContentFilter;
use crate::api::policy::ListFilter;
use crate::auth::Caller;
use crate::view::{Layout, PageResult, html};
use askama::Template;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Form};
use portcullis_ops::{Access, Actor, Scope};
use portcullis_store::{ContentRow, LIST_FIELDS, LIST_KINDS, ListEntry};

fn status(error: &str) -> StatusCode {
    if error.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    }
}

struct EntryRow {
    kind: String,
    field: String,
    value: String,
    scope: String,
    comment: String,
    can_write: bool,
}

#[derive(serde::Deserialize, Default)]
pub struct ListQuery {
    kind: Option<String>,
    field: Option<String>,
    q: Option<String>,
    done: Option<String>,
}

#[derive(Template)]
#[template(path = "policy_lists.html")]
struct ListsPage {
    l: Layout,
    section: &'static str,
    entries: Vec<EntryRow>,
    kinds: Vec<&'static str>,
    fields: Vec<&'static str>,
    f_kind: String,
    f_field: String,
    f_q: String,
    may_add: bool,
    draft: EntryRow,
    error: String,
    done: String,
}

async fn render_lists(
    caller: &Caller,
    query: ListQuery,
    draft: EntryRow,
    error: String,
) -> PageResult {
    let actor = caller.ops.actor();
    let filter = ListFilter {
        kind: query.kind.clone(),
        field: query.field.clone(),
        q: query.q.clone(),
    };
    let entries = caller
        .ops
        .list_entries()
        .await?
        .into_iter()
        .filter(|e| filter.keeps(e))
        .map(|e| EntryRow {
            can_write: actor.may(Access::WritePolicy, &Actor::scope_of(&e.scope)),
            kind: e.kind,
            field: e.field,
            value: e.value,
            scope: e.scope,
            comment: e.comment,
        })
        .collect();
    let may_add = !(actor.read_only
        || matches!(
            actor.role,
            portcullis_ops::Role::Helpdesk | portcullis_ops::Role::Auditor
        ));
    let page = ListsPage {
        l: caller.layout("Allow and block lists"),
        section: "lists",
        entries,
        kinds: LIST_KINDS.to_vec(),
        fields: LIST_FIELDS.to_vec(),
        f_kind: query.kind.unwrap_or_default(),
        f_field: query.field.unwrap_or_default(),
        f_q: query.q.unwrap_or_default(),
        may_add,
        draft,
        done: query.done.unwrap_or_default(),
        error: error.clone(),
    };
    Ok((status(&error), html(page.render())).into_response())
}

fn empty_entry() -> EntryRow {
    EntryRow {
        kind: String::new(),
        field: String::new(),
        value: String::new(),
        scope: String::new(),
        comment: String::new(),
        can_write: false,
    }
}

pub async fn lists(Extension(caller): Extension<Caller>, Query(q): Query<ListQuery>) -> PageResult {
    render_lists(&caller, q, empty_entry(), String::new()).await
}

fn entry_of(form: &[(String, String)]) -> ListEntry {
    ListEntry {
        kind: field(form, "kind").trim().to_string(),
        field: field(form, "field").trim().to_string(),
        value: field(form, "value").trim().to_string(),
        scope: field(form, "scope").trim().to_string(),
        comment: field(form, "comment").trim().to_string(),
    }
}

pub async fn add_entry(
    Extension(caller): Extension<Caller>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let e = entry_of(&form);
    match caller.ops.add_list_entry(&e).await {
        Ok(()) => Ok(done_redirect(
            "/policy/lists",
            &format!("{} {} {} added", e.kind, e.field, e.value),
        )),
        Err(err) if err.status() == 400 => {
            let draft = EntryRow {
                kind: e.kind,
                field: e.field,
                value: e.value,
                scope: e.scope,
                comment: e.comment,
                can_write: false,
            };
            render_lists(&caller, ListQuery::default(), draft, err.to_string()).await
        }
        Err(err) => Err(err.into()),
    }
}

pub async fn remove_entry(
    Extension(caller): Extension<Caller>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let e = entry_of(&form);
    caller.ops.remove_list_entry(&e).await?;
    Ok(done_redirect(
        "/policy/lists",
        &format!("{} {} {} removed", e.kind, e.field, e.value),
    ))
}

struct ContentView {
    list: String,
    pattern: String,
    field: String,
    regex: bool,
    score: f64,
}

#[derive(serde::Deserialize, Default)]
pub struct ContentQuery {
    list: Option<String>,
    q: Option<String>,
    done: Option<String>,
}

#[derive(Template)]
#[template(path = "policy_content.html")]
struct ContentPage {
    l: Layout,
    section: &'static str,
    rows: Vec<ContentView>,
    names: Vec<String>,
    fields: Vec<&'static str>,
    f_list: String,
    f_q: String,
    may_change: bool,
    draft: ContentView,
    error: String,
    done: String,
}

const CONTENT_FIELDS: [&str; 4] = ["any", "subject", "body", "headers"];

async fn render_content(
    caller: &Caller,
    query: ContentQuery,
    draft: ContentView,
    error: String,
) -> PageResult {
    let all = caller.ops.list_content().await?;
    let mut names: Vec<String> = all.iter().map(|r| r.list.clone()).collect();
    names.sort();
    names.dedup();
    let filter = ContentFilter {
        list: query.list.clone(),
        q: query.q.clone(),
    };
    let rows = all
        .into_iter()
        .filter(|r| filter.keeps(r))
        .map(|r| ContentView {
            list: r.list,
            pattern: r.pattern,
            field: r.field,
            regex: r.regex,
            score: r.score,
        })
        .collect();
    let page = ContentPage {
        l: caller.layout("Content lists"),
        section: "content",
        rows,
        names,
        fields: CONTENT_FIELDS.to_vec(),
        f_list: query.list.unwrap_or_default(),
        f_q: query.q.unwrap_or_default(),
        may_change: caller.ops.actor().may(Access::WritePolicy, &Scope::Global),
        draft,
        done: query.done.unwrap_or_default(),
        error: error.clone(),
    };
    Ok((status(&error), html(page.render())).into_response())
}

pub async fn content(
    Extension(caller): Extension<Caller>,
    Query(q): Query<ContentQuery>,
) -> PageResult {
    let draft = ContentView {
        list: String::new(),
        pattern: String::new(),
        field: "any".into(),
        regex: false,
        score: 1.0,
    };
    render_content(&caller, q, draft, String::new()).await
}

pub async fn add_content(
    Extension(caller): Extension<Caller>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let score_text = field(&form, "score").trim();
    let draft = ContentView {
        list: field(&form, "list").trim().to_string(),
        pattern: field(&form, "pattern").to_string(),
        field: field(&form, "field").trim().to_string(),
        regex: field(&form, "regex") == "on",
        score: score_text.parse().unwrap_or(0.0),
    };
    if score_text.parse::<f64>().is_err() || draft.list.is_empty() || draft.pattern.is_empty() {
        let error = "give a list name, a pattern and a score (a number such as 2.5)".to_string();
        return render_content(&caller, ContentQuery::default(), draft, error).await;
    }
    let row = ContentRow {
        list: draft.list.clone(),
        pattern: draft.pattern.clone(),
        field: draft.field.clone(),
        regex: draft.regex,
        score: draft.score,
    };
    match caller.ops.add_content(&row).await {
        Ok(()) => Ok(done_redirect(
            "/policy/content",
            &format!("pattern added to {}", row.list),
        )),
        Err(e) if e.status() == 400 => {
            render_content(&caller, ContentQuery::default(), draft, e.to_string()).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn remove_content(
    Extension(caller): Extension<Caller>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let list = field(&form, "list");
    caller
        .ops
        .remove_content(list, field(&form, "pattern"), field(&form, "field"))
        .await?;
    Ok(done_redirect(
        "/policy/content",
        &format!("pattern removed from {list}"),
    ))
}
