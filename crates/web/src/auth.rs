//! Who is calling: a console session (the `__Host-portcullis-session` cookie from a
//! login, with its CSRF token required on every state-changing request) or an API token
//! (`Authorization: Bearer`, no CSRF token: a browser never sends one by itself). The
//! login pages, with TOTP as a second step. Every authenticated request gets a [`Caller`]
//! whose operations act as its account; unauthenticated pages redirect to `/login`,
//! unauthenticated API calls get 401.

use crate::AppState;
use crate::error::ApiError;
use crate::view::{Layout, html};
use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use portcullis_ops::accounts::{Login, NewSession};
use portcullis_ops::{Ops, OpsError, Via};
use std::net::{IpAddr, SocketAddr};

pub const SESSION_COOKIE: &str = "__Host-portcullis-session";
/// The form field and the header that carry the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The authenticated caller of one request.
#[derive(Clone)]
pub struct Caller {
    /// The operations, acting as the caller.
    pub ops: Ops,
    /// The session's CSRF token (empty for a bearer token), for the forms of a page.
    pub csrf: String,
}

impl Caller {
    pub fn layout(&self, title: &str) -> Layout {
        Layout {
            title: title.to_string(),
            user: self.ops.actor().name.clone(),
            role: self.ops.actor().role.to_string(),
            csrf: self.csrf.clone(),
        }
    }
}

/// The actor's name, put on the response for the request log.
#[derive(Clone)]
pub struct ActorName(pub String);

/// The client's address, when the request came over a socket.
pub fn client_ip(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// API calls (and `/metrics`, which a scraper reads) get JSON errors, not the login page.
fn is_api(req: &Request) -> bool {
    let path = req.uri().path();
    path.starts_with("/api/") || path == "/metrics"
}

/// The answer to a request without (valid) credentials.
fn unauthenticated(api: bool) -> Response {
    if api {
        ApiError::unauthorized().into_response()
    } else {
        Redirect::to("/login").into_response()
    }
}

fn forbidden(api: bool, message: &str) -> Response {
    if api {
        ApiError::new(StatusCode::FORBIDDEN, message).into_response()
    } else {
        (
            StatusCode::FORBIDDEN,
            html(crate::view::message_page("Forbidden", message)),
        )
            .into_response()
    }
}

fn failed(api: bool, e: OpsError) -> Response {
    let e = ApiError::from(e);
    if api {
        e.into_response()
    } else {
        (
            e.status,
            html(crate::view::message_page("Error", &e.message)),
        )
            .into_response()
    }
}

/// Middleware of every authenticated route.
pub async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let api = is_api(&req);
    let remote = client_ip(&req);
    if let Some(secret) = bearer(req.headers()) {
        let mut actor = match state.ops.token_actor(secret, remote).await {
            Ok(Some(actor)) => actor,
            Ok(None) => return unauthenticated(api),
            Err(e) => return failed(api, e),
        };
        actor.via = Via::Api;
        actor.remote = remote;
        let name = actor.name.clone();
        let caller = Caller {
            ops: state.ops.acting_as(actor),
            csrf: String::new(),
        };
        return run(req, next, caller, name).await;
    }
    let Some(secret) = cookie(req.headers(), SESSION_COOKIE).map(str::to_string) else {
        return unauthenticated(api);
    };
    let session = match state.ops.session(&secret).await {
        Ok(Some(s)) => s,
        Ok(None) => return unauthenticated(api),
        Err(e) => return failed(api, e),
    };
    let req = if is_safe(req.method()) {
        req
    } else {
        match check_csrf(req, &session.csrf).await {
            Ok(req) => req,
            Err(res) => return res,
        }
    };
    let mut actor = session.actor;
    actor.via = Via::Console;
    actor.remote = remote;
    let name = actor.name.clone();
    let caller = Caller {
        ops: state.ops.acting_as(actor),
        csrf: session.csrf,
    };
    run(req, next, caller, name).await
}

async fn run(mut req: Request, next: Next, caller: Caller, name: String) -> Response {
    req.extensions_mut().insert(caller);
    let mut res = next.run(req).await;
    res.extensions_mut().insert(ActorName(name));
    res
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The request, if it carries the session's CSRF token in the header or (for a form) the
/// `csrf` field; else the 403 to answer.
async fn check_csrf(req: Request, expected: &str) -> Result<Request, Response> {
    let api = is_api(&req);
    let refuse = || {
        forbidden(
            api,
            "missing or wrong CSRF token: reload the page and try again",
        )
    };
    if let Some(given) = req.headers().get(CSRF_HEADER) {
        return match given.to_str() {
            Ok(given) if same(given, expected) => Ok(req),
            _ => Err(refuse()),
        };
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(refuse());
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, crate::BODY_LIMIT).await else {
        return Err((StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response());
    };
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
    let ok = fields
        .iter()
        .any(|(k, v)| k == CSRF_FIELD && same(v, expected));
    if !ok {
        return Err(refuse());
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/login/totp", post(login_totp))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    l: Layout,
    error: String,
    /// Set for the second step: the handle of the pending login.
    pending: String,
    username: String,
}

fn login_form(status: StatusCode, error: &str, pending: &str, username: &str) -> Response {
    let page = LoginPage {
        l: Layout::anonymous(if pending.is_empty() {
            "Log in"
        } else {
            "Two-factor code"
        }),
        error: error.to_string(),
        pending: pending.to_string(),
        username: username.to_string(),
    };
    (status, html(page.render())).into_response()
}

async fn login_page() -> Response {
    login_form(StatusCode::OK, "", "", "")
}

#[derive(serde::Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    totp: String,
}

#[derive(serde::Deserialize)]
struct TotpForm {
    #[serde(default)]
    pending: String,
    #[serde(default)]
    totp: String,
    /// Only shown again on the page; the handle names the account.
    #[serde(default)]
    username: String,
}

/// A login form posted from another site (login CSRF) is refused; browsers say where a
/// request came from in `Sec-Fetch-Site`.
fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v != "same-origin" && v != "none")
}

async fn login(State(state): State<AppState>, req: Request) -> Response {
    let remote = client_ip(&req);
    if cross_site(req.headers()) {
        return forbidden(false, "a login must come from this console's own page");
    }
    let form = match axum::Form::<LoginForm>::from_request(req, &()).await {
        Ok(axum::Form(f)) => f,
        Err(e) => return e.into_response(),
    };
    let totp = Some(form.totp.trim()).filter(|t| !t.is_empty());
    let result = state
        .ops
        .login(form.username.trim(), &form.password, totp, remote)
        .await;
    finish_login(result, form.username.trim())
}

async fn login_totp(State(state): State<AppState>, req: Request) -> Response {
    let remote = client_ip(&req);
    if cross_site(req.headers()) {
        return forbidden(false, "a login must come from this console's own page");
    }
    let form = match axum::Form::<TotpForm>::from_request(req, &()).await {
        Ok(axum::Form(f)) => f,
        Err(e) => return e.into_response(),
    };
    let result = state
        .ops
        .login_totp(&form.pending, &form.totp, remote)
        .await;
    if let Ok(Login::NeedTotp(handle)) = &result {
        // A wrong code: ask again, with a new handle (each is used once).
        return login_form(
            StatusCode::UNAUTHORIZED,
            "Wrong code; try again.",
            handle,
            &form.username,
        );
    }
    if let Err(OpsError::Unauthorized(why)) = &result
        && why.contains("too long")
    {
        return login_form(
            StatusCode::UNAUTHORIZED,
            "That login took too long; start again.",
            "",
            "",
        );
    }
    finish_login(result, &form.username)
}

fn finish_login(result: Result<Login, OpsError>, name: &str) -> Response {
    match result {
        Ok(Login::Session(session)) => logged_in(&session),
        Ok(Login::NeedTotp(handle)) => login_form(StatusCode::OK, "", &handle, name),
        Err(e @ OpsError::Throttled { .. }) => {
            login_form(StatusCode::TOO_MANY_REQUESTS, &e.to_string(), "", name)
        }
        Err(OpsError::Unauthorized(_)) => login_form(
            StatusCode::UNAUTHORIZED,
            "Wrong user name, password or code.",
            "",
            name,
        ),
        Err(e) => {
            tracing::warn!(error = %e, "login failed");
            login_form(
                StatusCode::SERVICE_UNAVAILABLE,
                "Logging in is not possible now; try again later.",
                "",
                name,
            )
        }
    }
}

fn logged_in(session: &NewSession) -> Response {
    let max_age = (session.expires - portcullis_queue::spool::now()).max(0);
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}",
        session.secret
    );
    let mut res = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// The cookie that ends a session in the browser.
pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-portcullis-session=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
    )
}
