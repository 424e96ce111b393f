//! Greylisting, DNSBL/URIBL zones and FCrDNS as this node runs them. They are settings of
//! the configuration file, not policy in the store, so the page shows them read-only with
//! the file and the key that sets each one.

use crate::auth::Caller;
use crate::view::{Layout, PageResult, html};
use askama::Template;
use axum::Extension;
use portcullis_ops::check_settings::CheckSettings;

#[derive(Template)]
#[template(path = "policy_checks.html")]
struct Page {
    l: Layout,
    section: &'static str,
    s: CheckSettings,
    error: String,
    done: String,
}

pub async fn page(Extension(caller): Extension<Caller>) -> PageResult {
    let s = caller.ops.check_settings()?;
    let page = Page {
        l: caller.layout("Greylisting and DNSBL"),
        section: "checks",
        s,
        error: String::new(),
        done: String::new(),
    };
    Ok(html(page.render()))
}
