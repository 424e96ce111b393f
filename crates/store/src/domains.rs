//! Domains the gateway accepts inbound mail for, and the ordered routes to each domain's own servers.
//! Owns the `domains` and `domain_routes` tables; it does not resolve or contact any host.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::{on_conn, on_pool};
use crate::{Store, StoreError};

/// TLS modes a route may ask for, from weakest to strictest.
/// `dane` requires DNSSEC-validated TLSA records for the route host (RFC 7672).
pub const TLS_MODES: [&str; 5] = ["none", "may", "encrypt", "verify", "dane"];

/// One way to reach a domain's own mail server. Lower `priority` is tried first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Route {
    pub host: String,
    pub port: u16,
    pub priority: u32,
    /// One of [`TLS_MODES`].
    pub tls: String,
    pub auth_user: Option<String>,
    pub auth_password: Option<String>,
}

/// A domain we accept mail for, with its routes sorted by priority.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Domain {
    pub name: String,
    pub routes: Vec<Route>,
}

/// A row of `domain_routes` as read back (`ROUTE_COLUMNS`); port and priority are checked on
/// the way to a [`Route`].
#[derive(sqlx::FromRow)]
struct RouteRow {
    domain: String,
    host: String,
    port: i64,
    priority: i64,
    tls: String,
    auth_user: Option<String>,
    auth_password: Option<String>,
}

const ROUTE_COLUMNS: &str = "domain, host, port, priority, tls, auth_user, auth_password";

/// Domain names compare case-insensitively and `example.com.` is `example.com`, so one spelling is kept.
pub(crate) fn normalize_domain(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn validate_domain(context: &str, name: &str) -> Result<(), StoreError> {
    if name.is_empty() {
        return Err(StoreError::invalid(context, "domain name is empty"));
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c == '@' || c == '/')
    {
        return Err(StoreError::invalid(
            context,
            "a domain name may not contain spaces, '@' or '/'",
        ));
    }
    Ok(())
}

fn validate_route(context: &str, route: &Route) -> Result<(), StoreError> {
    if route.host.trim().is_empty() {
        return Err(StoreError::invalid(context, "route host is empty"));
    }
    if route.port == 0 {
        return Err(StoreError::invalid(
            context,
            format!("route to {} has port 0", route.host),
        ));
    }
    if !TLS_MODES.contains(&route.tls.as_str()) {
        return Err(StoreError::invalid(
            context,
            format!(
                "route to {} has TLS mode {:?}; expected one of {}",
                route.host,
                route.tls,
                TLS_MODES.join(", ")
            ),
        ));
    }
    Ok(())
}

fn route_from_row(context: &str, row: RouteRow) -> Result<(String, Route), StoreError> {
    let RouteRow {
        domain,
        host,
        port,
        priority,
        tls,
        auth_user,
        auth_password,
    } = row;
    let port = u16::try_from(port)
        .map_err(|_| StoreError::corrupt(context, format!("route port {port} out of range")))?;
    let priority = u32::try_from(priority).map_err(|_| {
        StoreError::corrupt(context, format!("route priority {priority} out of range"))
    })?;
    Ok((
        domain,
        Route {
            host,
            port,
            priority,
            tls,
            auth_user,
            auth_password,
        },
    ))
}

impl Store {
    /// Adds `name` with `routes`, or replaces the routes of an existing domain.
    pub async fn add_domain(&self, name: &str, routes: &[Route]) -> Result<(), StoreError> {
        let name = normalize_domain(name);
        let context = format!("adding domain {name}");
        validate_domain(&context, &name)?;
        for route in routes {
            validate_route(&context, route)?;
        }

        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query(&context))?;
        on_conn!(&mut tx, |c| sqlx::query(
            "INSERT INTO domains (name) VALUES ($1) ON CONFLICT (name) DO NOTHING"
        )
        .bind(&name)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(&context))?;
        on_conn!(&mut tx, |c| sqlx::query(
            "DELETE FROM domain_routes WHERE domain = $1"
        )
        .bind(&name)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(&context))?;
        for (seq, route) in routes.iter().enumerate() {
            on_conn!(&mut tx, |c| sqlx::query(
                "INSERT INTO domain_routes \
                 (domain, seq, host, port, priority, tls, auth_user, auth_password) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&name)
            .bind(i64::try_from(seq).unwrap_or(i64::MAX))
            .bind(route.host.trim())
            .bind(i64::from(route.port))
            .bind(i64::from(route.priority))
            .bind(&route.tls)
            .bind(route.auth_user.as_deref())
            .bind(route.auth_password.as_deref())
            .execute(c)
            .await
            .map(|r| r.rows_affected()))
            .map_err(StoreError::query(&context))?;
        }
        tx.commit().await.map_err(StoreError::query(&context))?;
        Ok(())
    }

    /// Removes a domain and its routes. Returns whether it existed.
    pub async fn remove_domain(&self, name: &str) -> Result<bool, StoreError> {
        let name = normalize_domain(name);
        let context = format!("removing domain {name}");
        // Routes go with the domain through ON DELETE CASCADE.
        let done = on_pool!(&self.pool, |p| sqlx::query(
            "DELETE FROM domains WHERE name = $1"
        )
        .bind(&name)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(&context))?;
        Ok(done > 0)
    }

    /// All domains sorted by name, each with its routes sorted by priority.
    pub async fn list_domains(&self) -> Result<Vec<Domain>, StoreError> {
        let context = "listing domains";
        let names: Vec<(String,)> =
            on_pool!(&self.pool, |p| sqlx::query_as("SELECT name FROM domains")
                .fetch_all(p)
                .await)
            .map_err(StoreError::query(context))?;
        let rows: Vec<RouteRow> = on_pool!(&self.pool, |p| sqlx::query_as(sqlx::AssertSqlSafe(
            format!("SELECT {ROUTE_COLUMNS} FROM domain_routes ORDER BY priority, seq")
        ))
        .fetch_all(p)
        .await)
        .map_err(StoreError::query(context))?;

        // Grouped and ordered in Rust so the result does not depend on the engine's text collation.
        let mut domains: BTreeMap<String, Vec<Route>> = names
            .into_iter()
            .map(|(name,)| (name, Vec::new()))
            .collect();
        for row in rows {
            let (domain, route) = route_from_row(context, row)?;
            if let Some(routes) = domains.get_mut(&domain) {
                routes.push(route);
            }
        }
        let domains = domains
            .into_iter()
            .map(|(name, routes)| Domain { name, routes })
            .collect();
        Ok(domains)
    }

    /// One domain with its routes, or `None` if we do not accept mail for it.
    pub async fn get_domain(&self, name: &str) -> Result<Option<Domain>, StoreError> {
        let name = normalize_domain(name);
        let context = format!("reading domain {name}");
        let found: Option<(String,)> = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT name FROM domains WHERE name = $1"
        )
        .bind(&name)
        .fetch_optional(p)
        .await)
        .map_err(StoreError::query(&context))?;
        if found.is_none() {
            return Ok(None);
        }
        let rows: Vec<RouteRow> = on_pool!(&self.pool, |p| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {ROUTE_COLUMNS} FROM domain_routes WHERE domain = $1 ORDER BY priority, seq"
            )))
            .bind(&name)
            .fetch_all(p)
            .await
        })
        .map_err(StoreError::query(&context))?;
        let routes = rows
            .into_iter()
            .map(|row| route_from_row(&context, row).map(|(_, route)| route))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Domain { name, routes }))
    }
}
