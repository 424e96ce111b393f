//! SASL PLAIN (RFC 4616) and LOGIN for SMTP AUTH (RFC 4954): decoding the client's
//! responses into a user name and password. Checking them is the caller's job.

use crate::reply::Reply;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Where an AUTH exchange stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// PLAIN without an initial response: waiting for it.
    PlainResponse,
    /// LOGIN: waiting for the user name.
    LoginUser,
    /// LOGIN: waiting for the password.
    LoginPassword { username: String },
    /// Credentials complete.
    Done { username: String, password: String },
}

impl AuthStep {
    /// The 334 challenge that asks for the next response.
    pub fn challenge(&self) -> Reply {
        let text = match self {
            AuthStep::LoginUser => "VXNlcm5hbWU6",
            AuthStep::LoginPassword { .. } => "UGFzc3dvcmQ6",
            _ => "",
        };
        Reply {
            code: 334,
            status: None,
            lines: vec![text.to_string()],
        }
    }

    /// Take one response line (with its CRLF).
    pub fn respond(self, line: &[u8]) -> Result<AuthStep, Reply> {
        let line = trim_crlf(line);
        if line == b"*" {
            return Err(Reply::new(501, "5.0.0", "Authentication cancelled"));
        }
        let decoded = decode(line)?;
        match self {
            AuthStep::PlainResponse => plain(&decoded),
            AuthStep::LoginUser => Ok(AuthStep::LoginPassword {
                username: utf8(decoded)?,
            }),
            AuthStep::LoginPassword { username } => Ok(AuthStep::Done {
                username,
                password: utf8(decoded)?,
            }),
            AuthStep::Done { .. } => Err(Reply::new(503, "5.5.1", "Error: bad sequence")),
        }
    }
}

/// Begin an AUTH command. `initial` is the initial response, empty when none was given.
pub fn start(mechanism: u64, initial: &str) -> Result<AuthStep, Reply> {
    match mechanism {
        smtp_proto::AUTH_PLAIN if initial.is_empty() => Ok(AuthStep::PlainResponse),
        smtp_proto::AUTH_PLAIN if initial == "=" => plain(&[]),
        smtp_proto::AUTH_PLAIN => plain(&decode(initial.as_bytes())?),
        smtp_proto::AUTH_LOGIN if initial.is_empty() => Ok(AuthStep::LoginUser),
        smtp_proto::AUTH_LOGIN => Ok(AuthStep::LoginPassword {
            username: utf8(decode(initial.as_bytes())?)?,
        }),
        _ => Err(Reply::new(
            504,
            "5.5.4",
            "Unrecognized authentication mechanism",
        )),
    }
}

/// PLAIN: `authzid NUL authcid NUL password`. An authzid different from the authcid
/// would let one user submit as another, so it is refused.
fn plain(decoded: &[u8]) -> Result<AuthStep, Reply> {
    let mut parts = decoded.split(|&b| b == 0);
    let (Some(authz), Some(user), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reply::new(501, "5.5.2", "Invalid PLAIN response"));
    };
    if !authz.is_empty() && authz != user {
        return Err(Reply::new(
            535,
            "5.7.8",
            "Authorization identity not permitted",
        ));
    }
    Ok(AuthStep::Done {
        username: utf8(user.to_vec())?,
        password: utf8(pass.to_vec())?,
    })
}

fn decode(b64: &[u8]) -> Result<Vec<u8>, Reply> {
    STANDARD
        .decode(b64)
        .map_err(|_| Reply::new(501, "5.5.2", "Invalid base64 in response"))
}

fn utf8(bytes: Vec<u8>) -> Result<String, Reply> {
    String::from_utf8(bytes).map_err(|_| Reply::new(501, "5.5.2", "Credentials are not UTF-8"))
}

fn trim_crlf(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_initial_response() {
        let initial = STANDARD.encode(b"\0alice@example.com\0secret");
        assert_eq!(
            start(smtp_proto::AUTH_PLAIN, &initial),
            Ok(AuthStep::Done {
                username: "alice@example.com".into(),
                password: "secret".into()
            })
        );
    }

    #[test]
    fn plain_rejects_other_authzid() {
        let initial = STANDARD.encode(b"bob\0alice\0secret");
        assert_eq!(
            start(smtp_proto::AUTH_PLAIN, &initial).unwrap_err().code,
            535
        );
    }

    #[test]
    fn login_two_steps_and_cancel() {
        let step = start(smtp_proto::AUTH_LOGIN, "").unwrap();
        assert_eq!(step.challenge().to_bytes(), b"334 VXNlcm5hbWU6\r\n");
        let step = step.respond(b"YWxpY2U=\r\n").unwrap();
        let done = step.respond(b"c2VjcmV0\r\n").unwrap();
        assert_eq!(
            done,
            AuthStep::Done {
                username: "alice".into(),
                password: "secret".into()
            }
        );
        let cancelled = AuthStep::LoginUser.respond(b"*\r\n").unwrap_err();
        assert_eq!(cancelled.code, 501);
    }
}
