//! The archive itself: a manifest, then the entries it lists, in a tar stream,
//! gzip-compressed, optionally age-encrypted.
//!
//! Layout: `manifest.json` first (so a reader learns the format before anything else),
//! then `config/portcullis.toml` (when the gateway runs with a file), `store/<table>.jsonl`
//! (the store's engine-neutral dump, see `portcullis_store::dump`) and
//! `spool/<id>.msg` / `spool/<id>.st` (queued messages and their delivery state).
//!
//! Reading never trusts the archive: the manifest is bounded in size, every entry must be
//! listed in it with the same size and SHA-256, nothing outside the listed names is
//! written, and the compressed (and encrypted) stream is read to its end so that its own
//! check (gzip's CRC, age's authenticated chunks) catches truncation.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use age::secrecy::SecretString;
use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};

/// The archive format this version writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST: &str = "manifest.json";
/// A manifest larger than this is refused before it is parsed.
const MAX_MANIFEST: u64 = 16 * 1024 * 1024;
/// How an age file begins (its header line), to tell an encrypted archive from a plain one.
const AGE_MAGIC: &[u8] = b"age-encryption.org/";
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] of the writer.
    pub format: u32,
    /// The Portcullis version that made the archive.
    pub gateway_version: String,
    /// Unix seconds.
    pub created_at: i64,
    /// `sqlite` or `postgres`: where the tables came from.
    pub engine: String,
    /// The store's schema version (its newest migration) when it was dumped.
    pub schema_version: i64,
    pub hostname: String,
    /// Whether the message log (`messages`, `message_recipients`) is included.
    pub with_log: bool,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Path inside the archive, e.g. `store/domains.jsonl`.
    pub path: String,
    pub size: u64,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
}

impl Manifest {
    /// Refuses a manifest this version cannot read or that names unsafe paths.
    pub fn check(&self) -> Result<(), String> {
        if self.format > FORMAT_VERSION {
            return Err(format!(
                "the archive has format version {} (made by Portcullis {}); this version reads up to {FORMAT_VERSION}: restore with a newer Portcullis",
                self.format, self.gateway_version
            ));
        }
        if self.format == 0 {
            return Err("the manifest has format version 0".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for entry in &self.entries {
            if !safe_path(&entry.path) || entry.path == MANIFEST {
                return Err(format!(
                    "the manifest names an unsafe path {:?}",
                    entry.path
                ));
            }
            if !seen.insert(entry.path.as_str()) {
                return Err(format!("the manifest names {} twice", entry.path));
            }
            if entry.sha256.len() != 64 || !entry.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "the manifest's checksum of {} is malformed",
                    entry.path
                ));
            }
        }
        Ok(())
    }

    pub fn entry(&self, path: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.path == path)
    }

    /// Entries under `prefix/` (their names after it).
    pub fn under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a Entry)> {
        self.entries.iter().filter_map(move |e| {
            e.path
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('/'))
                .map(|name| (name, e))
        })
    }
}

/// A relative path of plain names (`store/domains.jsonl`): no `..`, no root, no empty
/// parts, one or two levels.
fn safe_path(path: &str) -> bool {
    let p = Path::new(path);
    let parts: Vec<_> = p.components().collect();
    !path.contains('\\')
        && (1..=2).contains(&parts.len())
        && parts.iter().all(|c| {
            matches!(c, Component::Normal(n) if n.to_str().is_some_and(|s| !s.starts_with('.')))
        })
}

/// SHA-256 and size of a file.
pub fn file_digest(path: &Path) -> io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut context = digest::Context::new(&digest::SHA256);
    let mut buffer = vec![0; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        context.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((hex(context.finish().as_ref()), size))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How an archive is encrypted when it is written.
pub enum Encryption {
    None,
    Passphrase(SecretString),
    /// age recipients: X25519 (`age1...`) or post-quantum hybrid (`age1pq1...`) keys.
    Recipients(Vec<Box<dyn age::Recipient + Send + Sync>>),
}

/// How an encrypted archive is opened.
pub enum Decryption {
    None,
    Passphrase(SecretString),
    /// The identities of an age identity file (`AGE-SECRET-KEY-1...`).
    Identities(Vec<Box<dyn age::Identity + Send + Sync>>),
}

impl Encryption {
    /// Parses `age1...` (X25519) and `age1pq1...` (post-quantum hybrid) recipients.
    pub fn recipients(keys: &[String]) -> Result<Encryption, String> {
        let parsed = keys
            .iter()
            .map(|k| {
                let key = k.trim();
                let parsed: Result<Box<dyn age::Recipient + Send + Sync>, String> =
                    if key.starts_with("age1pq1") {
                        key.parse::<age::pq::Recipient>()
                            .map(|r| Box::new(r) as _)
                            .map_err(|e| e.to_string())
                    } else {
                        // Deprecated in age 0.13 for new keys, but the `age1...` keys
                        // administrators hold today are X25519 ones.
                        #[allow(deprecated)]
                        key.parse::<age::x25519::Recipient>()
                            .map(|r| Box::new(r) as _)
                            .map_err(|e| e.to_string())
                    };
                parsed.map_err(|e| format!("age recipient {k:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Encryption::Recipients(parsed))
    }

    pub fn is_none(&self) -> bool {
        matches!(self, Encryption::None)
    }
}

/// The first line of a file, without its end of line: a passphrase file.
pub fn read_passphrase(path: &Path) -> Result<SecretString, String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("passphrase file {}: {e}", path.display()))?;
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        return Err(format!(
            "passphrase file {}: the first line is empty",
            path.display()
        ));
    }
    Ok(SecretString::from(line))
}

/// The identities of an age identity file.
pub fn read_identities(path: &Path) -> Result<Decryption, String> {
    let file = age::IdentityFile::from_file(path.to_string_lossy().into_owned())
        .map_err(|e| format!("identity file {}: {e}", path.display()))?;
    let identities = file
        .into_identities()
        .map_err(|e| format!("identity file {}: {e}", path.display()))?;
    if identities.is_empty() {
        return Err(format!(
            "identity file {}: no identities in it",
            path.display()
        ));
    }
    Ok(Decryption::Identities(identities))
}

/// The bottom of the writing stack: the file, or age over it.
enum Sink {
    Plain(File),
    Age(age::stream::StreamWriter<File>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(f) => f.write(buf),
            Sink::Age(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(f) => f.flush(),
            Sink::Age(w) => w.flush(),
        }
    }
}

impl Sink {
    fn finish(self) -> io::Result<File> {
        match self {
            Sink::Plain(f) => Ok(f),
            Sink::Age(w) => w.finish(),
        }
    }
}

/// Writes the archive at `out` from the files in `staging` (each manifest entry's path is
/// relative to it), manifest first, and fsyncs it.
pub fn write(
    out: &Path,
    staging: &Path,
    manifest: &Manifest,
    encryption: &Encryption,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), String> {
    let io_err = |e: io::Error| format!("writing {}: {e}", out.display());
    let file = File::create(out).map_err(io_err)?;
    let sink = match encryption {
        Encryption::None => Sink::Plain(file),
        Encryption::Passphrase(p) => Sink::Age(
            age::Encryptor::with_user_passphrase(p.clone())
                .wrap_output(file)
                .map_err(io_err)?,
        ),
        Encryption::Recipients(rs) => Sink::Age(
            age::Encryptor::with_recipients(rs.iter().map(|r| r.as_ref() as &dyn age::Recipient))
                .map_err(|e| format!("encrypting: {e}"))?
                .wrap_output(file)
                .map_err(io_err)?,
        ),
    };
    let gz = flate2::write::GzEncoder::new(sink, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let manifest_bytes =
        serde_json::to_vec_pretty(manifest).map_err(|e| format!("manifest: {e}"))?;
    let mut header = entry_header(manifest_bytes.len() as u64, manifest.created_at);
    tar.append_data(&mut header, MANIFEST, manifest_bytes.as_slice())
        .map_err(io_err)?;
    for entry in &manifest.entries {
        progress(&entry.path);
        let source = staging.join(&entry.path);
        let file = File::open(&source).map_err(|e| format!("{}: {e}", source.display()))?;
        let mut header = entry_header(entry.size, manifest.created_at);
        // Exactly the checksummed bytes: a file that changed since would fail here.
        tar.append_data(&mut header, &entry.path, file.take(entry.size))
            .map_err(io_err)?;
    }
    let file = tar
        .into_inner()
        .and_then(|gz| gz.finish())
        .and_then(Sink::finish)
        .map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    Ok(())
}

fn entry_header(size: u64, mtime: i64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(mtime.max(0) as u64);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

/// Reads the archive at `path`, writing every entry into `staging` (which must exist and be
/// empty) and checking it against the manifest. Returns the manifest once every listed
/// entry is there with its size and checksum and the stream ended cleanly.
pub fn extract(
    path: &Path,
    staging: &Path,
    decryption: &Decryption,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<Manifest, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = BufReader::new(file);
    let head = reader
        .fill_buf()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .to_vec();
    let plain: Box<dyn Read> = if head.starts_with(AGE_MAGIC) {
        let decryptor = age::Decryptor::new_buffered(reader)
            .map_err(|e| format!("{}: not a readable age file: {e}", path.display()))?;
        let decrypted = match decryption {
            Decryption::None => {
                return Err(format!(
                    "{} is encrypted: give --passphrase-file or --identity",
                    path.display()
                ));
            }
            Decryption::Passphrase(p) => {
                if !decryptor.is_scrypt() {
                    return Err(format!(
                        "{} is encrypted to an age key, not a passphrase: give --identity",
                        path.display()
                    ));
                }
                let identity = age::scrypt::Identity::new(p.clone());
                decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity))
            }
            Decryption::Identities(ids) => {
                if decryptor.is_scrypt() {
                    return Err(format!(
                        "{} is encrypted with a passphrase: give --passphrase-file",
                        path.display()
                    ));
                }
                decryptor.decrypt(ids.iter().map(|i| i.as_ref() as &dyn age::Identity))
            }
        };
        Box::new(decrypted.map_err(|e| match e {
            age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys => format!(
                "{}: wrong passphrase or key (the archive cannot be decrypted with it)",
                path.display()
            ),
            e => format!("{}: {e}", path.display()),
        })?)
    } else if head.starts_with(GZIP_MAGIC) {
        Box::new(reader)
    } else {
        return Err(format!(
            "{} is not a Portcullis backup (neither gzip nor age)",
            path.display()
        ));
    };
    let mut gz = flate2::read::GzDecoder::new(plain);
    let corrupt =
        |what: String| format!("{}: damaged or truncated archive: {what}", path.display());
    let manifest = {
        let mut archive = tar::Archive::new(&mut gz);
        let mut entries = archive.entries().map_err(|e| corrupt(e.to_string()))?;
        let mut first = match entries.next() {
            Some(Ok(entry)) => entry,
            Some(Err(e)) => return Err(corrupt(e.to_string())),
            None => return Err(corrupt("it holds nothing".into())),
        };
        let name = entry_name(&first).map_err(&corrupt)?;
        if name != MANIFEST {
            return Err(corrupt(format!("it begins with {name}, not the manifest")));
        }
        if first.size() > MAX_MANIFEST {
            return Err(corrupt("the manifest is too large".into()));
        }
        let mut text = Vec::new();
        first
            .read_to_end(&mut text)
            .map_err(|e| corrupt(e.to_string()))?;
        let manifest: Manifest = serde_json::from_slice(&text)
            .map_err(|e| corrupt(format!("the manifest cannot be read: {e}")))?;
        manifest
            .check()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut found = std::collections::BTreeSet::new();
        for entry in entries {
            let mut entry = entry.map_err(|e| corrupt(e.to_string()))?;
            let name = entry_name(&entry).map_err(&corrupt)?;
            let Some(listed) = manifest.entry(&name) else {
                return Err(corrupt(format!("{name} is not in the manifest")));
            };
            if !found.insert(name.clone()) {
                return Err(corrupt(format!("{name} appears twice")));
            }
            if entry.size() != listed.size {
                return Err(corrupt(format!(
                    "{name} has {} bytes, the manifest says {}",
                    entry.size(),
                    listed.size
                )));
            }
            progress(&name);
            let target = staging.join(&name);
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            let (sha, size) = copy_hashing(&mut entry, &target, listed.size)
                .map_err(|e| corrupt(format!("{name}: {e}")))?;
            if size != listed.size || sha != listed.sha256 {
                return Err(corrupt(format!("{name} does not match its checksum")));
            }
        }
        if let Some(missing) = manifest.entries.iter().find(|e| !found.contains(&e.path)) {
            return Err(corrupt(format!("{} is missing", missing.path)));
        }
        manifest
    };
    // Past the tar's end: the rest of the stream, so that gzip's CRC and length (and age's
    // last chunk) are checked.
    io::copy(&mut gz, &mut io::sink()).map_err(|e| corrupt(e.to_string()))?;
    Ok(manifest)
}

fn entry_name<R: Read>(entry: &tar::Entry<R>) -> Result<String, String> {
    if entry.header().entry_type() != tar::EntryType::Regular {
        return Err("an entry is not a regular file".into());
    }
    let path = entry.path().map_err(|e| e.to_string())?;
    let name = path
        .to_str()
        .ok_or_else(|| "an entry's name is not UTF-8".to_string())?
        .to_string();
    if name != MANIFEST && !safe_path(&name) {
        return Err(format!("unsafe entry name {name:?}"));
    }
    Ok(name)
}

/// Copies at most `limit` bytes of `from` into a new file `to`, fsynced; returns SHA-256
/// and size.
fn copy_hashing(from: &mut impl Read, to: &PathBuf, limit: u64) -> io::Result<(String, u64)> {
    let mut out = File::create(to)?;
    let mut context = digest::Context::new(&digest::SHA256);
    let mut buffer = vec![0; 64 * 1024];
    let mut size = 0u64;
    let mut limited = from.take(limit);
    loop {
        let n = limited.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        context.update(&buffer[..n]);
        out.write_all(&buffer[..n])?;
        size += n as u64;
    }
    out.sync_all()?;
    Ok((hex(context.finish().as_ref()), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staging(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("portcullis-archive-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("store")).unwrap();
        dir
    }

    fn sample(dir: &Path) -> Manifest {
        fs::write(
            dir.join("store/domains.jsonl"),
            b"[\"name\"]\n[\"example.com\"]\n",
        )
        .unwrap();
        let (sha256, size) = file_digest(&dir.join("store/domains.jsonl")).unwrap();
        Manifest {
            format: FORMAT_VERSION,
            gateway_version: "0.1.0".into(),
            created_at: 1_800_000_000,
            engine: "sqlite".into(),
            schema_version: 20,
            hostname: "mx.example.com".into(),
            with_log: true,
            entries: vec![Entry {
                path: "store/domains.jsonl".into(),
                size,
                sha256,
            }],
        }
    }

    fn quiet(_: &str) {}

    #[test]
    fn round_trip_plain_and_encrypted() {
        let dir = staging("rt");
        let manifest = sample(&dir);
        let out = dir.join("a.tar.gz");
        write(&out, &dir, &manifest, &Encryption::None, &quiet).unwrap();
        let back = staging("rt-out");
        assert_eq!(
            extract(&out, &back, &Decryption::None, &quiet).unwrap(),
            manifest
        );
        assert_eq!(
            fs::read(back.join("store/domains.jsonl")).unwrap(),
            fs::read(dir.join("store/domains.jsonl")).unwrap()
        );

        // X25519 keys (deprecated by age for new keys, still the common ones) and
        // post-quantum hybrid keys, each parsed from its text form as the CLI does.
        #[allow(deprecated)]
        let x25519 = age::x25519::Identity::generate();
        #[allow(deprecated)]
        let x25519_public = x25519.to_public().to_string();
        let pq = age::pq::Identity::generate();
        let pq_public = pq.to_public().to_string();
        let keys: [(Box<dyn age::Identity + Send + Sync>, String); 2] =
            [(Box::new(x25519), x25519_public), (Box::new(pq), pq_public)];
        for (key, public) in keys {
            let enc = Encryption::recipients(&[public]).unwrap();
            let sealed = dir.join("b.tar.gz.age");
            write(&sealed, &dir, &manifest, &enc, &quiet).unwrap();
            let err = extract(&sealed, &staging("rt-none"), &Decryption::None, &quiet).unwrap_err();
            assert!(err.contains("is encrypted"), "{err}");
            let other = Decryption::Identities(vec![Box::new(age::pq::Identity::generate())]);
            let err = extract(&sealed, &staging("rt-wrong"), &other, &quiet).unwrap_err();
            assert!(err.contains("wrong passphrase or key"), "{err}");
            let right = Decryption::Identities(vec![key]);
            assert_eq!(
                extract(&sealed, &staging("rt-right"), &right, &quiet).unwrap(),
                manifest
            );
        }
    }

    #[test]
    fn damage_is_refused() {
        let dir = staging("dmg");
        let manifest = sample(&dir);
        let out = dir.join("a.tar.gz");
        write(&out, &dir, &manifest, &Encryption::None, &quiet).unwrap();
        let bytes = fs::read(&out).unwrap();
        let truncated = dir.join("t.tar.gz");
        fs::write(&truncated, &bytes[..bytes.len() - 12]).unwrap();
        let err = extract(&truncated, &staging("dmg-t"), &Decryption::None, &quiet).unwrap_err();
        assert!(err.contains("damaged or truncated"), "{err}");
        for at in [20, bytes.len() / 2, bytes.len() - 6] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x01;
            let path = dir.join("f.tar.gz");
            fs::write(&path, &flipped).unwrap();
            assert!(
                extract(&path, &staging("dmg-f"), &Decryption::None, &quiet).is_err(),
                "byte {at}"
            );
        }
    }

    #[test]
    fn manifest_checks() {
        let dir = staging("chk");
        let mut manifest = sample(&dir);
        assert!(manifest.check().is_ok());
        manifest.format = FORMAT_VERSION + 1;
        assert!(manifest.check().unwrap_err().contains("newer Portcullis"));
        manifest.format = FORMAT_VERSION;
        for bad in ["../x", "/etc/passwd", "a/b/c", "store/.hidden", "", "a\\b"] {
            manifest.entries[0].path = bad.into();
            assert!(manifest.check().is_err(), "{bad}");
        }
        manifest.entries[0].path = "store/x.jsonl".into();
        manifest.entries[0].sha256 = "zz".into();
        assert!(manifest.check().is_err());
        // An entry whose bytes differ from the manifest's checksum.
        let mut manifest = sample(&dir);
        manifest.entries[0].sha256 = "0".repeat(64);
        let out = dir.join("bad-sum.tar.gz");
        write(&out, &dir, &manifest, &Encryption::None, &quiet).unwrap();
        let err = extract(&out, &staging("chk-out"), &Decryption::None, &quiet).unwrap_err();
        assert!(err.contains("does not match its checksum"), "{err}");
    }
}
