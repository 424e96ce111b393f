//! The remote gateway of `--url`: its REST API (`/api/v1`, docs/api.md) over HTTPS with a
//! bearer token. TLS is always verified, against the WebPKI roots or, with `--ca-file`,
//! against that file alone (the console's self-signed `<data_dir>/tls/selfsigned.crt`).
//! An answer that is not a success becomes one line naming the URL, the HTTP status and
//! the API's own message. The token never comes from the command line, where `ps` shows it.

use anyhow::{Context, Result, anyhow, bail};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The most items the API answers in one page (`crates/web/src/api`, `MAX_LIMIT`).
const PAGE: i64 = 1000;

/// Where a remote gateway is and how to prove who we are to it.
#[derive(Debug, Clone, Default)]
pub struct RemoteOptions {
    pub url: Option<String>,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

/// A client of one gateway's REST API.
pub struct Remote {
    base: Url,
    token: String,
    http: reqwest::Client,
}

/// A request body.
pub enum Body<'a> {
    None,
    Json(serde_json::Value),
    Text(&'a str),
}

/// `{"items": [...]}` of a list.
#[derive(serde::Deserialize)]
struct Page<T> {
    items: Vec<T>,
}

/// `{"ok": true, "detail": "..."}` of a change.
#[derive(serde::Deserialize)]
struct Done {
    detail: String,
}

impl Remote {
    /// The client of `opts.url`; the token from `--token-file` or `PORTCULLIS_TOKEN`.
    pub fn new(opts: &RemoteOptions) -> Result<Remote> {
        let url = opts.url.as_deref().context("no --url given")?;
        let mut base = Url::parse(url)
            .with_context(|| format!("--url {url:?}: not a URL (https://HOST:PORT)"))?;
        if base.scheme() != "https" {
            bail!("--url {url}: only https:// is accepted (the token must not travel in clear)");
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let token = token(opts.token_file.as_deref())?;
        let tls = tls_config(opts.ca_file.as_deref(), "--ca-file")?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .user_agent(concat!("portcullis-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTPS client")?;
        Ok(Remote { base, token, http })
    }

    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        endpoint(&self.base, segments, query)
    }

    /// One request; the body of a success as text.
    pub async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Body<'_>,
    ) -> Result<String> {
        let url = self.url(segments, query);
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(&self.token);
        request = match body {
            Body::None => request,
            Body::Json(v) => request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&v)?),
            Body::Text(t) => request
                .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(t.to_string()),
        };
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(&self.base, &e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| transport_error(&self.base, &e))?;
        if !status.is_success() {
            return Err(api_error(&method, &url, status, &text));
        }
        Ok(text)
    }

    /// A GET whose body is copied to `out` as it arrives, not held whole; how many bytes.
    pub async fn download(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        out: &mut dyn std::io::Write,
    ) -> Result<u64> {
        let url = self.url(segments, query);
        let mut response = self
            .http
            .get(url.clone())
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| transport_error(&self.base, &e))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(api_error(&Method::GET, &url, status, &text));
        }
        let mut written = 0;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport_error(&self.base, &e))?
        {
            out.write_all(&chunk)?;
            written += chunk.len() as u64;
        }
        Ok(written)
    }

    /// A GET answered with JSON.
    pub async fn get<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<T> {
        let text = self.call(Method::GET, segments, query, Body::None).await?;
        parse(segments, &text)
    }

    /// A change answered with `{"ok", "detail"}`: the detail.
    pub async fn change(
        &self,
        method: Method,
        segments: &[&str],
        body: Body<'_>,
    ) -> Result<String> {
        let text = self.call(method, segments, &[], body).await?;
        Ok(parse::<Done>(segments, &text)?.detail)
    }

    /// A change answered with JSON.
    pub async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Body<'_>,
    ) -> Result<T> {
        let text = self.call(method, segments, &[], body).await?;
        parse(segments, &text)
    }

    /// Up to `limit` items of a list from `offset` on (`limit` 0: all of them), fetched a
    /// page at a time.
    pub async fn list<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        limit: i64,
        offset: i64,
    ) -> Result<Vec<T>> {
        let mut items = Vec::new();
        loop {
            let want = if limit > 0 {
                (limit - items.len() as i64).min(PAGE)
            } else {
                PAGE
            };
            if want <= 0 {
                return Ok(items);
            }
            let mut q = query.to_vec();
            q.push(("limit", want.to_string()));
            q.push(("offset", (offset + items.len() as i64).to_string()));
            let page: Page<T> = self.get(segments, &q).await?;
            let got = page.items.len() as i64;
            items.extend(page.items);
            if got < want {
                return Ok(items);
            }
        }
    }
}

/// The URL of `api/v1/` under `base` followed by `segments`, each escaped as one path
/// segment (an address or a rule name never reaches another endpoint).
fn endpoint(base: &Url, segments: &[&str], query: &[(&str, String)]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(["api", "v1"]).extend(segments);
    }
    if !query.is_empty() {
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (k, v.as_str())));
    }
    url
}

fn parse<T: DeserializeOwned>(segments: &[&str], text: &str) -> Result<T> {
    serde_json::from_str(text).with_context(|| {
        format!(
            "the answer of /api/v1/{} is not what was expected",
            segments.join("/")
        )
    })
}

/// The token: the first line of `--token-file`, else `PORTCULLIS_TOKEN`.
fn token(file: Option<&Path>) -> Result<String> {
    if let Some(path) = file {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            eprintln!(
                "portcullis: warning: {} may be read by other users (chmod 600 it)",
                path.display()
            );
        }
    }
    let token = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("--token-file {}", path.display()))?
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string(),
        None => std::env::var("PORTCULLIS_TOKEN")
            .unwrap_or_default()
            .trim()
            .to_string(),
    };
    if token.is_empty() {
        bail!(
            "--url needs an API token: set PORTCULLIS_TOKEN or give --token-file FILE \
             (make one with `portcullis token create` on the gateway)"
        );
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("the API token has characters no token has (spaces or control characters)");
    }
    Ok(token)
}

/// rustls on aws-lc-rs, TLS 1.2 and 1.3, verifying the server's certificate against
/// `ca_file` when given (its certificates only), else against the WebPKI roots; errors
/// name the file by `option` (`--ca-file`, `syslog_ca`).
pub(crate) fn tls_config(ca_file: Option<&Path>, option: &str) -> Result<rustls::ClientConfig> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|i| i.collect())
                .with_context(|| {
                    format!("{option} {}: not a PEM certificate file", path.display())
                })?;
            if certs.is_empty() {
                bail!("{option} {}: no certificate in it", path.display());
            }
            for cert in certs {
                roots
                    .add(cert)
                    .with_context(|| format!("{option} {}", path.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A request that got no HTTP answer: the connection, TLS or a timeout, with the URL.
fn transport_error(base: &Url, e: &reqwest::Error) -> anyhow::Error {
    let mut chain = Vec::new();
    let mut tls = false;
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<rustls::Error>().is_some() {
            tls = true;
        }
        let text = err.to_string();
        if chain.last() != Some(&text) {
            chain.push(text);
        }
        source = err.source();
    }
    let detail = chain.join(": ");
    // rustls' errors reach reqwest wrapped in std::io::Error, whose text says it.
    if tls || detail.contains("certificate") || detail.contains("InvalidCertificate") {
        anyhow!(
            "TLS with {base} failed, the gateway's certificate is not trusted: {detail} \
             (give the gateway's certificate with --ca-file or PORTCULLIS_CA, by default \
             <data_dir>/tls/selfsigned.crt, and use a name it holds, such as localhost)"
        )
    } else if e.is_timeout() {
        anyhow!("{base} did not answer in time: {detail}")
    } else if e.is_connect() {
        anyhow!("cannot connect to {base}: {detail}")
    } else {
        anyhow!("the request to {base} failed: {detail}")
    }
}

/// An answer other than success, on one line: `{"error": {"code", "message", "field"}}`
/// when the API says so, else its text.
fn api_error(method: &Method, url: &Url, status: StatusCode, text: &str) -> anyhow::Error {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: Detail,
    }
    #[derive(serde::Deserialize)]
    struct Detail {
        code: String,
        message: String,
        field: Option<String>,
    }
    let code = status.as_u16();
    let said = match serde_json::from_str::<ErrorBody>(text) {
        Ok(b) => {
            let field = b
                .error
                .field
                .map(|f| format!(" (field {f})"))
                .unwrap_or_default();
            format!("HTTP {code} {}: {}{field}", b.error.code, b.error.message)
        }
        Err(_) => format!(
            "HTTP {status}: {}",
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        ),
    };
    let hint = match status {
        StatusCode::UNAUTHORIZED => " — the token is wrong, expired or revoked",
        StatusCode::FORBIDDEN => " — the token (read-only?) or its role may not do this",
        _ => "",
    };
    let mut url = url.clone();
    url.set_query(None);
    anyhow!("{method} {url}: {said}{hint}")
}

/// Refuses a command that only runs beside the gateway's own store and files.
pub fn refuse(command: &str) -> anyhow::Error {
    anyhow!(
        "`portcullis {command}` cannot act on a remote gateway (--url / PORTCULLIS_URL): \
         run it on the gateway's host, without --url"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_escaped_and_the_base_path_kept() {
        let base = Url::parse("https://gw.example:8443/").unwrap();
        let url = endpoint(
            &base,
            &["rules", "a/b c?"],
            &[("recipient", "b+o@x".into())],
        );
        assert_eq!(
            url.as_str(),
            "https://gw.example:8443/api/v1/rules/a%2Fb%20c%3F?recipient=b%2Bo%40x"
        );
        let base = Url::parse("https://gw.example/portcullis/").unwrap();
        let url = endpoint(&base, &["domains"], &[]);
        assert_eq!(url.as_str(), "https://gw.example/portcullis/api/v1/domains");
    }

    #[test]
    fn an_api_error_is_one_line_with_status_code_and_message() {
        let url = Url::parse("https://gw.example/api/v1/domains?limit=5").unwrap();
        let body = r#"{"error":{"code":"invalid","message":"bad route\nx","field":"routes"}}"#;
        let e = api_error(&Method::POST, &url, StatusCode::BAD_REQUEST, body).to_string();
        assert_eq!(
            e,
            "POST https://gw.example/api/v1/domains: HTTP 400 invalid: bad route\nx (field routes)"
        );
        let e = api_error(
            &Method::GET,
            &url,
            StatusCode::FORBIDDEN,
            r#"{"error":{"code":"forbidden","message":"read-only token","field":null}}"#,
        )
        .to_string();
        assert!(e.contains("HTTP 403 forbidden: read-only token"), "{e}");
        assert!(e.contains("read-only?"), "{e}");
        let e = api_error(
            &Method::GET,
            &url,
            StatusCode::BAD_GATEWAY,
            "<html>\n proxy \n</html>",
        )
        .to_string();
        assert_eq!(
            e,
            "GET https://gw.example/api/v1/domains: HTTP 502 Bad Gateway: <html> proxy </html>"
        );
    }

    #[test]
    fn the_token_is_the_first_line_of_its_file() {
        let dir = std::env::temp_dir().join(format!("portcullis-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "abc_DEF-123\nsecond line\n").unwrap();
        assert_eq!(token(Some(&file)).unwrap(), "abc_DEF-123");
        std::fs::write(&file, "\n").unwrap();
        assert!(
            token(Some(&file))
                .unwrap_err()
                .to_string()
                .contains("PORTCULLIS_TOKEN")
        );
        std::fs::write(&file, "a b\n").unwrap();
        assert!(token(Some(&file)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
