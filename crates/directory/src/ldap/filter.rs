//! Putting a value into a configured filter or DN template: `%s` the whole value, `%u`
//! the local part, `%d` the domain, `%D` a DN, `%%` a percent sign. Values are escaped
//! for where they go (RFC 4515 in a filter, RFC 4514 in a DN), so an address such as
//! `*)(uid=*` cannot widen a search.

use ldap3::{dn_escape, ldap_escape};

/// Where an expanded value goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Filter,
    Dn,
}

/// `template` with its placeholders filled from `value` (an address or login) and `dn`.
pub fn expand(template: &str, value: &str, dn: &str, into: Target) -> String {
    let (local, domain) = value.rsplit_once('@').unwrap_or((value, ""));
    let escape = |v: &str| -> String {
        match into {
            Target::Filter => ldap_escape(v).into_owned(),
            Target::Dn => dn_escape(v).into_owned(),
        }
    };
    let mut out = String::with_capacity(template.len() + value.len() * 2);
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push_str(&escape(value)),
            Some('u') => out.push_str(&escape(local)),
            Some('d') => out.push_str(&escape(domain)),
            // A DN from the server goes into a filter escaped, into a DN as it is.
            Some('D') => match into {
                Target::Filter => out.push_str(&ldap_escape(dn)),
                Target::Dn => out.push_str(dn),
            },
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        assert_eq!(
            expand(
                "(|(mail=%s)(uid=%u)(d=%d))",
                "Al@Ex.org",
                "",
                Target::Filter
            ),
            "(|(mail=Al@Ex.org)(uid=Al)(d=Ex.org))"
        );
        assert_eq!(
            expand("(member=%D)", "", "cn=a (x),dc=o", Target::Filter),
            "(member=cn=a \\28x\\29,dc=o)"
        );
        assert_eq!(
            expand("uid=%u,ou=people,dc=o", "a,b@x", "", Target::Dn),
            "uid=a\\2cb,ou=people,dc=o"
        );
        assert_eq!(expand("100%% %q", "x", "", Target::Filter), "100% %q");
    }

    #[test]
    fn injection_is_escaped() {
        let f = expand("(mail=%s)", "*)(uid=*", "", Target::Filter);
        assert_eq!(f, "(mail=\\2a\\29\\28uid=\\2a)");
    }
}
