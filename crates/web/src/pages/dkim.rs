//! The DKIM keys: per domain the keys and the TXT record each needs, with generate,
//! rotate, activate, retire and delete (the last three that stop or remove a key ask to
//! be confirmed first), and a DNS check of a key's record through the gateway's resolver.

use super::field;
use crate::api::dkim::KeyInfo;
use crate::auth::Caller;
use crate::view::{Layout, PageResult, html, time};
use askama::Template;
use axum::extract::Query;
use axum::response::{IntoResponse, Redirect};
use axum::{Extension, Form};
use portcullis_ops::dkim_check::{DnsCheck, DnsStatus};
use portcullis_ops::{Access, OpsError, Scope};

struct KeyRow {
    k: KeyInfo,
    created: String,
}

struct DomainKeys {
    domain: String,
    /// Whether the caller may change this domain's keys (the forms are shown).
    writable: bool,
    has_pending: bool,
    has_active: bool,
    keys: Vec<KeyRow>,
}

/// A DNS check as the page tells it.
struct CheckView {
    domain: String,
    selector: String,
    name: String,
    /// `matches`, `differs`, `not_found` or `error`.
    status: &'static str,
    expected: String,
    published: Vec<String>,
    reason: String,
}

impl From<DnsCheck> for CheckView {
    fn from(c: DnsCheck) -> CheckView {
        let (status, published, reason) = match c.status {
            DnsStatus::Matches { published } => ("matches", vec![published], String::new()),
            DnsStatus::Differs { published } => ("differs", published, String::new()),
            DnsStatus::NotFound => ("not_found", Vec::new(), String::new()),
            DnsStatus::Error { reason } => ("error", Vec::new(), reason),
        };
        CheckView {
            domain: c.domain,
            selector: c.selector,
            name: c.name,
            status,
            expected: c.expected,
            published,
            reason,
        }
    }
}

#[derive(Template)]
#[template(path = "dkim.html")]
struct Page {
    l: Layout,
    domains: Vec<DomainKeys>,
    done: String,
    check: Option<CheckView>,
    /// Whether the caller may make keys at all (the generate form is shown).
    may_generate: bool,
}

#[derive(Template)]
#[template(path = "dkim.confirm.html")]
struct Confirm {
    l: Layout,
    action: String,
    domain: String,
    selector: String,
    stage: bool,
    question: String,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct Params {
    done: Option<String>,
    /// With `selector`: check that key's record in DNS.
    check: Option<String>,
    selector: Option<String>,
}

async fn render(caller: &Caller, done: String, check: Option<CheckView>) -> PageResult {
    let actor = caller.ops.actor();
    let mut domains: Vec<DomainKeys> = Vec::new();
    for v in caller.ops.dkim_list(None).await? {
        let k = KeyInfo::from(v);
        if domains.last().is_none_or(|d| d.domain != k.domain) {
            domains.push(DomainKeys {
                writable: actor.may(Access::WritePolicy, &Scope::domain(&k.domain)),
                domain: k.domain.clone(),
                has_pending: false,
                has_active: false,
                keys: Vec::new(),
            });
        }
        let d = domains.last_mut().expect("a group was pushed for this key");
        d.has_pending |= k.state == "pending";
        d.has_active |= k.state == "active";
        d.keys.push(KeyRow {
            created: time(k.created_at),
            k,
        });
    }
    let may_generate = actor.may(Access::WritePolicy, &Scope::Global)
        || actor
            .domains
            .iter()
            .any(|d| actor.may(Access::WritePolicy, &Scope::domain(d)));
    Ok(html(
        Page {
            l: caller.layout("DKIM keys"),
            domains,
            done,
            check,
            may_generate,
        }
        .render(),
    ))
}

pub async fn page(Extension(caller): Extension<Caller>, Query(p): Query<Params>) -> PageResult {
    let check = match (p.check.as_deref(), p.selector.as_deref()) {
        (Some(domain), Some(selector)) if !domain.is_empty() => {
            Some(caller.ops.dkim_check_dns(domain, selector).await?.into())
        }
        _ => None,
    };
    render(&caller, p.done.unwrap_or_default(), check).await
}

/// The question a change that stops or removes keys asks first.
fn question(action: &str, domain: &str, selector: &str, stage: bool) -> Option<String> {
    match action {
        "retire" => Some(format!(
            "Retire key {selector} of {domain}? It stops signing at once; mail signed with it still needs its record for a while."
        )),
        "delete" => Some(format!(
            "Delete key {selector} of {domain}? This cannot be undone."
        )),
        "rotate" if !stage => Some(format!(
            "Rotate the keys of {domain}? New keys sign at once, before their records can be published; the current keys stop signing."
        )),
        _ => None,
    }
}

pub async fn act(
    Extension(caller): Extension<Caller>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let action = field(&form, "action");
    let domain = field(&form, "domain").trim();
    let selector = field(&form, "selector").trim();
    let stage = field(&form, "stage") == "on";
    if field(&form, "confirm") != "yes"
        && let Some(question) = question(action, domain, selector, stage)
    {
        return Ok(html(
            Confirm {
                l: caller.layout("Please confirm"),
                action: action.to_string(),
                domain: domain.to_string(),
                selector: selector.to_string(),
                stage,
                question,
            }
            .render(),
        ));
    }
    let said = match action {
        "retire" => {
            let (record, still_signed) = caller.ops.dkim_retire(domain, selector).await?;
            let mut s =
                format!("Key {selector} of {domain} retired: {record} may be removed from DNS.");
            if !still_signed {
                s.push_str(&format!(
                    " {domain} has no active key now: its mail goes unsigned."
                ));
            }
            s
        }
        "delete" => {
            let record = caller.ops.dkim_delete(domain, selector).await?;
            format!(
                "Key {selector} of {domain} deleted; remove {record} from DNS if it is still published."
            )
        }
        "generate" => {
            let algorithm = Some(field(&form, "algorithm")).filter(|a| !a.is_empty());
            let selector = Some(selector).filter(|s| !s.is_empty());
            let g = caller
                .ops
                .dkim_generate(domain, selector, algorithm.unwrap_or("rsa"), stage)
                .await?;
            format!(
                "Key {} of {} made ({}): publish its record (below) in DNS.",
                g.selector, g.domain, g.state
            )
        }
        "activate" => {
            let c = caller.ops.dkim_activate(domain).await?;
            format!("{} signs with {} now.", c.domain, c.activated.join(", "))
        }
        "rotate" => {
            let c = caller.ops.dkim_rotate(domain, stage).await?;
            format!(
                "New keys of {}: publish their records (below); keep the records of retiring keys published for a week.",
                c.domain
            )
        }
        other => {
            return Err(OpsError::Invalid {
                what: "action",
                value: other.to_string(),
                hint: "expected generate, rotate, activate, retire or delete".into(),
            }
            .into());
        }
    };
    let target = format!(
        "/dkim?{}",
        serde_urlencoded::to_string([("done", said)]).unwrap_or_default()
    );
    Ok(Redirect::to(&target).into_response())
}
