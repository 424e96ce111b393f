//! Domains and their routes, internal networks, and users: the policy that decides who
//! may send through the gateway and where accepted mail goes.

use crate::{Ops, OpsError, Result};
use ipnet::IpNet;
use portcullis_gateway::policy::{parse_host_port, split_address};
use portcullis_store::{Domain, Route, TLS_MODES};

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

impl Ops {
    /// Accept mail for `domain` and relay it to the routes given; replaces the routes of a
    /// domain already there.
    pub async fn add_domain(&self, domain: &str, spec: &RoutesSpec) -> Result<String> {
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
        self.store.add_domain(domain, &list).await?;
        Ok(domain.trim().trim_end_matches('.').to_ascii_lowercase())
    }

    pub async fn list_domains(&self) -> Result<Vec<Domain>> {
        Ok(self.store.list_domains().await?)
    }

    pub async fn remove_domain(&self, domain: &str) -> Result<()> {
        if !self.store.remove_domain(domain).await? {
            return Err(OpsError::not_found("domain", domain));
        }
        Ok(())
    }

    /// Let `cidr` relay outbound; the network as stored (host bits cleared).
    pub async fn add_network(&self, cidr: &str, comment: &str) -> Result<IpNet> {
        let net = parse_network(cidr)?;
        self.store.add_network(net, comment).await?;
        Ok(net.trunc())
    }

    pub async fn list_networks(&self) -> Result<Vec<(IpNet, String)>> {
        Ok(self.store.list_networks().await?)
    }

    pub async fn remove_network(&self, cidr: &str) -> Result<()> {
        if !self.store.remove_network(parse_network(cidr)?).await? {
            return Err(OpsError::not_found("network", cidr));
        }
        Ok(())
    }

    /// Add a user for SMTP AUTH, or change the password of one; the address as stored.
    pub async fn add_user(&self, email: &str, password: &str) -> Result<String> {
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
        Ok(email.to_ascii_lowercase())
    }

    pub async fn list_users(&self) -> Result<Vec<String>> {
        Ok(self.store.list_users().await?)
    }

    pub async fn remove_user(&self, email: &str) -> Result<()> {
        if !self.store.remove_user(email).await? {
            return Err(OpsError::not_found("user", email));
        }
        Ok(())
    }
}
