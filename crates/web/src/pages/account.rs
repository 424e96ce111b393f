//! My account (password, TOTP enrolment with its QR code and recovery codes shown once,
//! logging out everywhere), API tokens (a new token's secret shown once, revoking), the
//! audit log, and logging out.

use super::field;
use crate::auth::{Caller, SESSION_COOKIE, clear_cookie, cookie};
use crate::view::{Layout, PageResult, html, message_page, time};
use askama::Template;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect};
use axum::{Extension, Form};
use portcullis_gateway::digest::FREQUENCIES;
use portcullis_ops::Role;
use portcullis_ops::accounts::TokenSpec;

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    l: Layout,
    role: String,
    notice: String,
    error: String,
    /// During enrolment: the QR code (a data: URL of the SVG) and the secret as text.
    qr: String,
    secret: String,
    recovery: Vec<String>,
    /// A user's own address and digest frequency, and the choices (empty for the other
    /// roles).
    address: String,
    frequency: String,
    frequencies: Vec<String>,
}

impl AccountPage {
    async fn new(caller: &Caller) -> AccountPage {
        let address = caller.ops.actor().address.clone();
        let frequency = if address.is_empty() {
            String::new()
        } else {
            caller
                .ops
                .digest_frequency(&address)
                .await
                .unwrap_or_default()
        };
        AccountPage {
            address,
            frequency,
            frequencies: FREQUENCIES.iter().map(|(n, _)| n.to_string()).collect(),
            l: caller.layout("My account"),
            role: caller.ops.actor().role.to_string(),
            notice: String::new(),
            error: String::new(),
            qr: String::new(),
            secret: String::new(),
            recovery: Vec::new(),
        }
    }
}

pub async fn page(Extension(caller): Extension<Caller>) -> PageResult {
    Ok(html(AccountPage::new(&caller).await.render()))
}

/// A user's own digest frequency.
pub async fn digest(
    Extension(caller): Extension<Caller>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let address = caller.ops.actor().address.clone();
    let done = caller
        .ops
        .set_digest_frequency(&address, field(&form, "frequency"))
        .await;
    let mut page = AccountPage::new(&caller).await;
    match done {
        Ok(()) => page.notice = format!("Quarantine digests: {}.", page.frequency),
        Err(e) => page.error = e.to_string(),
    }
    Ok(html(page.render()))
}

pub async fn password(
    Extension(caller): Extension<Caller>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let mut page = AccountPage::new(&caller).await;
    let (old, new, again) = (
        field(&form, "old"),
        field(&form, "new"),
        field(&form, "again"),
    );
    if new != again {
        page.error = "The two new passwords differ.".into();
    } else {
        let name = caller.ops.actor().name.clone();
        match caller.ops.account_set_password(&name, Some(old), new).await {
            Ok(()) => page.notice = "Password changed.".into(),
            Err(e) => page.error = e.to_string(),
        }
    }
    Ok(html(page.render()))
}

pub async fn totp_enrol(Extension(caller): Extension<Caller>) -> PageResult {
    use base64::Engine;
    let mut page = AccountPage::new(&caller).await;
    match caller.ops.totp_enrol().await {
        Ok(e) => {
            page.qr = format!(
                "data:image/svg+xml;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(e.qr_svg.as_bytes())
            );
            page.secret = e.secret_base32;
        }
        Err(e) => page.error = e.to_string(),
    }
    Ok(html(page.render()))
}

pub async fn totp_confirm(
    Extension(caller): Extension<Caller>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let mut page = AccountPage::new(&caller).await;
    match caller.ops.totp_confirm(field(&form, "code").trim()).await {
        Ok(codes) => {
            page.notice =
                "Two-factor login is on. Keep these recovery codes now: they are not shown again."
                    .into();
            page.recovery = codes;
        }
        Err(e) => page.error = e.to_string(),
    }
    Ok(html(page.render()))
}

pub async fn logout_everywhere(Extension(caller): Extension<Caller>) -> PageResult {
    let n = caller.ops.logout_everywhere().await?;
    let mut res = html(message_page(
        "Logged out everywhere",
        &format!("{n} session(s) ended, this one too."),
    ));
    res.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    Ok(res)
}

pub async fn logout(Extension(caller): Extension<Caller>, headers: HeaderMap) -> PageResult {
    if let Some(secret) = cookie(&headers, SESSION_COOKIE) {
        caller.ops.logout(secret).await?;
    }
    let mut res = Redirect::to("/login").into_response();
    res.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    Ok(res)
}

struct TokenRow {
    id: i64,
    name: String,
    role: String,
    read_only: bool,
    created: String,
    expires: String,
    last_used: String,
    revoked: bool,
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    l: Layout,
    tokens: Vec<TokenRow>,
    roles: Vec<&'static str>,
    secret: String,
    error: String,
}

async fn tokens_page(caller: &Caller, secret: String, error: String) -> PageResult {
    let tokens = caller
        .ops
        .token_list()
        .await?
        .into_iter()
        .map(|t| TokenRow {
            id: t.id,
            name: t.name,
            role: t.role,
            read_only: t.read_only,
            created: time(t.created),
            expires: t.expires.map(time).unwrap_or_else(|| "never".into()),
            last_used: t.last_used.map(time).unwrap_or_else(|| "never".into()),
            revoked: t.revoked,
        })
        .collect();
    Ok(html(
        TokensPage {
            l: caller.layout("API tokens"),
            tokens,
            roles: Role::ALL.iter().map(|r| r.as_str()).collect(),
            secret,
            error,
        }
        .render(),
    ))
}

pub async fn tokens(Extension(caller): Extension<Caller>) -> PageResult {
    tokens_page(&caller, String::new(), String::new()).await
}

pub async fn create_token(
    Extension(caller): Extension<Caller>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let role = match field(&form, "role") {
        "" => Ok(caller.ops.actor().role),
        r => Role::parse(r),
    };
    let days: i64 = field(&form, "days").trim().parse().unwrap_or(0);
    let result = match role {
        Ok(role) => {
            let spec = TokenSpec {
                name: field(&form, "name").trim().to_string(),
                role,
                domains: field(&form, "domains")
                    .split([',', ' '])
                    .filter(|d| !d.is_empty())
                    .map(str::to_string)
                    .collect(),
                read_only: field(&form, "read_only") == "on",
                expires: (days > 0).then(|| portcullis_queue::spool::now() + days * 86400),
            };
            caller.ops.token_create(&spec).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok((_, secret)) => tokens_page(&caller, secret, String::new()).await,
        Err(e) => tokens_page(&caller, String::new(), e.to_string()).await,
    }
}

pub async fn revoke_token(
    Extension(caller): Extension<Caller>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    match field(&form, "id").parse::<i64>() {
        Ok(id) => {
            caller.ops.token_revoke(id).await?;
            Ok(Redirect::to("/tokens").into_response())
        }
        Err(_) => tokens_page(&caller, String::new(), "No such token.".into()).await,
    }
}

struct AuditRow {
    at: String,
    actor: String,
    role: String,
    via: String,
    remote: String,
    action: String,
    target: String,
    before: String,
    after: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    l: Layout,
    actor: String,
    action: String,
    since: String,
    until: String,
    rows: Vec<AuditRow>,
    error: String,
    next: String,
}

pub async fn audit(
    Extension(caller): Extension<Caller>,
    axum::extract::Query(f): axum::extract::Query<crate::api::accounts::AuditFilter>,
) -> PageResult {
    let (rows, error) = match f.query() {
        Ok(q) => (caller.ops.audit_list(&q).await?, String::new()),
        Err(e) => (Vec::new(), e.message),
    };
    let paging = f.paging();
    let next = if rows.len() as i64 == paging.limit() && paging.limit() > 0 {
        let pairs = [
            ("actor", f.actor.clone().unwrap_or_default()),
            ("action", f.action.clone().unwrap_or_default()),
            ("since", f.since.clone().unwrap_or_default()),
            ("until", f.until.clone().unwrap_or_default()),
            ("offset", (paging.offset() + paging.limit()).to_string()),
        ];
        format!(
            "/audit?{}",
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        )
    } else {
        String::new()
    };
    let rows = rows
        .into_iter()
        .map(|e| AuditRow {
            at: time(e.at),
            actor: e.actor,
            role: e.role,
            via: e.via,
            remote: e.remote.unwrap_or_default(),
            action: e.action,
            target: e.target,
            before: e.before_json.unwrap_or_default(),
            after: e.after_json.unwrap_or_default(),
        })
        .collect();
    Ok(html(
        AuditPage {
            l: caller.layout("Audit log"),
            actor: f.actor.clone().unwrap_or_default(),
            action: f.action.clone().unwrap_or_default(),
            since: f.since.clone().unwrap_or_default(),
            until: f.until.clone().unwrap_or_default(),
            rows,
            error,
            next,
        }
        .render(),
    ))
}
