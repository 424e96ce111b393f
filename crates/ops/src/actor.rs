//! Who is calling the operations layer, and what they may do. Every operation asks the
//! [`Actor`] of its [`Ops`](crate::Ops) handle before it reads or changes anything:
//! [`Actor::require`] with the kind of access ([`Access`]) and what it touches
//! ([`Scope`]). The command line acts as a local administrator; the REST API and the
//! console act as the account or token that authenticated. The same checks hold for all
//! three, so a role cannot do through one what another refuses.

use crate::{OpsError, Result};
use std::net::IpAddr;

/// The roles of the console and the API (Proxmox Mail Gateway's roles, named for what
/// the people in them do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything.
    Admin,
    /// Only its domains: their messages, quarantine, users, lists and rules scoped to them.
    DomainAdmin,
    /// Reads the message log, the queue and the quarantine, and releases; no configuration.
    Helpdesk,
    /// Reads everything (the audit log too), changes nothing.
    Auditor,
    /// Its own quarantine and its own allow/block lists.
    User,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::DomainAdmin,
        Role::Helpdesk,
        Role::Auditor,
        Role::User,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::DomainAdmin => "domain-admin",
            Role::Helpdesk => "helpdesk",
            Role::Auditor => "auditor",
            Role::User => "user",
        }
    }

    pub fn parse(s: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| {
                OpsError::invalid(
                    "role",
                    s,
                    "expected admin, domain-admin, helpdesk, auditor or user",
                )
            })
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Through which door the call came; written to the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Cli,
    Api,
    Console,
    /// The gateway itself (digests, expiry, a digest link's signed token).
    System,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Cli => "cli",
            Via::Api => "api",
            Via::Console => "console",
            Via::System => "system",
        }
    }
}

/// The kind of access an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read policy and settings: domains, routes, networks, users, rules, lists, keys,
    /// reports.
    ReadPolicy,
    /// Change them.
    WritePolicy,
    /// Read the message log, the queue and the quarantine (with message bodies).
    ReadMessages,
    /// Release quarantined mail (also with the sender allowed), report it as spam.
    ReleaseMessages,
    /// Delete quarantined or queued mail, hold, release and flush the queue.
    ManageMessages,
    /// Console accounts and API tokens of others.
    ManageAccounts,
    /// The audit log.
    ReadAudit,
    /// The gateway's counters (Prometheus `/metrics`): whole-gateway roles only
    /// (administrator, auditor), since they count every domain's mail.
    ReadMetrics,
}

impl Access {
    fn writes(self) -> bool {
        matches!(
            self,
            Access::WritePolicy
                | Access::ReleaseMessages
                | Access::ManageMessages
                | Access::ManageAccounts
        )
    }
}

/// What an operation touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Gateway-wide things: internal networks, global rules and lists, settings, the
    /// whole queue.
    Global,
    /// One domain's things (its routes, its rules, its messages).
    Domain(String),
    /// One mailbox's things (its quarantine, its allow/block lists).
    Address(String),
}

impl Scope {
    pub fn domain(d: &str) -> Scope {
        Scope::Domain(d.trim().trim_end_matches('.').to_ascii_lowercase())
    }

    pub fn address(a: &str) -> Scope {
        Scope::Address(a.trim().to_ascii_lowercase())
    }

    /// The domain a scope belongs to, if it is not global.
    fn domain_name(&self) -> Option<&str> {
        match self {
            Scope::Global => None,
            Scope::Domain(d) => Some(d),
            Scope::Address(a) => a.rsplit_once('@').map(|(_, d)| d),
        }
    }
}

/// The caller of an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The account name (`alice@example.com`), the token's name (`token:backup`), or
    /// `cli:<unix user>` for the command line.
    pub name: String,
    pub role: Role,
    /// A domain-admin's domains (lower case); empty for the other roles.
    pub domains: Vec<String>,
    /// A user's own address (lower case); empty for the other roles.
    pub address: String,
    /// A read-only API token: no change, whatever the role allows.
    pub read_only: bool,
    pub via: Via,
    /// Where the call came from (the HTTP client), for the audit log.
    pub remote: Option<IpAddr>,
}

impl Actor {
    /// The command line on this machine: whoever can read the configuration and the
    /// store is an administrator already.
    pub fn cli() -> Actor {
        let user = std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".to_string());
        Actor {
            name: format!("cli:{user}"),
            role: Role::Admin,
            domains: Vec::new(),
            address: String::new(),
            read_only: false,
            via: Via::Cli,
            remote: None,
        }
    }

    /// The gateway acting on its own (`what` names the task: `digest`, `digest-link`).
    pub fn system(what: &str) -> Actor {
        Actor {
            name: format!("system:{what}"),
            role: Role::Admin,
            domains: Vec::new(),
            address: String::new(),
            read_only: false,
            via: Via::System,
            remote: None,
        }
    }

    /// Whether this actor may have `access` to `scope`.
    pub fn may(&self, access: Access, scope: &Scope) -> bool {
        if self.read_only && access.writes() {
            return false;
        }
        match self.role {
            Role::Admin => true,
            Role::Auditor => !access.writes(),
            Role::Helpdesk => matches!(
                access,
                Access::ReadMessages | Access::ReleaseMessages | Access::ReadPolicy
            ),
            Role::DomainAdmin => {
                access != Access::ReadAudit
                    && scope
                        .domain_name()
                        .is_some_and(|d| self.domains.iter().any(|own| own == d))
            }
            Role::User => {
                matches!(
                    access,
                    Access::ReadMessages
                        | Access::ReleaseMessages
                        | Access::WritePolicy
                        | Access::ReadPolicy
                ) && matches!(scope, Scope::Address(a) if *a == self.address)
            }
        }
    }

    /// [`Actor::may`], or [`OpsError::Forbidden`] saying who may not do what.
    pub fn require(&self, access: Access, scope: &Scope) -> Result<()> {
        if self.may(access, scope) {
            return Ok(());
        }
        let on = match scope {
            Scope::Global => "gateway-wide settings".to_string(),
            Scope::Domain(d) => format!("domain {d}"),
            Scope::Address(a) => format!("mailbox {a}"),
        };
        let what = match access {
            Access::ReadPolicy => "read the policy of",
            Access::WritePolicy => "change the policy of",
            Access::ReadMessages => "read the messages of",
            Access::ReleaseMessages => "release the messages of",
            Access::ManageMessages => "delete or hold the messages of",
            Access::ManageAccounts => "manage the accounts of",
            Access::ReadAudit => "read the audit log of",
            Access::ReadMetrics => "read the metrics of",
        };
        let token = if self.read_only {
            " (read-only token)"
        } else {
            ""
        };
        Err(OpsError::Forbidden(format!(
            "{} ({}{token}) may not {what} {on}",
            self.name, self.role
        )))
    }

    /// Whether this actor sees everything of this kind, so that a list needs no filter.
    pub fn sees_all(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Auditor | Role::Helpdesk)
    }

    /// The mail this actor may see, as the store narrows a query to it.
    pub fn sees(&self) -> portcullis_store::Sees {
        match self.role {
            _ if self.sees_all() => portcullis_store::Sees::All,
            Role::DomainAdmin => portcullis_store::Sees::Domains(self.domains.clone()),
            _ => portcullis_store::Sees::Address(self.address.clone()),
        }
    }

    /// Whether this actor may have `access` to mail with these addresses (a sender and
    /// recipients): to any one of them.
    pub fn may_any(&self, access: Access, addresses: &[&str]) -> bool {
        self.may(access, &Scope::Global)
            || addresses
                .iter()
                .any(|a| !a.is_empty() && self.may(access, &Scope::address(a)))
    }

    /// The scope of a list entry, a rule or an account: empty is gateway-wide, an address
    /// a mailbox's, anything else a domain's.
    pub fn scope_of(scope: &str) -> Scope {
        let scope = scope.trim();
        if scope.is_empty() {
            Scope::Global
        } else if scope.contains('@') {
            Scope::address(scope)
        } else {
            Scope::domain(scope)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(role: Role) -> Actor {
        Actor {
            name: "t".into(),
            role,
            domains: vec!["example.com".into()],
            address: "bob@example.com".into(),
            read_only: false,
            via: Via::Api,
            remote: None,
        }
    }

    #[test]
    fn roles() {
        let own = Scope::domain("Example.COM.");
        let other = Scope::domain("example.org");
        let bob = Scope::address("Bob@example.com");
        let carol = Scope::address("carol@example.com");

        assert!(actor(Role::Admin).may(Access::ManageAccounts, &Scope::Global));
        assert!(actor(Role::Auditor).may(Access::ReadAudit, &Scope::Global));
        assert!(!actor(Role::Auditor).may(Access::WritePolicy, &own));
        assert!(actor(Role::Helpdesk).may(Access::ReleaseMessages, &other));
        assert!(!actor(Role::Helpdesk).may(Access::ManageMessages, &other));
        assert!(!actor(Role::Helpdesk).may(Access::WritePolicy, &Scope::Global));
        assert!(actor(Role::DomainAdmin).may(Access::WritePolicy, &own));
        assert!(actor(Role::DomainAdmin).may(Access::ReleaseMessages, &carol));
        assert!(!actor(Role::DomainAdmin).may(Access::ReadMessages, &other));
        assert!(!actor(Role::DomainAdmin).may(Access::WritePolicy, &Scope::Global));
        assert!(actor(Role::User).may(Access::ReleaseMessages, &bob));
        assert!(!actor(Role::User).may(Access::ReleaseMessages, &carol));
        assert!(!actor(Role::User).may(Access::ManageMessages, &bob));

        // The metrics count every domain's mail: whole-gateway roles only.
        assert!(actor(Role::Admin).may(Access::ReadMetrics, &Scope::Global));
        assert!(actor(Role::Auditor).may(Access::ReadMetrics, &Scope::Global));
        for role in [Role::Helpdesk, Role::DomainAdmin, Role::User] {
            assert!(
                !actor(role).may(Access::ReadMetrics, &Scope::Global),
                "{role}"
            );
        }

        let mut token = actor(Role::Admin);
        token.read_only = true;
        assert!(token.may(Access::ReadMessages, &Scope::Global));
        let e = token.require(Access::WritePolicy, &own).unwrap_err();
        assert_eq!(e.status(), 403);
        assert!(e.to_string().contains("read-only token"), "{e}");
    }
}
