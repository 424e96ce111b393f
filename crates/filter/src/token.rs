//! Signed, expiring one-click links for quarantine digests: a token names one quarantine
//! item (or, for the digest-wide actions, one digest), one action and an expiry, and carries an HMAC-SHA256 over them with the
//! gateway's secret, so the portal can act on a click without a login and nobody can
//! forge or extend a link. Format (URL-safe): `<item>.<action>.<expiry>.<mac>`, the MAC
//! in unpadded base64url.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What a link does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAction {
    Release,
    Delete,
    /// Release, and put the sender on the recipient's allow list.
    AllowSender,
    /// Release every message a digest listed (the token names the digest).
    ReleaseAll,
    /// Show and change the digest recipient's digest frequency (the token names the
    /// digest).
    Settings,
}

impl LinkAction {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkAction::Release => "release",
            LinkAction::Delete => "delete",
            LinkAction::AllowSender => "allow",
            LinkAction::ReleaseAll => "release-all",
            LinkAction::Settings => "settings",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "release" => LinkAction::Release,
            "delete" => LinkAction::Delete,
            "allow" => LinkAction::AllowSender,
            "release-all" => LinkAction::ReleaseAll,
            "settings" => LinkAction::Settings,
            _ => return None,
        })
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    BadSignature,
    Expired,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenError::Malformed => "the link is malformed",
            TokenError::BadSignature => "the link's signature is not valid",
            TokenError::Expired => "the link has expired",
        })
    }
}

/// Signs and checks links with one secret (at least 32 bytes, shared by a cluster).
pub struct LinkSigner {
    key: hmac::Key,
}

impl LinkSigner {
    pub fn new(secret: &[u8]) -> Self {
        assert!(secret.len() >= 32, "link secret too short");
        LinkSigner {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    fn payload(item: &str, action: LinkAction, expires: i64) -> String {
        format!("{item}.{}.{expires}", action.as_str())
    }

    pub fn sign(&self, item: &str, action: LinkAction, expires: i64) -> String {
        let payload = Self::payload(item, action, expires);
        let tag = hmac::sign(&self.key, payload.as_bytes());
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The item and action of a valid, unexpired token.
    pub fn verify(&self, token: &str, now: i64) -> Result<(String, LinkAction), TokenError> {
        let mut parts = token.rsplitn(4, '.');
        let (Some(mac), Some(expires), Some(action), Some(item)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let action = LinkAction::parse(action).ok_or(TokenError::Malformed)?;
        // Digits only: the MAC is checked over the value as printed again.
        if expires.is_empty() || expires.len() > 18 || !expires.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(TokenError::Malformed);
        }
        let expires: i64 = expires.parse().map_err(|_| TokenError::Malformed)?;
        if item.is_empty() || !item.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.') {
            return Err(TokenError::Malformed);
        }
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| TokenError::Malformed)?;
        // Constant-time comparison inside verify.
        hmac::verify(
            &self.key,
            Self::payload(item, action, expires).as_bytes(),
            &mac,
        )
        .map_err(|_| TokenError::BadSignature)?;
        if now >= expires {
            return Err(TokenError::Expired);
        }
        Ok((item.to_string(), action))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_expire_and_tamper() {
        let s = LinkSigner::new(&[7u8; 32]);
        let t = s.sign("0192AB.1", LinkAction::Release, 1000);
        assert_eq!(
            s.verify(&t, 999),
            Ok(("0192AB.1".to_string(), LinkAction::Release))
        );
        assert_eq!(s.verify(&t, 1000), Err(TokenError::Expired));
        // The digest-wide actions name a digest.
        for action in [LinkAction::ReleaseAll, LinkAction::Settings] {
            let t = s.sign("0192ABD", action, 1000);
            assert_eq!(s.verify(&t, 999), Ok(("0192ABD".to_string(), action)));
        }
        // Another action, item or expiry with the same MAC fails.
        let mac = t.rsplit('.').next().unwrap();
        for forged in [
            format!("0192AB.1.delete.1000.{mac}"),
            format!("0192AB.2.release.1000.{mac}"),
            format!("0192AB.1.release.99999.{mac}"),
            format!("0192AB.1.release-all.1000.{mac}"),
            format!("0192AB.1.settings.1000.{mac}"),
        ] {
            assert_eq!(
                s.verify(&forged, 0),
                Err(TokenError::BadSignature),
                "{forged}"
            );
        }
        // Another key fails.
        assert_eq!(
            LinkSigner::new(&[8u8; 32]).verify(&t, 0),
            Err(TokenError::BadSignature)
        );
        for junk in [
            "",
            "a.b",
            "x.release.1.!!",
            "x.fly.1.AAAA",
            "x/y.release.5.AAAA",
            "x.release.+5.AAAA",
        ] {
            assert_eq!(s.verify(junk, 0), Err(TokenError::Malformed), "{junk}");
        }
        let a = s.sign("ID.3", LinkAction::AllowSender, 50);
        assert_eq!(s.verify(&a, 0).unwrap().1, LinkAction::AllowSender);
    }
}
