//! Backup and restore of one gateway's state (`portcullis backup|restore`, and the
//! scheduled job of `[backup]`).
//!
//! Where the state lives, and what an archive holds of it:
//! - the configuration file, when the gateway runs with one (`config/portcullis.toml`);
//! - the store (SQLite file in the data directory, or PostgreSQL): policy, users and
//!   accounts, DKIM keys (private keys included), quarantined messages with their bodies,
//!   config overrides, reports, counters, and the message log unless left out — as an
//!   engine-neutral dump (`store/<table>.jsonl`), so a backup of one engine restores onto
//!   the other;
//! - the spool's committed messages (`<data_dir>/spool/queue/<id>.msg`, immutable once
//!   renamed there) and their delivery state (`<id>.st`, replaced by rename), as
//!   `spool/<id>.msg|st`. Messages still being received (`spool/tmp/`) are not
//!   acknowledged yet and are left out, as a crash would.
//!
//! Not kept, because a gateway makes them again: the self-signed certificate
//! (`<data_dir>/tls/`), the public suffix list and MTA-STS cache, the control socket.
//! Certificate and key files the configuration names are the administrator's files and
//! stay where they are.

pub mod archive;
pub mod schedule;
pub mod sftp;

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use portcullis_store::Store;

pub use archive::{Decryption, Encryption, FORMAT_VERSION, Manifest};
pub use sftp::{SftpUrl, SshOptions};

use crate::config::Config;

/// The tables of the message log, left out by `--without-log`.
pub const LOG_TABLES: &[&str] = &["messages", "message_recipients"];

/// Where an archive goes or comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    Sftp(SftpUrl),
}

impl Location {
    pub fn parse(text: &str) -> Result<Location, String> {
        if text.starts_with("sftp://") {
            Ok(Location::Sftp(SftpUrl::parse(text)?))
        } else if text.contains("://") {
            Err(format!(
                "{text:?}: a file path or sftp://user@host[:port]/path"
            ))
        } else if text.is_empty() {
            Err("an empty path".into())
        } else {
            Ok(Location::File(PathBuf::from(text)))
        }
    }

    /// A file of this directory.
    pub fn join(&self, name: &str) -> Location {
        match self {
            Location::File(dir) => Location::File(dir.join(name)),
            Location::Sftp(url) => Location::Sftp(url.join(name)),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(p) => write!(f, "{}", p.display()),
            Location::Sftp(u) => {
                write!(f, "sftp://")?;
                if let Some(user) = &u.user {
                    write!(f, "{user}@")?;
                }
                write!(f, "{}", u.host)?;
                if let Some(port) = u.port {
                    write!(f, ":{port}")?;
                }
                write!(f, "/{}", u.path)
            }
        }
    }
}

pub struct BackupOptions {
    pub without_log: bool,
    pub encryption: Encryption,
    pub ssh: SshOptions,
}

/// What [`create`] made.
#[derive(Debug)]
pub struct Created {
    pub manifest: Manifest,
    /// Bytes of the archive.
    pub size: u64,
    pub queued_messages: usize,
}

/// A staging directory in the data directory (same file system as the data, not a
/// possibly small /tmp), removed when dropped.
struct Staging(PathBuf);

impl Staging {
    fn new(data_dir: &Path, what: &str) -> Result<Staging, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = data_dir.join(format!(".{what}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Staging(dir))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `portcullis-20261207T031500Z.tar.gz` (`.age` appended when encrypted): names sort by
/// time, which retention relies on.
pub fn archive_name(created_at: i64, encrypted: bool) -> String {
    let stamp: String = crate::dates::iso(created_at)
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!(
        "portcullis-{stamp}.tar.gz{}",
        if encrypted { ".age" } else { "" }
    )
}

/// The time in an [`archive_name`], for retention and scheduling.
pub fn archive_time(name: &str) -> Option<i64> {
    let stamp = name.strip_prefix("portcullis-")?;
    let stamp = stamp
        .strip_suffix(".tar.gz")
        .or_else(|| stamp.strip_suffix(".tar.gz.age"))?;
    let b = stamp.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let day = crate::dates::parse_ymd(&format!(
        "{}-{}-{}",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8]
    ))?;
    let h: i64 = stamp[9..11].parse().ok()?;
    let m: i64 = stamp[11..13].parse().ok()?;
    let s: i64 = stamp[13..15].parse().ok()?;
    (h < 24 && m < 60 && s < 60).then_some(day + h * 3600 + m * 60 + s)
}

/// Makes an archive of the gateway's state at `to` while the gateway keeps running.
pub async fn create(
    config: &Config,
    config_file: Option<&Path>,
    store: &Store,
    to: &Location,
    options: &BackupOptions,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<Created, String> {
    fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("{}: {e}", config.data_dir.display()))?;
    let staging = Staging::new(&config.data_dir, "backup")?;
    let created_at = portcullis_queue::spool::now();
    for sub in ["store", "spool", "config"] {
        fs::create_dir_all(staging.0.join(sub)).map_err(|e| e.to_string())?;
    }
    let skip: &[&str] = if options.without_log { LOG_TABLES } else { &[] };
    let dump = store
        .dump(&staging.0.join("store"), skip, &|t| {
            progress(&format!("table {t}"))
        })
        .await
        .map_err(|e| format!("copying the store: {e}"))?;
    let mut paths: Vec<String> = dump
        .tables
        .iter()
        .map(|(t, _)| format!("store/{t}.jsonl"))
        .collect();
    if let Some(file) = config_file {
        fs::copy(file, staging.0.join("config/portcullis.toml"))
            .map_err(|e| format!("configuration file {}: {e}", file.display()))?;
        paths.push("config/portcullis.toml".into());
    }
    progress("queued messages");
    let spool_dir = config.data_dir.join("spool").join("queue");
    let copied = copy_spool(&spool_dir, &staging.0.join("spool"))?;
    let queued_messages = copied.iter().filter(|n| n.ends_with(".msg")).count();
    paths.extend(copied.into_iter().map(|n| format!("spool/{n}")));
    let mut entries = Vec::new();
    for path in paths {
        let (sha256, size) =
            archive::file_digest(&staging.0.join(&path)).map_err(|e| format!("{path}: {e}"))?;
        entries.push(archive::Entry { path, size, sha256 });
    }
    let manifest = Manifest {
        format: FORMAT_VERSION,
        gateway_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at,
        engine: dump.engine.to_string(),
        schema_version: dump.schema_version,
        hostname: config.hostname.clone(),
        with_log: !options.without_log,
        entries,
    };
    let written = match to {
        Location::File(path) => {
            let partial = partial_path(path);
            let result = archive::write(
                &partial,
                &staging.0,
                &manifest,
                &options.encryption,
                progress,
            )
            .and_then(|()| {
                fs::rename(&partial, path).map_err(|e| format!("{}: {e}", path.display()))
            });
            if result.is_err() {
                let _ = fs::remove_file(&partial);
            }
            result?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                let _ = File::open(dir).and_then(|d| d.sync_all());
            }
            path.clone()
        }
        Location::Sftp(url) => {
            let local = staging.0.join("archive");
            archive::write(&local, &staging.0, &manifest, &options.encryption, progress)?;
            progress("upload");
            sftp::put(&local, url, &options.ssh)?;
            local
        }
    };
    let size = fs::metadata(&written).map(|m| m.len()).unwrap_or(0);
    Ok(Created {
        manifest,
        size,
        queued_messages,
    })
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    path.with_file_name(name)
}

/// Copies the committed messages of `queue` (and their state files) into `to`; returns the
/// names copied. A message delivered while it is copied is left out: its file leaves
/// `queue/` by rename before it is ever reused, so a copy is good when the name still
/// points at the same file afterwards.
fn copy_spool(queue: &Path, to: &Path) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let listing = match fs::read_dir(queue) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(format!("{}: {e}", queue.display())),
    };
    let mut ids = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| format!("{}: {e}", queue.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(id) = name.strip_suffix(".msg")
            && !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            ids.push(id.to_string());
        }
    }
    ids.sort();
    for id in ids {
        let msg = queue.join(format!("{id}.msg"));
        let Some(bytes) = read_stable(&msg)? else {
            continue;
        };
        fs::write(to.join(format!("{id}.msg")), bytes).map_err(|e| e.to_string())?;
        names.push(format!("{id}.msg"));
        // The state file is replaced whole by rename: any version read is a whole one.
        match fs::read(queue.join(format!("{id}.st"))) {
            Ok(state) => {
                fs::write(to.join(format!("{id}.st")), state).map_err(|e| e.to_string())?;
                names.push(format!("{id}.st"));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{id}.st: {e}")),
        }
    }
    Ok(names)
}

/// A committed spool file's bytes, or None when it left the queue meanwhile.
fn read_stable(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let before = file.metadata().map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match fs::metadata(path) {
        Ok(after) if after.ino() == before.ino() && after.dev() == before.dev() => Ok(Some(bytes)),
        _ => Ok(None),
    }
}

pub struct RestoreOptions {
    pub decryption: Decryption,
    pub force: bool,
    pub ssh: SshOptions,
    /// Where the archived configuration file goes; None: `<data_dir>/portcullis.toml.restored`.
    pub config_out: Option<PathBuf>,
}

/// What [`restore`] did.
#[derive(Debug)]
pub struct Restored {
    pub manifest: Manifest,
    pub rows: u64,
    pub queued_messages: usize,
    pub config_written: Option<PathBuf>,
}

/// Whether a running gateway holds the spool of `data_dir`.
fn spool_in_use(data_dir: &Path) -> bool {
    match File::open(data_dir.join("spool").join("lock")) {
        Ok(lock) => match lock.try_lock() {
            Ok(()) => {
                let _ = lock.unlock();
                false
            }
            Err(_) => true,
        },
        Err(_) => false,
    }
}

/// Restores an archive into the store and data directory of `config`. Everything is
/// read and checked first (every checksum, the whole compressed stream, the passphrase);
/// only then is anything of the target changed. A store or spool with contents is
/// refused unless `force`.
pub async fn restore(
    config: &Config,
    from: &Location,
    options: &RestoreOptions,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<Restored, String> {
    let data_dir = &config.data_dir;
    if spool_in_use(data_dir) {
        return Err(format!(
            "a gateway is running on {}: stop it before restoring",
            data_dir.display()
        ));
    }
    // A data directory made here is removed again if the restore fails.
    let mut made = MadeDir((!data_dir.exists()).then(|| data_dir.clone()));
    let staging = Staging::new(data_dir, "restore")?;
    let source = match from {
        Location::File(p) => p.clone(),
        Location::Sftp(url) => {
            progress("download");
            let local = staging.0.join("archive");
            sftp::get(url, &local, &options.ssh)?;
            local
        }
    };
    let unpacked = staging.0.join("x");
    fs::create_dir_all(&unpacked).map_err(|e| e.to_string())?;
    let manifest = archive::extract(&source, &unpacked, &options.decryption, &|name| {
        progress(&format!("checking {name}"))
    })?;
    let newest = portcullis_store::newest_schema_version();
    if manifest.schema_version > newest {
        return Err(format!(
            "the backup's store has schema version {} (Portcullis {}); this version knows up to {newest}: restore with Portcullis {} or newer",
            manifest.schema_version, manifest.gateway_version, manifest.gateway_version
        ));
    }
    let queue = data_dir.join("spool").join("queue");
    let queued_before = fs::read_dir(&queue)
        .map(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().ends_with(".msg"))
        })
        .unwrap_or(false);
    if queued_before && !options.force {
        return Err(format!(
            "the spool {} holds queued messages: restore into a fresh data directory, or give --force",
            queue.display()
        ));
    }
    // The archive is whole and readable: from here on the target changes.
    let store = Store::open(&config.store_url())
        .await
        .map_err(|e| e.to_string())?;
    let result = async {
        if !options.force && store.in_use().await.map_err(|e| e.to_string())? {
            return Err(format!(
                "the {} store already holds domains, users, keys or mail: restore into a fresh one, or give --force to replace its contents",
                store.engine()
            ));
        }
        let tables: Vec<String> = manifest
            .under("store")
            .filter_map(|(name, _)| name.strip_suffix(".jsonl").map(str::to_string))
            .collect();
        store
            .load(&unpacked.join("store"), &tables, &|t| {
                progress(&format!("restoring table {t}"))
            })
            .await
            .map_err(|e| format!("restoring the store: {e}"))
    }
    .await;
    store.close().await;
    let rows = result?;
    progress("queued messages");
    let queued_messages = restore_spool(&unpacked.join("spool"), data_dir, &manifest)?;
    let config_written = match manifest.entry("config/portcullis.toml") {
        Some(_) => {
            let out = options
                .config_out
                .clone()
                .unwrap_or_else(|| data_dir.join("portcullis.toml.restored"));
            fs::copy(unpacked.join("config/portcullis.toml"), &out)
                .map_err(|e| format!("{}: {e}", out.display()))?;
            Some(out)
        }
        None => None,
    };
    made.0 = None;
    Ok(Restored {
        manifest,
        rows,
        queued_messages,
        config_written,
    })
}

/// A directory removed when dropped, unless taken out first.
struct MadeDir(Option<PathBuf>);

impl Drop for MadeDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// Puts the archive's spool files into `<data_dir>/spool/queue` as the spool commits
/// them: written in `tmp/`, fsynced, renamed, the directory fsynced.
fn restore_spool(from: &Path, data_dir: &Path, manifest: &Manifest) -> Result<usize, String> {
    let spool = data_dir.join("spool");
    let (tmp, queue) = (spool.join("tmp"), spool.join("queue"));
    for dir in [&tmp, &queue] {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut messages = 0;
    // State files first: a message never sits in the queue without the state it had.
    let mut names: Vec<&str> = manifest.under("spool").map(|(n, _)| n).collect();
    names.sort_by_key(|n| (n.ends_with(".msg"), n.to_string()));
    for name in names {
        let staged = tmp.join(format!("{name}.restore"));
        fs::copy(from.join(name), &staged)
            .and_then(|_| File::open(&staged)?.sync_all())
            .and_then(|()| fs::rename(&staged, queue.join(name)))
            .map_err(|e| format!("spool {name}: {e}"))?;
        if name.ends_with(".msg") {
            messages += 1;
        }
    }
    File::open(&queue)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("{}: {e}", queue.display()))?;
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_time() {
        let t = 1_796_613_300; // 2026-12-07T03:15:00Z
        let name = archive_name(t, false);
        assert_eq!(name, "portcullis-20261207T031500Z.tar.gz");
        assert_eq!(archive_time(&name), Some(t));
        assert_eq!(archive_time(&archive_name(t, true)), Some(t));
        assert_eq!(
            archive_time("portcullis-20261207T031500Z.tar.gz.part"),
            None
        );
        assert_eq!(archive_time("other.tar.gz"), None);
    }

    #[test]
    fn locations() {
        assert_eq!(
            Location::parse("/var/b.tar.gz").unwrap(),
            Location::File("/var/b.tar.gz".into())
        );
        let sftp = Location::parse("sftp://u@h:2222/d").unwrap();
        assert_eq!(sftp.to_string(), "sftp://u@h:2222/d");
        assert_eq!(sftp.join("x").to_string(), "sftp://u@h:2222/d/x");
        assert!(Location::parse("ftp://h/x").is_err());
    }

    #[test]
    fn a_copied_spool_skips_what_left() {
        let dir = std::env::temp_dir().join(format!("portcullis-spoolcopy-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (queue, to) = (dir.join("queue"), dir.join("to"));
        fs::create_dir_all(&queue).unwrap();
        fs::create_dir_all(&to).unwrap();
        fs::write(queue.join("AB12.msg"), b"body").unwrap();
        fs::write(queue.join("AB12.st"), b"{}").unwrap();
        fs::write(queue.join("CD34.msg"), b"other").unwrap();
        fs::write(queue.join("x.st.tmp"), b"half").unwrap();
        let names = copy_spool(&queue, &to).unwrap();
        assert_eq!(names, ["AB12.msg", "AB12.st", "CD34.msg"]);
        assert_eq!(read_stable(&queue.join("gone.msg")).unwrap(), None);
        let _ = fs::remove_dir_all(&dir);
    }
}
