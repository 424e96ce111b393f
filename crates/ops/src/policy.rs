//! Domains and their routes, internal networks, and users: the policy that decides who
//! may send through the gateway and where accepted mail goes.

use crate::{Access, Ops, OpsError, Result, Scope};
use ipnet::IpNet;
use portcullis_gateway::policy::{parse_host_port, split_address};
use portcullis_store::{Domain, Route, TLS_MODES};
use serde_json::json;

/// The shortest password a user may have.
pub const MIN_PASSWORD_LEN: usize = 8;

/// A domain's routes as an administrator gives them: `host:port` in priority order, one
/// TLS mode and optional AUTH for all of them.
#[derive(Debug, Clone, Default)]
pub struct RoutesSpec {
    pub routes: Vec<String>,
    pub tls: String,
    pub auth_user: Option<String>,
    pub auth_password: Option<String>,
}

/// An address or network: `10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32`.
pub fn parse_network(s: &str) -> Result<IpNet> {
    s.trim()
        .parse::<IpNet>()
        .or_else(|_| s.trim().parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| {
            OpsError::invalid(
                "network",
                s,
                "expected an address or CIDR such as 10.0.0.0/8",
            )
        })
}

/// SMTP AUTH users belong to their domain: its administrator manages them.
fn user_scope(email: &str) -> Scope {
    match email.trim().rsplit_once('@') {
        Some((_, domain)) => Scope::domain(domain),
        None => Scope::Global,
    }
}

impl Ops {
    /// Accept mail for `domain` and relay it to the routes given; replaces the routes of a
    /// domain already there.
    pub async fn add_domain(&self, domain: &str, spec: &RoutesSpec) -> Result<String> {
        self.actor()
            .require(Access::WritePolicy, &Scope::domain(domain))?;
        if spec.routes.is_empty() {
            return Err(OpsError::invalid(
                "domain",
                domain,
                "give at least one route (host:port of the domain's own server)",
            ));
        }
        if !TLS_MODES.contains(&spec.tls.as_str()) {
            return Err(OpsError::invalid(
                "TLS mode",
                &spec.tls,
                format!("expected one of {}", TLS_MODES.join(", ")),
            ));
        }
        if spec.auth_user.is_some() && spec.auth_password.is_none() {
            return Err(OpsError::invalid(
                "route AUTH user",
                spec.auth_user.as_deref().unwrap_or_default(),
                "needs a password as well",
            ));
        }
        let mut list = Vec::new();
        for (i, r) in spec.routes.iter().enumerate() {
            let (host, port) = parse_host_port(r)
                .ok_or_else(|| OpsError::invalid("route", r, "expected host:port"))?;
            list.push(Route {
                host,
                port,
                priority: (i as u32 + 1) * 10,
                tls: spec.tls.clone(),
                auth_user: spec.auth_user.clone(),
                auth_password: spec.auth_password.clone(),
            });
        }
        let name = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        let before = self.domain_json(&name).await?;
        self.store.add_domain(domain, &list).await?;
        let after = self.domain_json(&name).await?;
        self.audit("domain.add", &name, before, after).await?;
        Ok(name)
    }

    /// The domains the actor may read (all for an administrator, its own for a
    /// domain-admin).
    pub async fn list_domains(&self) -> Result<Vec<Domain>> {
        let actor = self.actor();
        Ok(self
            .store
            .list_domains()
            .await?
            .into_iter()
            .filter(|d| actor.may(Access::ReadPolicy, &Scope::domain(&d.name)))
            .collect())
    }

    /// A domain and its routes for the audit log (route passwords left out).
    async fn domain_json(&self, name: &str) -> Result<Option<serde_json::Value>> {
        Ok(self
            .store
            .list_domains()
            .await?
            .into_iter()
            .find(|d| d.name == name)
            .map(|d| {
                let routes: Vec<serde_json::Value> = d
                    .routes
                    .iter()
                    .map(|r| {
                        json!({
                            "host": r.host,
                            "port": r.port,
                            "priority": r.priority,
                            "tls": r.tls,
                            "auth_user": r.auth_user,
                        })
                    })
                    .collect();
                json!({ "name": d.name, "routes": routes })
            }))
    }

    pub async fn remove_domain(&self, domain: &str) -> Result<()> {
        self.actor()
            .require(Access::WritePolicy, &Scope::domain(domain))?;
        let name = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        let before = self.domain_json(&name).await?;
        if !self.store.remove_domain(domain).await? {
            return Err(OpsError::not_found("domain", domain));
        }
        self.audit("domain.remove", &name, before, None).await
    }

    /// Let `cidr` relay outbound; the network as stored (host bits cleared).
    pub async fn add_network(&self, cidr: &str, comment: &str) -> Result<IpNet> {
        self.actor().require(Access::WritePolicy, &Scope::Global)?;
        let net = parse_network(cidr)?;
        self.store.add_network(net, comment).await?;
        let after = json!({ "cidr": net.trunc().to_string(), "comment": comment });
        self.audit("network.add", &net.trunc().to_string(), None, Some(after))
            .await?;
        Ok(net.trunc())
    }

    pub async fn list_networks(&self) -> Result<Vec<(IpNet, String)>> {
        self.actor().require(Access::ReadPolicy, &Scope::Global)?;
        Ok(self.store.list_networks().await?)
    }

    pub async fn remove_network(&self, cidr: &str) -> Result<()> {
        self.actor().require(Access::WritePolicy, &Scope::Global)?;
        let net = parse_network(cidr)?;
        if !self.store.remove_network(net).await? {
            return Err(OpsError::not_found("network", cidr));
        }
        let before = json!({ "cidr": net.trunc().to_string() });
        self.audit(
            "network.remove",
            &net.trunc().to_string(),
            Some(before),
            None,
        )
        .await
    }

    /// Add a user for SMTP AUTH, or change the password of one; the address as stored.
    pub async fn add_user(&self, email: &str, password: &str) -> Result<String> {
        self.actor()
            .require(Access::WritePolicy, &user_scope(email))?;
        if split_address(email).is_none() {
            return Err(OpsError::invalid(
                "user",
                email,
                "expected an address such as user@example.com",
            ));
        }
        if password.chars().count() < MIN_PASSWORD_LEN {
            return Err(OpsError::Invalid {
                what: "password",
                value: "(not shown)".into(),
                hint: format!("must have at least {MIN_PASSWORD_LEN} characters"),
            });
        }
        let hash =
            portcullis_gateway::users::hash_password(password).map_err(|e| OpsError::Invalid {
                what: "password",
                value: "(not shown)".into(),
                hint: e,
            })?;
        self.store.add_user(email, &hash).await?;
        let email = email.trim().to_lowercase();
        self.audit("user.add", &email, None, Some(json!({ "email": email })))
            .await?;
        Ok(email)
    }

    /// The SMTP AUTH users the actor may read (a domain-admin: its domains').
    pub async fn list_users(&self) -> Result<Vec<String>> {
        let actor = self.actor();
        Ok(self
            .store
            .list_users()
            .await?
            .into_iter()
            .filter(|u| actor.may(Access::ReadPolicy, &user_scope(u)))
            .collect())
    }

    pub async fn remove_user(&self, email: &str) -> Result<()> {
        self.actor()
            .require(Access::WritePolicy, &user_scope(email))?;
        if !self.store.remove_user(email).await? {
            return Err(OpsError::not_found("user", email));
        }
        let email = email.trim().to_lowercase();
        self.audit("user.remove", &email, Some(json!({ "email": email })), None)
            .await
    }
}
