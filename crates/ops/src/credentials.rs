//! The secrets of console and API accounts, and nothing about who may do what: argon2id
//! password hashes (with a dummy hash so that an unknown name costs as much as a known one),
//! random session and token secrets kept only as SHA-256 hashes, the breached-password
//! check (Have I Been Pwned's k-anonymity range files in a local directory), TOTP codes and
//! recovery codes.

use crate::{OpsError, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::{Rng, RngCore};
use std::io::BufRead;
use std::path::Path;
use totp_rs::{Builder, Secret, Totp};

/// The shortest password a console or API account may have.
pub const MIN_PASSWORD_LEN: usize = 12;

/// How many recovery codes a TOTP enrolment gives.
pub const RECOVERY_CODES: usize = 10;

/// What the authenticator app shows as the issuer of a TOTP secret.
const TOTP_ISSUER: &str = "Portcullis";

/// A new random secret: 32 bytes, base64url without padding (43 characters).
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A random password of `len` letters and digits.
pub fn random_password(len: usize) -> String {
    rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a secret (hex): what the store keeps of session and token secrets.
pub fn secret_hash(secret: &str) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.trim().as_bytes()).as_ref())
}

fn hidden_password(hint: impl Into<String>) -> OpsError {
    OpsError::Invalid {
        what: "password",
        value: "(not shown)".into(),
        hint: hint.into(),
    }
}

/// An argon2id PHC string of `password` (hashing is slow on purpose, so off the runtime).
pub async fn hash_password(password: &str) -> Result<String> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || portcullis_gateway::users::hash_password(&password))
        .await
        .map_err(|e| hidden_password(format!("hashing failed: {e}")))?
        .map_err(hidden_password)
}

/// Whether `password` matches `hash`. With no hash (no such account) a dummy hash is
/// checked instead, so that the answer takes as long as for an account that exists.
pub async fn verify_password(hash: Option<String>, password: &str) -> bool {
    portcullis_gateway::users::verify_hash(hash, password).await
}

/// A new password is long enough and, when a breach list is configured, not in it.
pub fn check_new_password(password: &str, breached_dir: Option<&Path>) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(hidden_password(format!(
            "must have at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if let Some(dir) = breached_dir {
        match breached(dir, password) {
            Ok(false) => {}
            Ok(true) => {
                return Err(hidden_password(
                    "appears in a breach list of published passwords; choose another",
                ));
            }
            Err(e) => {
                return Err(OpsError::Failed {
                    what: format!("checking the breach list in {}", dir.display()),
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Whether the SHA-1 of `password` is listed in the range file of its first five hex
/// digits (`ABCDE`, lines `SUFFIX:COUNT`). A missing range file lists nothing.
pub fn breached(dir: &Path, password: &str) -> std::io::Result<bool> {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        password.as_bytes(),
    );
    let sha1 = hex(digest.as_ref()).to_ascii_uppercase();
    let (prefix, suffix) = sha1.split_at(5);
    let file = match std::fs::File::open(dir.join(prefix)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        let listed = line.split(':').next().unwrap_or_default().trim();
        if listed.eq_ignore_ascii_case(suffix) {
            // A padding line (count 0) is not a breached password.
            let count = line.split(':').nth(1).map(str::trim).unwrap_or("1");
            return Ok(count != "0");
        }
    }
    Ok(false)
}

/// A new TOTP secret (160 bits, base32).
pub fn new_totp_secret() -> String {
    let mut bytes = vec![0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    Secret::from(bytes).to_base32()
}

/// The TOTP of a base32 secret: SHA-1, 6 digits, 30 s steps, one step of skew each way.
pub fn totp(secret_base32: &str, account: &str) -> Result<Totp> {
    let secret = Secret::try_from_base32(secret_base32).map_err(|e| OpsError::Failed {
        what: format!("the TOTP secret of account {account}"),
        reason: e.to_string(),
    })?;
    Builder::new()
        .with_secret(secret)
        .with_skew(1)
        .with_step_duration(30)
        .with_digits(6)
        .with_account_name(account.replace(':', "_"))
        .with_issuer(Some(TOTP_ISSUER))
        .build()
        .map_err(|e| OpsError::Failed {
            what: format!("the TOTP of account {account}"),
            reason: e.to_string(),
        })
}

/// The time step a code is valid for at `now`, if it is.
pub fn totp_step(totp: &Totp, code: &str, now: i64) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    totp.check(&code, u64::try_from(now).ok()?)
        .and_then(|step| i64::try_from(step).ok())
}

/// The QR code of `text` as an SVG document.
pub fn qr_svg(text: &str) -> Result<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|e| OpsError::Failed {
        what: "drawing the TOTP QR code".into(),
        reason: e.to_string(),
    })?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build())
}

/// Ten new recovery codes (`xxxx-xxxx-xxxx`, lower-case letters and digits).
pub fn new_recovery_codes() -> Vec<String> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..RECOVERY_CODES)
        .map(|_| {
            let chars: Vec<char> = (0..12)
                .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
                .collect();
            chars
                .chunks(4)
                .map(|c| c.iter().collect::<String>())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect()
}

/// The hash kept of a recovery code; spaces, dashes and case do not matter.
pub fn recovery_hash(code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    secret_hash(&normal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_hashed() {
        let a = random_secret();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_secret());
        assert_eq!(secret_hash(&a).len(), 64);
        assert_eq!(
            secret_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(random_password(20).len(), 20);
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        assert_eq!(codes[0].len(), 14);
        assert_eq!(
            recovery_hash(&codes[0].to_uppercase()),
            recovery_hash(&codes[0])
        );
    }

    #[test]
    fn breach_list_in_range_files() {
        let dir = std::env::temp_dir().join(format!("portcullis-hibp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // SHA-1 of "password1234" is E6B6AFBD6D76BB5D2041542D7D2E3FAC5BB05593.
        std::fs::write(
            dir.join("E6B6A"),
            "0018A45C4D1DEF81644B54AB7F969B88D65:1\r\nFBD6D76BB5D2041542D7D2E3FAC5BB05593:4242\r\n",
        )
        .unwrap();
        assert!(breached(&dir, "password1234").unwrap());
        assert!(!breached(&dir, "correct horse battery staple").unwrap());
        let e = check_new_password("password1234", Some(&dir)).unwrap_err();
        assert!(e.to_string().contains("breach list"), "{e}");
        assert!(!e.to_string().contains("password1234"), "{e}");
        check_new_password("password1234", None).unwrap();
        let e = check_new_password("short", None).unwrap_err();
        assert!(e.to_string().contains("12 characters"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn totp_codes_and_steps() {
        let secret = new_totp_secret();
        let t = totp(&secret, "alice").unwrap();
        let now = 1_800_000_000;
        let code = t.generate(now as u64).to_string();
        assert_eq!(totp_step(&t, &code, now), Some(now / 30));
        // One step of skew either way, not two.
        assert!(totp_step(&t, &code, now + 30).is_some());
        assert!(totp_step(&t, &code, now + 61).is_none());
        assert!(totp_step(&t, "12345", now).is_none());
        assert!(t.to_url().unwrap().starts_with("otpauth://totp/"));
        assert!(qr_svg(&t.to_url().unwrap()).unwrap().contains("<svg"));
    }
}
