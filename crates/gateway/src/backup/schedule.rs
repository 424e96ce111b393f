//! Scheduled backups (`[backup]`): a background task of the node makes an archive every
//! `schedule_hours` (or daily at `daily_hour_utc`) into a directory or an SFTP directory,
//! and keeps the newest `keep` archives there. Each run is logged. When the node starts,
//! the time of the newest archive already there decides the next run, so restarts neither
//! skip nor repeat backups.

use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_store::Store;

use super::{
    BackupOptions, Encryption, Location, SshOptions, archive, archive_name, archive_time, create,
    sftp,
};
use crate::config::{Backup, Config};
use crate::dates::DAY;

/// A retry after a failed run waits this long (or the interval, if shorter).
const RETRY_SECS: i64 = 3600;

/// `[backup]` checked and ready to run.
pub struct Plan {
    pub dir: Location,
    pub interval: Option<i64>,
    pub daily_hour: i64,
    pub keep: usize,
    pub without_log: bool,
    pub recipients: Vec<String>,
    pub passphrase_file: Option<PathBuf>,
    pub ssh: SshOptions,
}

impl Plan {
    /// Checks the settings; an error names the key at fault.
    pub fn from_config(b: &Backup) -> Result<Plan, (&'static str, String)> {
        let dir = Location::parse(&b.to).map_err(|e| ("to", e))?;
        Encryption::recipients(&b.recipients).map_err(|e| ("recipients", e))?;
        if !b.recipients.is_empty() && b.passphrase_file.is_some() {
            return Err((
                "passphrase_file",
                "give either recipients or passphrase_file, not both".into(),
            ));
        }
        Ok(Plan {
            dir,
            interval: (b.schedule_hours > 0.0)
                .then(|| ((b.schedule_hours * 3600.0) as i64).max(60)),
            daily_hour: i64::from(b.daily_hour_utc),
            keep: b.keep.max(1),
            without_log: b.without_log,
            recipients: b.recipients.clone(),
            passphrase_file: b.passphrase_file.clone(),
            ssh: SshOptions {
                key: b.ssh_key.clone(),
                config: b.ssh_config.clone(),
            },
        })
    }

    /// When the next backup is due, given the time of the newest one there.
    pub fn due(&self, now: i64, newest: Option<i64>) -> i64 {
        match self.interval {
            Some(every) => newest.map_or(now, |n| (n + every).max(now)),
            None => {
                let today = now - now.rem_euclid(DAY) + self.daily_hour * 3600;
                let slot = if today <= now { today } else { today - DAY };
                if newest.is_some_and(|n| n >= slot) {
                    slot + DAY
                } else {
                    now
                }
            }
        }
    }

    fn encryption(&self) -> Result<Encryption, String> {
        if let Some(file) = &self.passphrase_file {
            return archive::read_passphrase(file).map(Encryption::Passphrase);
        }
        if self.recipients.is_empty() {
            Ok(Encryption::None)
        } else {
            Encryption::recipients(&self.recipients)
        }
    }

    /// Names of our archives in the directory, oldest first.
    fn archives(&self) -> Result<Vec<String>, String> {
        let mut names = match &self.dir {
            Location::File(dir) => match std::fs::read_dir(dir) {
                Ok(listing) => listing
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(format!("{}: {e}", dir.display())),
            },
            Location::Sftp(url) => sftp::list(url, &self.ssh)?,
        };
        names.retain(|n| archive_time(n).is_some());
        names.sort_by_key(|n| (archive_time(n), n.clone()));
        Ok(names)
    }

    /// Removes the archives beyond the newest `keep`; returns their names.
    fn prune(&self) -> Result<Vec<String>, String> {
        let names = self.archives()?;
        let old: Vec<String> = names[..names.len().saturating_sub(self.keep)].to_vec();
        match &self.dir {
            Location::File(dir) => {
                for name in &old {
                    std::fs::remove_file(dir.join(name))
                        .map_err(|e| format!("{}: {e}", dir.join(name).display()))?;
                }
            }
            Location::Sftp(url) => sftp::remove(url, &old, &self.ssh)?,
        }
        Ok(old)
    }
}

/// One scheduled run: an archive named by its time in the plan's directory, then
/// retention. Returns where it went and its size.
pub async fn run_once(
    config: &Config,
    config_file: Option<&Path>,
    store: &Store,
    plan: &Plan,
) -> Result<(Location, u64), String> {
    let encryption = plan.encryption()?;
    let name = archive_name(portcullis_queue::spool::now(), !encryption.is_none());
    if let Location::File(dir) = &plan.dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let to = plan.dir.join(&name);
    let options = BackupOptions {
        without_log: plan.without_log,
        encryption,
        ssh: plan.ssh.clone(),
    };
    let created = create(config, config_file, store, &to, &options, &|_| {}).await?;
    Ok((to, created.size))
}

/// Starts the scheduled backups of `[backup]`, if `to` is set.
pub fn spawn(config: Config, config_file: Option<PathBuf>, store: Store) {
    if config.backup.to.is_empty() {
        return;
    }
    let plan = match Plan::from_config(&config.backup) {
        Ok(plan) => plan,
        Err((key, e)) => {
            tracing::error!(key, error = %e, "scheduled backups off: bad [backup] setting");
            return;
        }
    };
    tokio::spawn(async move {
        // Let the node finish starting before the first run.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let mut retry_at: Option<i64> = None;
        loop {
            let now = portcullis_queue::spool::now();
            let due = match retry_at {
                Some(at) => at,
                None => {
                    let listing = {
                        let plan = &plan;
                        tokio::task::block_in_place(|| plan.archives())
                    };
                    match listing {
                        Ok(names) => plan.due(now, names.last().and_then(|n| archive_time(n))),
                        Err(e) => {
                            tracing::warn!(error = %e, to = %plan.dir, "backup: cannot list the archives");
                            now
                        }
                    }
                }
            };
            if due > now {
                tokio::time::sleep(Duration::from_secs((due - now) as u64)).await;
            }
            let started = std::time::Instant::now();
            // The archive is written with blocking file and sftp work: the runtime moves
            // this worker's other tasks elsewhere meanwhile.
            let result = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(run_once(
                    &config,
                    config_file.as_deref(),
                    &store,
                    &plan,
                ))
            });
            match result {
                Ok((to, size)) => {
                    retry_at = None;
                    tracing::info!(to = %to, bytes = size, seconds = started.elapsed().as_secs_f64(), "backup written");
                    match tokio::task::block_in_place(|| plan.prune()) {
                        Ok(removed) if !removed.is_empty() => {
                            tracing::info!(removed = ?removed, keep = plan.keep, "old backups removed");
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "backup: removing old archives failed")
                        }
                    }
                }
                Err(e) => {
                    let wait = plan.interval.map_or(RETRY_SECS, |i| i.min(RETRY_SECS));
                    retry_at = Some(portcullis_queue::spool::now() + wait);
                    tracing::error!(error = %e, to = %plan.dir, retry_in_secs = wait, "backup failed");
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(hours: f64, hour: u8) -> Plan {
        Plan::from_config(&Backup {
            to: "/var/backups/pc".into(),
            schedule_hours: hours,
            daily_hour_utc: hour,
            ..Backup::default()
        })
        .unwrap()
    }

    #[test]
    fn due_times() {
        let now = 1_796_613_300; // 2026-12-07T03:15:00Z
        let every = plan(6.0, 0);
        assert_eq!(every.due(now, None), now);
        assert_eq!(every.due(now, Some(now - 3600)), now + 5 * 3600);
        assert_eq!(every.due(now, Some(now - 7 * 3600)), now);
        let daily = plan(0.0, 3);
        let slot = now - 15 * 60;
        assert_eq!(daily.due(now, None), now);
        assert_eq!(daily.due(now, Some(slot + 10)), slot + DAY);
        assert_eq!(daily.due(now, Some(slot - 10)), now);
        let later = plan(0.0, 5);
        // 05:00 today has not come: yesterday's slot counts.
        assert_eq!(later.due(now, Some(now - 3600)), now + 3600 + 45 * 60);
        assert_eq!(later.due(now, Some(now - 23 * 3600)), now);
    }

    #[test]
    fn settings_are_checked() {
        let bad = Backup {
            to: "ftp://x/y".into(),
            ..Backup::default()
        };
        assert_eq!(Plan::from_config(&bad).err().map(|e| e.0), Some("to"));
        let bad = Backup {
            to: "/b".into(),
            recipients: vec!["age1nope".into()],
            ..Backup::default()
        };
        assert_eq!(
            Plan::from_config(&bad).err().map(|e| e.0),
            Some("recipients")
        );
    }
}
