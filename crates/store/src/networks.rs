//! Internal networks whose clients may relay outbound mail. Owns the `networks` table; matching a
//! client address against these networks is the caller's job.

use ipnet::IpNet;

use crate::engine::on_pool;
use crate::{Store, StoreError};

impl Store {
    /// Adds `net` (stored in canonical form, host bits cleared) or replaces its comment.
    pub async fn add_network(&self, net: IpNet, comment: &str) -> Result<(), StoreError> {
        let net = net.trunc();
        let context = format!("adding network {net}");
        on_pool!(&self.pool, |p| sqlx::query(
            "INSERT INTO networks (cidr, comment) VALUES ($1, $2) \
             ON CONFLICT (cidr) DO UPDATE SET comment = excluded.comment",
        )
        .bind(net.to_string())
        .bind(comment)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(&context))?;
        Ok(())
    }

    /// Removes `net` (compared in canonical form). Returns whether it was present.
    pub async fn remove_network(&self, net: IpNet) -> Result<bool, StoreError> {
        let net = net.trunc();
        let context = format!("removing network {net}");
        let done = on_pool!(&self.pool, |p| sqlx::query(
            "DELETE FROM networks WHERE cidr = $1"
        )
        .bind(net.to_string())
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(&context))?;
        Ok(done > 0)
    }

    /// All internal networks with their comments, IPv4 before IPv6, in address order.
    pub async fn list_networks(&self) -> Result<Vec<(IpNet, String)>, StoreError> {
        let context = "listing networks";
        let rows: Vec<(String, String)> = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT cidr, comment FROM networks"
        )
        .fetch_all(p)
        .await)
        .map_err(StoreError::query(context))?;
        let mut nets = rows
            .into_iter()
            .map(|(cidr, comment)| {
                cidr.parse::<IpNet>()
                    .map(|net| (net, comment))
                    .map_err(|e| StoreError::corrupt(context, format!("network {cidr:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Text order would put 10.0.0.0/8 after 100.0.0.0/8; sort as addresses instead.
        nets.sort_by_key(|(net, _)| *net);
        Ok(nets)
    }
}
