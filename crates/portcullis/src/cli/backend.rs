//! Where a command's operations run: on this host's store (the operations layer, as the
//! command line always did) or on a remote gateway through its REST API (`--url`). Each
//! method answers the same types either way, so that a command prints the same text and
//! JSON wherever its data came from; only the fetching differs.

use super::remote::{Body, Remote, RemoteOptions};
use crate::config::Config;
use anyhow::{Context, Result};
use portcullis_filter::rules::Rule;
use portcullis_ops::Ops;
use portcullis_ops::accounts::{Account, TokenInfo, TokenSpec};
use portcullis_ops::dkim::{Changed, Generated};
use portcullis_ops::dkim_check::DnsCheck;
use portcullis_ops::policy::RoutesSpec;
use portcullis_store::{
    AuditEntry, AuditQuery, ContentRow, Domain, ListEntry, LogQuery, MessageRecord, QuarantineItem,
    QuarantineQuery, ReportQuery, ReportSummary, StoredReport,
};
use portcullis_web::answers::{KeyChange, KeyDeleted, KeyInfo, KeyRetired, ReportView};
use reqwest::Method;
use serde_json::{Value, json};

/// The gateway a command acts on.
pub enum Backend {
    Local(Box<Ops>),
    Remote(Remote),
}

/// A held copy as `quarantine show` prints it.
pub struct HeldCopy {
    pub item: QuarantineItem,
    pub findings: Value,
    pub body: Vec<u8>,
}

/// What an import brought in.
#[derive(serde::Deserialize)]
pub struct Imported {
    pub domains: usize,
    pub networks: usize,
    pub rules: usize,
    pub list_entries: usize,
    pub content_patterns: usize,
}

fn opt(query: &mut Vec<(&'static str, String)>, key: &'static str, value: &Option<String>) {
    if let Some(v) = value {
        query.push((key, v.clone()));
    }
}

/// A change of keys as the operations layer says it.
fn changed(c: KeyChange) -> Changed {
    Changed {
        domain: c.domain,
        activated: c.selectors,
        new_records: c.new_records,
        retiring_records: c.retiring_records,
    }
}

/// A report the API answered as JSON, written as the store keeps it: through its own type,
/// so that fields come in the order the gateway wrote them (the API's JSON object does
/// not keep it). A report that does not read as its kind is written as it came.
fn report_text(kind: &str, report: Value) -> String {
    use mail_auth::report::Report;
    use mail_auth::report::tlsrpt::TlsReport;
    let typed = match kind {
        "dmarc" => {
            serde_json::from_value::<Report>(report.clone()).and_then(|r| serde_json::to_string(&r))
        }
        _ => serde_json::from_value::<TlsReport>(report.clone())
            .and_then(|r| serde_json::to_string(&r)),
    };
    typed.unwrap_or_else(|_| report.to_string())
}

impl Backend {
    /// The remote gateway of `remote` when it names one, else this host's store.
    pub async fn open(config: &Config, remote: Option<&RemoteOptions>) -> Result<Backend> {
        match remote {
            Some(r) => Ok(Backend::Remote(Remote::new(r)?)),
            None => Ok(Backend::Local(Box::new(super::ops(config).await?))),
        }
    }

    /// The local operations, or a refusal naming `command` when the gateway is remote.
    pub fn local(&self, command: &str) -> Result<&Ops> {
        match self {
            Backend::Local(ops) => Ok(ops),
            Backend::Remote(_) => Err(super::remote::refuse(command)),
        }
    }

    pub async fn add_domain(&self, domain: &str, spec: &RoutesSpec) -> Result<String> {
        match self {
            Backend::Local(ops) => Ok(ops.add_domain(domain, spec).await?),
            Backend::Remote(r) => {
                let body = json!({
                    "name": domain, "routes": spec.routes, "tls": spec.tls,
                    "auth_user": spec.auth_user, "auth_password": spec.auth_password,
                });
                r.change(Method::POST, &["domains"], Body::Json(body)).await
            }
        }
    }

    pub async fn list_domains(&self) -> Result<Vec<Domain>> {
        match self {
            Backend::Local(ops) => Ok(ops.list_domains().await?),
            Backend::Remote(r) => r.list(&["domains"], &[], 0, 0).await,
        }
    }

    /// Each route of `domain` probed (greeting, EHLO, STARTTLS, QUIT).
    pub async fn test_route(
        &self,
        domain: &str,
    ) -> Result<Vec<portcullis_ops::route_test::RouteTest>> {
        match self {
            Backend::Local(ops) => Ok(ops.test_route(domain).await?),
            Backend::Remote(r) => {
                r.send(Method::POST, &["domains", domain, "test"], Body::None)
                    .await
            }
        }
    }

    /// The rules of `text` tried on the held copy `item`; nothing saved.
    pub async fn rule_dry_run(
        &self,
        text: &str,
        origin: &str,
        item: &str,
    ) -> Result<portcullis_ops::filter::DryRun> {
        match self {
            Backend::Local(ops) => Ok(ops.rule_dry_run(text, origin, item).await?),
            Backend::Remote(r) => {
                let answer = r
                    .call(
                        Method::POST,
                        &["rules", "dry-run"],
                        &[("item", item.to_string())],
                        Body::Text(text),
                    )
                    .await?;
                Ok(serde_json::from_str(&answer)?)
            }
        }
    }

    /// How often `address` gets quarantine digests.
    pub async fn digest_frequency(&self, address: &str) -> Result<String> {
        #[derive(serde::Deserialize)]
        struct Frequency {
            frequency: String,
        }
        match self {
            Backend::Local(ops) => Ok(ops.digest_frequency(address).await?),
            Backend::Remote(r) => Ok(r
                .get::<Frequency>(&["digest-frequency", address], &[])
                .await?
                .frequency),
        }
    }

    pub async fn set_digest_frequency(&self, address: &str, frequency: &str) -> Result<()> {
        match self {
            Backend::Local(ops) => Ok(ops.set_digest_frequency(address, frequency).await?),
            Backend::Remote(r) => r
                .change(
                    Method::PUT,
                    &["digest-frequency", address],
                    Body::Json(json!({ "frequency": frequency })),
                )
                .await
                .map(drop),
        }
    }

    pub async fn remove_domain(&self, domain: &str) -> Result<()> {
        match self {
            Backend::Local(ops) => Ok(ops.remove_domain(domain).await?),
            Backend::Remote(r) => r
                .change(Method::DELETE, &["domains", domain], Body::None)
                .await
                .map(drop),
        }
    }

    /// Greylisting, DNSBL and FCrDNS settings in force.
    pub async fn check_settings(&self) -> Result<portcullis_ops::check_settings::CheckSettings> {
        match self {
            Backend::Local(ops) => Ok(ops.check_settings().await?),
            Backend::Remote(r) => r.get(&["settings", "checks"], &[]).await,
        }
    }

    /// Change `section`.`key` to `text`, read as the key's type.
    pub async fn set_check_setting(&self, section: &str, key: &str, text: &str) -> Result<()> {
        match self {
            Backend::Local(ops) => Ok(ops.set_check_setting_text(section, key, text).await?),
            Backend::Remote(r) => r
                .change(
                    Method::PUT,
                    &["settings", "checks", section, key],
                    Body::Json(json!({ "text": text })),
                )
                .await
                .map(drop),
        }
    }

    pub async fn reset_check_setting(&self, section: &str, key: &str) -> Result<()> {
        match self {
            Backend::Local(ops) => Ok(ops.reset_check_setting(section, key).await?),
            Backend::Remote(r) => r
                .change(
                    Method::DELETE,
                    &["settings", "checks", section, key],
                    Body::None,
                )
                .await
                .map(drop),
        }
    }

    /// The network as the gateway wrote it (`10.0.0.0/8`).
    pub async fn add_network(&self, cidr: &str, comment: &str) -> Result<String> {
        match self {
            Backend::Local(ops) => Ok(ops.add_network(cidr, comment).await?.to_string()),
            Backend::Remote(r) => {
                let body = json!({ "cidr": cidr, "comment": comment });
                let said = r
                    .change(Method::POST, &["networks"], Body::Json(body))
                    .await?;
                Ok(said.strip_suffix(" added").unwrap_or(&said).to_string())
            }
        }
    }

    /// Each network with its comment.
    pub async fn list_networks(&self) -> Result<Vec<(String, String)>> {
        #[derive(serde::Deserialize)]
        struct Network {
            cidr: String,
            comment: String,
        }
        match self {
            Backend::Local(ops) => Ok(ops
                .list_networks()
                .await?
                .into_iter()
                .map(|(net, comment)| (net.to_string(), comment))
                .collect()),
            Backend::Remote(r) => Ok(r
                .list::<Network>(&["networks"], &[], 0, 0)
                .await?
                .into_iter()
                .map(|n| (n.cidr, n.comment))
                .collect()),
        }
    }

    pub async fn remove_network(&self, cidr: &str) -> Result<()> {
        match self {
            Backend::Local(ops) => Ok(ops.remove_network(cidr).await?),
            Backend::Remote(r) => r
                .call(
                    Method::DELETE,
                    &["networks"],
                    &[("cidr", cidr.to_string())],
                    Body::None,
                )
                .await
                .map(drop),
        }
    }

    pub async fn add_user(&self, email: &str, password: &str) -> Result<String> {
        match self {
            Backend::Local(ops) => Ok(ops.add_user(email, password).await?),
            Backend::Remote(r) => {
                let body = json!({ "email": email, "password": password });
                r.change(Method::POST, &["users"], Body::Json(body)).await
            }
        }
    }

    pub async fn list_users(&self) -> Result<Vec<String>> {
        match self {
            Backend::Local(ops) => Ok(ops.list_users().await?),
            Backend::Remote(r) => r.list(&["users"], &[], 0, 0).await,
        }
    }

    pub async fn remove_user(&self, email: &str) -> Result<()> {
        match self {
            Backend::Local(ops) => Ok(ops.remove_user(email).await?),
            Backend::Remote(r) => r
                .change(Method::DELETE, &["users", email], Body::None)
                .await
                .map(drop),
        }
    }

    /// The rules as stored (JSON), in order.
    pub async fn list_rules_raw(&self) -> Result<Vec<Value>> {
        match self {
            Backend::Local(ops) => Ok(ops.list_rules_raw().await?),
            Backend::Remote(r) => r.get(&["rules"], &[]).await,
        }
    }

    /// The rules that parse, in order (one that does not is left out, as the gateway
    /// leaves it out).
    pub async fn list_rules(&self) -> Result<Vec<Rule>> {
        match self {
            Backend::Local(ops) => Ok(ops.list_rules().await?),
            Backend::Remote(_) => Ok(self
                .list_rules_raw()
                .await?
                .into_iter()
                .filter_map(|v| serde_json::from_value(v).ok())
                .collect()),
        }
    }

    /// The names of the rules saved.
    pub async fn add_rules(&self, text: &str, origin: &str) -> Result<Vec<String>> {
        match self {
            Backend::Local(ops) => Ok(ops.add_rules(text, origin).await?),
            Backend::Remote(r) => {
                let said = r.change(Method::POST, &["rules"], Body::Text(text)).await?;
                let names = said.strip_prefix("saved ").unwrap_or(&said);
                Ok(names
                    .split(", ")
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
                    .collect())
            }
        }
    }

    pub async fn remove_rule(&self, name: &str) -> Result<()> {
        match self {
            Backend::Local(ops) => Ok(ops.remove_rule(name).await?),
            Backend::Remote(r) => r
                .change(Method::DELETE, &["rules", name], Body::None)
                .await
                .map(drop),
        }
    }

    pub async fn list_entries(&self) -> Result<Vec<ListEntry>> {
        match self {
            Backend::Local(ops) => Ok(ops.list_entries().await?),
            Backend::Remote(r) => r.list(&["lists"], &[], 0, 0).await,
        }
    }

    pub async fn add_list_entry(&self, e: &ListEntry) -> Result<()> {
        match self {
            Backend::Local(ops) => Ok(ops.add_list_entry(e).await?),
            Backend::Remote(r) => r
                .change(
                    Method::POST,
                    &["lists"],
                    Body::Json(serde_json::to_value(e)?),
                )
                .await
                .map(drop),
        }
    }

    pub async fn remove_list_entry(&self, e: &ListEntry) -> Result<()> {
        match self {
            Backend::Local(ops) => Ok(ops.remove_list_entry(e).await?),
            Backend::Remote(r) => r
                .change(
                    Method::DELETE,
                    &["lists"],
                    Body::Json(serde_json::to_value(e)?),
                )
                .await
                .map(drop),
        }
    }

    pub async fn add_content(&self, row: &ContentRow) -> Result<()> {
        match self {
            Backend::Local(ops) => Ok(ops.add_content(row).await?),
            Backend::Remote(r) => r
                .change(
                    Method::POST,
                    &["content"],
                    Body::Json(serde_json::to_value(row)?),
                )
                .await
                .map(drop),
        }
    }

    pub async fn remove_content(&self, list: &str, pattern: &str, field: &str) -> Result<()> {
        match self {
            Backend::Local(ops) => Ok(ops.remove_content(list, pattern, field).await?),
            Backend::Remote(r) => {
                let body = json!({ "list": list, "pattern": pattern, "field": field });
                r.change(Method::DELETE, &["content"], Body::Json(body))
                    .await
                    .map(drop)
            }
        }
    }

    pub async fn list_content(&self) -> Result<Vec<ContentRow>> {
        match self {
            Backend::Local(ops) => Ok(ops.list_content().await?),
            Backend::Remote(r) => r.list(&["content"], &[], 0, 0).await,
        }
    }

    pub async fn log_search(&self, q: &LogQuery) -> Result<Vec<MessageRecord>> {
        match self {
            Backend::Local(ops) => Ok(ops.log_search(q).await?),
            Backend::Remote(r) => {
                let mut query = Vec::new();
                opt(&mut query, "q", &q.text);
                opt(&mut query, "sender", &q.sender);
                opt(&mut query, "recipient", &q.recipient);
                opt(&mut query, "subject", &q.subject);
                opt(&mut query, "message_id", &q.message_id);
                opt(&mut query, "client_ip", &q.client_ip);
                opt(&mut query, "verdict", &q.verdict);
                opt(&mut query, "direction", &q.direction);
                opt(&mut query, "since", &q.since.map(|t| t.to_string()));
                opt(&mut query, "until", &q.until.map(|t| t.to_string()));
                r.list(&["messages"], &query, q.limit.max(1), q.offset)
                    .await
            }
        }
    }

    /// The message log of `[from, to)` written to `out` as it is read, a page at a time
    /// (CSV or JSON lines); how many bytes.
    pub async fn log_export(
        &self,
        from: i64,
        to: i64,
        format: &str,
        out: &mut dyn std::io::Write,
    ) -> Result<u64> {
        let mut written = 0;
        match self {
            Backend::Local(ops) => {
                let format = portcullis_ops::log_export::ExportFormat::parse(format)?;
                let mut export = ops.log_export(from, to, format)?;
                while let Some(chunk) = export.next_chunk().await? {
                    out.write_all(chunk.as_bytes())?;
                    written += chunk.len() as u64;
                }
            }
            Backend::Remote(r) => {
                let query = [
                    ("from", from.to_string()),
                    ("to", to.to_string()),
                    ("format", format.to_string()),
                ];
                written = r.download(&["log", "export"], &query, out).await?;
            }
        }
        out.flush()?;
        Ok(written)
    }

    /// The retention pass, now.
    pub async fn retention_run(&self) -> Result<portcullis_gateway::retention::Purged> {
        match self {
            Backend::Local(ops) => Ok(ops.retention_run().await?),
            Backend::Remote(r) => {
                r.send(Method::POST, &["retention", "run"], Body::None)
                    .await
            }
        }
    }

    pub async fn quarantine_list(&self, q: &QuarantineQuery) -> Result<Vec<QuarantineItem>> {
        match self {
            Backend::Local(ops) => Ok(ops.quarantine_list(q).await?),
            Backend::Remote(r) => {
                let mut query = Vec::new();
                opt(&mut query, "recipient", &q.recipient);
                opt(&mut query, "state", &q.state);
                r.list(&["quarantine"], &query, q.limit, 0).await
            }
        }
    }

    pub async fn quarantine_show(&self, id: &str) -> Result<HeldCopy> {
        match self {
            Backend::Local(ops) => {
                let held = ops.quarantine_show(id).await?;
                Ok(HeldCopy {
                    item: held.item,
                    findings: serde_json::from_str(&held.findings)?,
                    body: held.body,
                })
            }
            Backend::Remote(r) => {
                #[derive(serde::Deserialize)]
                struct Held {
                    item: QuarantineItem,
                    findings: Value,
                }
                let held: Held = r.get(&["quarantine", id], &[]).await?;
                let body = r
                    .call(Method::GET, &["quarantine", id, "raw"], &[], Body::None)
                    .await?;
                Ok(HeldCopy {
                    item: held.item,
                    findings: held.findings,
                    body: body.into_bytes(),
                })
            }
        }
    }

    pub async fn quarantine_delete(&self, id: &str) -> Result<()> {
        match self {
            Backend::Local(ops) => Ok(ops.quarantine_delete(id).await?),
            Backend::Remote(r) => r
                .change(Method::DELETE, &["quarantine", id], Body::None)
                .await
                .map(drop),
        }
    }

    pub async fn quarantine_report_spam(&self, id: &str) -> Result<()> {
        match self {
            Backend::Local(ops) => Ok(ops.quarantine_report_spam(id).await?),
            Backend::Remote(r) => r
                .change(Method::POST, &["quarantine", id, "report-spam"], Body::None)
                .await
                .map(drop),
        }
    }

    pub async fn policy_export(&self) -> Result<String> {
        match self {
            Backend::Local(ops) => Ok(ops.policy_export().await?),
            Backend::Remote(r) => r.call(Method::GET, &["policy"], &[], Body::None).await,
        }
    }

    pub async fn policy_import(&self, text: &str, origin: &str) -> Result<Imported> {
        match self {
            Backend::Local(ops) => {
                let i = ops.policy_import(text, origin).await?;
                Ok(Imported {
                    domains: i.domains,
                    networks: i.networks,
                    rules: i.rules,
                    list_entries: i.list_entries,
                    content_patterns: i.content_patterns,
                })
            }
            Backend::Remote(r) => {
                let said = r
                    .call(Method::PUT, &["policy"], &[], Body::Text(text))
                    .await?;
                Ok(serde_json::from_str(&said)?)
            }
        }
    }

    pub async fn account_add(
        &self,
        name: &str,
        role: portcullis_ops::Role,
        domains: &[String],
        password: &str,
    ) -> Result<Account> {
        match self {
            Backend::Local(ops) => Ok(ops.account_add(name, role, domains, password).await?),
            Backend::Remote(r) => {
                let body = json!({
                    "name": name, "role": role.to_string(), "domains": domains,
                    "password": password,
                });
                r.send(Method::POST, &["accounts"], Body::Json(body)).await
            }
        }
    }

    pub async fn account_list(&self) -> Result<Vec<Account>> {
        match self {
            Backend::Local(ops) => Ok(ops.account_list().await?),
            Backend::Remote(r) => r.list(&["accounts"], &[], 0, 0).await,
        }
    }

    pub async fn account_remove(&self, name: &str) -> Result<()> {
        match self {
            Backend::Local(ops) => Ok(ops.account_remove(name).await?),
            Backend::Remote(r) => r
                .change(Method::DELETE, &["accounts", name], Body::None)
                .await
                .map(drop),
        }
    }

    pub async fn account_set_password(&self, name: &str, password: &str) -> Result<()> {
        match self {
            Backend::Local(ops) => Ok(ops.account_set_password(name, None, password).await?),
            Backend::Remote(r) => r
                .change(
                    Method::POST,
                    &["accounts", name, "password"],
                    Body::Json(json!({ "new": password })),
                )
                .await
                .map(drop),
        }
    }

    /// A token of `account` and its secret.
    pub async fn token_create_for(
        &self,
        account: &str,
        spec: &TokenSpec,
    ) -> Result<(TokenInfo, String)> {
        match self {
            Backend::Local(ops) => Ok(ops.token_create_for(account, spec).await?),
            Backend::Remote(r) => {
                #[derive(serde::Deserialize)]
                struct Created {
                    token: TokenInfo,
                    secret: String,
                }
                let body = json!({
                    "account": account, "name": spec.name, "role": spec.role.to_string(),
                    "domains": spec.domains, "read_only": spec.read_only,
                    "expires": spec.expires,
                });
                let c: Created = r.send(Method::POST, &["tokens"], Body::Json(body)).await?;
                Ok((c.token, c.secret))
            }
        }
    }

    pub async fn token_list(&self) -> Result<Vec<TokenInfo>> {
        match self {
            Backend::Local(ops) => Ok(ops.token_list().await?),
            Backend::Remote(r) => r.list(&["tokens"], &[], 0, 0).await,
        }
    }

    pub async fn token_revoke(&self, id: i64) -> Result<()> {
        match self {
            Backend::Local(ops) => Ok(ops.token_revoke(id).await?),
            Backend::Remote(r) => r
                .change(Method::DELETE, &["tokens", &id.to_string()], Body::None)
                .await
                .map(drop),
        }
    }

    pub async fn audit_list(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
        match self {
            Backend::Local(ops) => Ok(ops.audit_list(q).await?),
            Backend::Remote(r) => {
                let mut query = Vec::new();
                opt(&mut query, "actor", &q.actor);
                opt(&mut query, "action", &q.action);
                opt(&mut query, "since", &q.since.map(|t| t.to_string()));
                opt(&mut query, "until", &q.until.map(|t| t.to_string()));
                r.list(&["audit"], &query, q.limit.max(1), q.offset).await
            }
        }
    }

    /// Make a DKIM key for `domain`.
    pub async fn dkim_generate(
        &self,
        domain: &str,
        selector: Option<&str>,
        algorithm: &str,
        stage: bool,
    ) -> Result<Generated> {
        match self {
            Backend::Local(ops) => Ok(ops
                .dkim_generate(domain, selector, algorithm, stage)
                .await?),
            Backend::Remote(r) => {
                let body = json!({ "selector": selector, "algorithm": algorithm, "stage": stage });
                let c: KeyChange = r
                    .send(
                        Method::POST,
                        &["dkim", domain, "generate"],
                        Body::Json(body),
                    )
                    .await?;
                let missing = "the gateway's answer does not name the new key (an older gateway?)";
                Ok(Generated {
                    selector: c.selectors.into_iter().next().context(missing)?,
                    record: c.new_records.into_iter().next().context(missing)?,
                    algorithm: c.algorithm.context(missing)?,
                    state: c.state.context(missing)?,
                    domain: c.domain,
                })
            }
        }
    }

    pub async fn dkim_rotate(&self, domain: &str, stage: bool) -> Result<Changed> {
        match self {
            Backend::Local(ops) => Ok(ops.dkim_rotate(domain, stage).await?),
            Backend::Remote(r) => {
                let body = json!({ "stage": stage });
                let c: KeyChange = r
                    .send(Method::POST, &["dkim", domain, "rotate"], Body::Json(body))
                    .await?;
                Ok(changed(c))
            }
        }
    }

    pub async fn dkim_activate(&self, domain: &str) -> Result<Changed> {
        match self {
            Backend::Local(ops) => Ok(ops.dkim_activate(domain).await?),
            Backend::Remote(r) => {
                let c: KeyChange = r
                    .send(Method::POST, &["dkim", domain, "activate"], Body::None)
                    .await?;
                Ok(changed(c))
            }
        }
    }

    /// The retired key's record name, and whether `domain` still has a key that signs.
    pub async fn dkim_retire(&self, domain: &str, selector: &str) -> Result<(String, bool)> {
        match self {
            Backend::Local(ops) => Ok(ops.dkim_retire(domain, selector).await?),
            Backend::Remote(r) => {
                let k: KeyRetired = r
                    .send(
                        Method::POST,
                        &["dkim", domain, selector, "retire"],
                        Body::None,
                    )
                    .await?;
                Ok((k.record, k.still_signed))
            }
        }
    }

    /// The deleted key's record name.
    pub async fn dkim_delete(&self, domain: &str, selector: &str) -> Result<String> {
        match self {
            Backend::Local(ops) => Ok(ops.dkim_delete(domain, selector).await?),
            Backend::Remote(r) => {
                let k: KeyDeleted = r
                    .send(Method::DELETE, &["dkim", domain, selector], Body::None)
                    .await?;
                Ok(k.record)
            }
        }
    }

    /// The keys (of `domain` only, when given) with their records.
    pub async fn dkim_list(&self, domain: Option<&str>) -> Result<Vec<KeyInfo>> {
        match self {
            Backend::Local(ops) => Ok(ops
                .dkim_list(domain)
                .await?
                .into_iter()
                .map(KeyInfo::from)
                .collect()),
            Backend::Remote(r) => {
                let mut query = Vec::new();
                opt(&mut query, "domain", &domain.map(str::to_string));
                r.list(&["dkim"], &query, 0, 0).await
            }
        }
    }

    /// The key's record as the gateway's resolver finds it.
    pub async fn dkim_check_dns(&self, domain: &str, selector: &str) -> Result<DnsCheck> {
        match self {
            Backend::Local(ops) => Ok(ops.dkim_check_dns(domain, selector).await?),
            Backend::Remote(r) => r.get(&["dkim", domain, selector, "check"], &[]).await,
        }
    }

    /// Reports received, newest first.
    pub async fn report_list(&self, q: &ReportQuery) -> Result<Vec<ReportSummary>> {
        match self {
            Backend::Local(ops) => Ok(ops.report_list(q).await?),
            Backend::Remote(r) => {
                let mut query = Vec::new();
                opt(&mut query, "kind", &q.kind);
                opt(&mut query, "domain", &q.domain);
                opt(&mut query, "org", &q.org);
                opt(&mut query, "since", &q.since.map(|t| t.to_string()));
                opt(&mut query, "until", &q.until.map(|t| t.to_string()));
                // As the store: 0 or less is its largest page.
                let limit = if q.limit > 0 { q.limit } else { 1000 };
                r.list(&["reports"], &query, limit, q.offset.max(0)).await
            }
        }
    }

    pub async fn report_get(&self, id: &str) -> Result<StoredReport> {
        match self {
            Backend::Local(ops) => Ok(ops.report_get(id).await?),
            Backend::Remote(r) => {
                let v: ReportView = r.get(&["reports", id], &[]).await?;
                Ok(StoredReport {
                    report: report_text(&v.summary.kind, v.report),
                    summary: v.summary,
                })
            }
        }
    }
}
