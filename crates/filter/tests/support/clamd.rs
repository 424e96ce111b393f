//! A real clamd (Debian `clamav-daemon`) for tests, started in a temporary directory with
//! a one-line signature database: the EICAR test file's MD5 and size. No official
//! database and no network are involved. Shared by `tests/clamd.rs` (the client) and the
//! gateway's `tests/eml_cases.rs` (the message cases, which include this file by path from
//! `crates/gateway/tests/support/mod.rs`); each uses a part of it.
//!
//! Starting fails the test (it never skips) when clamd is not installed: `ci/test`
//! installs it. `PORTCULLIS_CLAMD` may name another clamd binary.

#![allow(dead_code)]

use portcullis_filter::clamd::{Endpoint, Scanner};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The EICAR anti-virus test file (68 bytes, MD5 44d88612fea8a8f36de82e1278abb02f).
pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
pub const EICAR_MD5: &str = "44d88612fea8a8f36de82e1278abb02f";
pub const SIGNATURE: &str = "Eicar-Test-Signature";
/// clamd's StreamMaxLength in these tests.
pub const STREAM_MAX: usize = 1 << 20;

/// A clamd of our own; killed and cleaned up on drop.
pub struct Clamd {
    child: Child,
    pub dir: PathBuf,
    pub tcp: Endpoint,
    pub unix: Endpoint,
}

impl Drop for Clamd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn clamd_binary() -> PathBuf {
    let path = std::env::var_os("PORTCULLIS_CLAMD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/clamd"));
    assert!(
        path.is_file(),
        "clamd not found at {}: install the Debian package clamav-daemon \
         (ci/test does) or set PORTCULLIS_CLAMD",
        path.display()
    );
    path
}

/// A loopback TCP port nobody listens on (just now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    // Unix socket paths are limited to about 100 bytes: stay under /tmp.
    let dir = PathBuf::from(format!(
        "/tmp/portcullis-clamd-{tag}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("clamd.log")).unwrap_or_default()
}

/// Starts clamd and waits (at most 60 s) until both its sockets answer PING.
pub async fn start_clamd(tag: &str) -> Clamd {
    let binary = clamd_binary();
    let dir = temp_dir(tag);
    let port = free_port();
    std::fs::write(
        dir.join("test.hdb"),
        format!("{EICAR_MD5}:{}:{SIGNATURE}\n", EICAR.len()),
    )
    .unwrap();
    // The same file by its content, as the official database has it: found also where
    // it is not a whole file of its own (a text part, a message body).
    let hex: String = EICAR.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(dir.join("test.ndb"), format!("{SIGNATURE}:0:*:{hex}\n")).unwrap();
    let socket = dir.join("clamd.sock");
    // No User line: clamd runs as whoever runs the tests. No LogFile: messages go to
    // stderr, kept in clamd.log for failures.
    let config = format!(
        "Foreground yes\n\
         LocalSocket {socket}\n\
         TCPSocket {port}\n\
         TCPAddr 127.0.0.1\n\
         DatabaseDirectory {dir}\n\
         TemporaryDirectory {dir}\n\
         PidFile {dir}/clamd.pid\n\
         StreamMaxLength {STREAM_MAX}\n\
         MaxThreads 4\n\
         SelfCheck 0\n",
        socket = socket.display(),
        dir = dir.display(),
    );
    let conf = dir.join("clamd.conf");
    std::fs::write(&conf, config).unwrap();
    let log = std::fs::File::create(dir.join("clamd.log")).unwrap();
    let child = Command::new(&binary)
        .arg("--config-file")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let mut clamd = Clamd {
        child,
        dir,
        tcp: Endpoint::Tcp(format!("127.0.0.1:{port}")),
        unix: Endpoint::Unix(socket),
    };

    let scanner = Scanner::new(
        vec![clamd.tcp.clone(), clamd.unix.clone()],
        Duration::from_secs(2),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = clamd.child.try_wait().unwrap() {
            panic!("clamd exited early ({status}):\n{}", log_of(&clamd.dir));
        }
        let answers = scanner.ping_all().await;
        if answers.iter().all(|(_, r)| r.is_ok()) {
            return clamd;
        }
        if Instant::now() > deadline {
            panic!(
                "clamd did not answer PING within 60 s ({answers:?}):\n{}",
                log_of(&clamd.dir)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
