//! Archives to and from an SFTP server, through the OpenSSH client (`sftp -b`).
//!
//! Shelling out rather than an SSH library: the system's client already honours the
//! administrator's keys, agent, `~/.ssh/config`, known hosts and jump hosts, and it is the
//! audited implementation; a Rust SSH stack would add a second crypto backend and a
//! second place to configure host keys. Batch mode (`-b`, `BatchMode=yes`) never prompts:
//! a missing key or an unknown host key is an error with ssh's own message.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `sftp://user@host[:port]/path`. The path is taken as given: `sftp://u@h/backups` is
/// `backups` under the login directory, `sftp://u@h//srv/backups` is absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftpUrl {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub path: String,
}

impl SftpUrl {
    pub fn parse(url: &str) -> Result<SftpUrl, String> {
        let bad = |why: &str| format!("{url:?}: {why} (expected sftp://user@host[:port]/path)");
        let rest = url
            .strip_prefix("sftp://")
            .ok_or_else(|| bad("not an sftp URL"))?;
        let (authority, path) = rest.split_once('/').ok_or_else(|| bad("no path"))?;
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) if !u.is_empty() => (Some(u.to_string()), h),
            Some(_) => return Err(bad("empty user")),
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        let port = port
            .map(|p| p.parse::<u16>().map_err(|_| bad("bad port")))
            .transpose()?;
        if host.is_empty() || host.starts_with('-') {
            return Err(bad("bad host"));
        }
        if path.is_empty() || path.contains(['\n', '\r', '"']) {
            return Err(bad("bad path"));
        }
        Ok(SftpUrl {
            user,
            host,
            port,
            path: path.to_string(),
        })
    }

    /// The same server, another path under this one's directory.
    pub fn join(&self, name: &str) -> SftpUrl {
        SftpUrl {
            path: format!("{}/{name}", self.path.trim_end_matches('/')),
            ..self.clone()
        }
    }
}

/// How ssh authenticates: a key file (`-i`) and an ssh_config file (`-F`), both optional.
#[derive(Debug, Clone, Default)]
pub struct SshOptions {
    pub key: Option<PathBuf>,
    pub config: Option<PathBuf>,
}

/// Runs one batch of sftp commands against the server of `url`; returns its output.
fn batch(url: &SftpUrl, ssh: &SshOptions, commands: &str) -> Result<String, String> {
    let mut cmd = Command::new("sftp");
    cmd.arg("-q")
        .arg("-b")
        .arg("-")
        .arg("-o")
        .arg("BatchMode=yes");
    if let Some(port) = url.port {
        cmd.arg("-P").arg(port.to_string());
    }
    if let Some(key) = &ssh.key {
        cmd.arg("-i").arg(key);
    }
    if let Some(config) = &ssh.config {
        cmd.arg("-F").arg(config);
    }
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    let destination = match &url.user {
        Some(user) => format!("{user}@{host}"),
        None => host,
    };
    cmd.arg("--").arg(destination);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run sftp (install openssh-client): {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(commands.as_bytes())
            .map_err(|e| format!("sftp: {e}"))?;
    }
    let output = child.wait_with_output().map_err(|e| format!("sftp: {e}"))?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "sftp to {} failed ({}): {}",
            url.host,
            output.status,
            err.trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A local path as a batch command can carry it (quoted: no quotes or line ends in it).
fn batch_path(local: &Path) -> Result<&str, String> {
    local
        .to_str()
        .filter(|l| !l.contains(['"', '\n']))
        .ok_or_else(|| format!("{}: unusable local path for sftp", local.display()))
}

fn quoted(path: &str) -> String {
    format!("\"{path}\"")
}

/// Uploads `local` to `url` (a file path): first under a temporary name, then renamed,
/// so that a cut connection never leaves a half archive under the final name.
pub fn put(local: &Path, url: &SftpUrl, ssh: &SshOptions) -> Result<(), String> {
    let partial = format!("{}.part", url.path);
    let local = batch_path(local)?;
    batch(
        url,
        ssh,
        &format!(
            "-rm {p}\nput {l} {p}\nrename {p} {f}\n",
            p = quoted(&partial),
            l = quoted(local),
            f = quoted(&url.path)
        ),
    )
    .map(|_| ())
}

/// Downloads `url` (a file path) to `local`.
pub fn get(url: &SftpUrl, local: &Path, ssh: &SshOptions) -> Result<(), String> {
    let local = batch_path(local)?;
    batch(
        url,
        ssh,
        &format!("get {} {}\n", quoted(&url.path), quoted(local)),
    )
    .map(|_| ())
}

/// Names of the files in the directory `url`.
pub fn list(url: &SftpUrl, ssh: &SshOptions) -> Result<Vec<String>, String> {
    let out = batch(url, ssh, &format!("ls -1 {}\n", quoted(&url.path)))?;
    Ok(out
        .lines()
        .filter(|l| !l.starts_with("sftp>"))
        .filter_map(|l| l.trim().rsplit('/').next().map(str::to_string))
        .filter(|l| !l.is_empty())
        .collect())
}

/// Removes files of the directory `url`.
pub fn remove(url: &SftpUrl, names: &[String], ssh: &SshOptions) -> Result<(), String> {
    if names.is_empty() {
        return Ok(());
    }
    let commands: String = names
        .iter()
        .map(|n| format!("rm {}\n", quoted(&url.join(n).path)))
        .collect();
    batch(url, ssh, &commands).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = SftpUrl::parse("sftp://backup@vault.example:2222/srv/pc").unwrap();
        assert_eq!(u.user.as_deref(), Some("backup"));
        assert_eq!(u.host, "vault.example");
        assert_eq!(u.port, Some(2222));
        assert_eq!(u.path, "srv/pc");
        assert_eq!(u.join("a.tar.gz").path, "srv/pc/a.tar.gz");
        let u = SftpUrl::parse("sftp://h//abs/x.tar.gz").unwrap();
        assert_eq!(
            (u.user, u.port, u.path.as_str()),
            (None, None, "/abs/x.tar.gz")
        );
        let u = SftpUrl::parse("sftp://u@[::1]:22/x").unwrap();
        assert_eq!(u.host, "::1");
        for bad in [
            "http://h/x",
            "sftp://h",
            "sftp://@h/x",
            "sftp://h:99999/x",
            "sftp://-oProxy/x",
        ] {
            assert!(SftpUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
