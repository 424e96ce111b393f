//! The policy as one TOML document (`config export|import`): domains and their routes,
//! internal networks, rules, lists and content lists, for review and version control.
//! Route passwords are never exported.

use crate::filter::{check_content, check_entry, check_rules, parse_toml};
use crate::{Access, Ops, OpsError, Result, Scope};
use portcullis_filter::rules::Rule;
use portcullis_store::{ContentRow, ListEntry, Route};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    #[serde(default)]
    pub domain: Vec<DomainDoc>,
    #[serde(default)]
    pub network: Vec<NetworkDoc>,
    #[serde(default)]
    pub rule: Vec<Rule>,
    #[serde(default)]
    pub list: Vec<ListEntry>,
    #[serde(default)]
    pub content: Vec<ContentRow>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DomainDoc {
    pub name: String,
    pub routes: Vec<RouteDoc>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDoc {
    pub host: String,
    pub port: u16,
    pub priority: u32,
    pub tls: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_user: Option<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkDoc {
    pub cidr: ipnet::IpNet,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
}

/// How much an import brought in.
#[derive(Debug, Clone, Copy, Default)]
pub struct Imported {
    pub domains: usize,
    pub networks: usize,
    pub rules: usize,
    pub list_entries: usize,
    pub content_patterns: usize,
}

impl Ops {
    pub async fn policy_export(&self) -> Result<String> {
        self.actor().require(Access::ReadPolicy, &Scope::Global)?;
        let store = &self.store;
        let doc = PolicyDoc {
            domain: store
                .list_domains()
                .await?
                .into_iter()
                .map(|d| DomainDoc {
                    name: d.name,
                    routes: d
                        .routes
                        .into_iter()
                        .map(|r| RouteDoc {
                            host: r.host,
                            port: r.port,
                            priority: r.priority,
                            tls: r.tls,
                            auth_user: r.auth_user,
                        })
                        .collect(),
                })
                .collect(),
            network: store
                .list_networks()
                .await?
                .into_iter()
                .map(|(cidr, comment)| NetworkDoc { cidr, comment })
                .collect(),
            rule: self.list_rules().await?,
            list: store.list_entries().await?,
            content: store.list_content_patterns().await?,
        };
        toml::to_string(&doc).map_err(|e| OpsError::Document {
            origin: "export".into(),
            reason: e.to_string(),
        })
    }

    /// Replace the rules and lists, and add the domains and networks, of a document as
    /// [`Ops::policy_export`] writes it; everything is checked before anything changes.
    pub async fn policy_import(&self, text: &str, origin: &str) -> Result<Imported> {
        self.actor().require(Access::WritePolicy, &Scope::Global)?;
        let doc: PolicyDoc = parse_toml(text, origin)?;
        check_rules(&doc.rule, origin)?;
        let in_doc = |what: &str, e: OpsError| OpsError::Document {
            origin: origin.to_string(),
            reason: format!("{what}: {e}"),
        };
        for e in &doc.list {
            check_entry(e).map_err(|e| in_doc("list entry", e))?;
        }
        for r in &doc.content {
            check_content(r).map_err(|e| in_doc("content pattern", e))?;
        }
        for d in &doc.domain {
            let routes: Vec<Route> = d
                .routes
                .iter()
                .map(|r| Route {
                    host: r.host.clone(),
                    port: r.port,
                    priority: r.priority,
                    tls: r.tls.clone(),
                    auth_user: r.auth_user.clone(),
                    auth_password: None,
                })
                .collect();
            self.store.add_domain(&d.name, &routes).await?;
        }
        for n in &doc.network {
            self.store.add_network(n.cidr, &n.comment).await?;
        }
        let mut rules = Vec::new();
        for r in &doc.rule {
            let json = serde_json::to_string(r).map_err(|e| {
                in_doc(
                    "rule",
                    OpsError::Document {
                        origin: r.name.clone(),
                        reason: e.to_string(),
                    },
                )
            })?;
            rules.push((r.name.clone(), json));
        }
        self.store
            .replace_filter_policy(&rules, &doc.list, &doc.content)
            .await?;
        let imported = Imported {
            domains: doc.domain.len(),
            networks: doc.network.len(),
            rules: doc.rule.len(),
            list_entries: doc.list.len(),
            content_patterns: doc.content.len(),
        };
        let after = json!({
            "domains": imported.domains,
            "networks": imported.networks,
            "rules": imported.rules,
            "list_entries": imported.list_entries,
            "content_patterns": imported.content_patterns,
        });
        self.audit("policy.import", origin, None, Some(after))
            .await?;
        Ok(imported)
    }
}
