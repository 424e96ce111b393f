//! The rspamd and spamd clients against the real daemons from Debian (`rspamd`, `spamd` +
//! `spamassassin`), each test starting its own instance on free loopback ports with its
//! configuration in a temporary directory. Nothing leaves the machine: rspamd's modules
//! that query the network are switched off and its resolver is a small DNS server in this
//! test that answers NXDOMAIN to every question; spamd runs with local tests only (`-L`).
//!
//! These tests fail (they do not skip) when a daemon is not installed: `ci/test` installs
//! them. `PORTCULLIS_RSPAMD` and `PORTCULLIS_SPAMD` may name other binaries.

use portcullis_filter::external::{self, ExternalContext, ExternalSettings};
use std::net::UdpSocket;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The most time a daemon gets to start answering.
const START_LIMIT: Duration = Duration::from_secs(45);

const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

fn gtube_message() -> Vec<u8> {
    format!(
        "From: Spammer <spam@example.net>\r\n\
         To: bob@example.com\r\n\
         Subject: Test spam mail (GTUBE)\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <gtube.20261123@example.net>\r\n\
         \r\n\
         This is the GTUBE, the Generic Test for Unsolicited Bulk Email.\r\n\
         \r\n\
         {GTUBE}\r\n"
    )
    .into_bytes()
}

fn clean_message() -> Vec<u8> {
    b"Received: from mx.example.org (mx.example.org [127.0.0.1])\r\n\
      \tby gw.example.com (Portcullis) with ESMTP id Q1; Mon, 23 Nov 2026 10:00:01 +0000\r\n\
      From: Alice Example <alice@example.org>\r\n\
      To: Bob Example <bob@example.com>\r\n\
      Subject: Notes from Tuesday's meeting\r\n\
      Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
      Message-ID: <20261123100000.4711@mx.example.org>\r\n\
      MIME-Version: 1.0\r\n\
      Content-Type: text/plain; charset=utf-8\r\n\
      Content-Transfer-Encoding: 7bit\r\n\
      \r\n\
      Hi Bob,\r\n\
      \r\n\
      thanks for coming on Tuesday. As agreed, Carol will draft the budget for the\r\n\
      next quarter and send it round by Friday, and we meet again on the first of\r\n\
      the month to go through it. I have booked the small room for ten o'clock.\r\n\
      \r\n\
      Best regards,\r\n\
      Alice\r\n"
        .to_vec()
}

fn binary(var: &str, default: &str, package: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.is_file(),
        "{} not found: install the Debian package(s) {package} (ci/test does) or set {var}",
        path.display()
    );
    path
}

fn free_port() -> u16 {
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
    let dir = PathBuf::from(format!(
        "/tmp/portcullis-{tag}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn id(flag: &str) -> String {
    let out = Command::new("id").arg(flag).output().expect("running id");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn is_root() -> bool {
    id("-u") == "0"
}

/// A daemon we started in its own process group; the whole group (the daemon and the
/// workers it forked) is stopped on drop: TERM, then KILL after at most 5 s.
struct Daemon {
    name: &'static str,
    child: Child,
    dir: PathBuf,
    log: PathBuf,
}

impl Daemon {
    fn spawn(name: &'static str, command: &mut Command, dir: PathBuf) -> Daemon {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Daemon {
            name,
            child,
            dir,
            log,
        }
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text[start..].to_string()
    }

    fn check_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{} exited early ({status}):\n{}", self.name, self.log());
        }
    }

    fn signal_group(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(signal)
            .arg("--")
            .arg(format!("-{}", self.child.id()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.signal_group("-TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Whatever of the group is left (the leader, or workers it did not reap).
        self.signal_group("-KILL");
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One request/reply on a fresh loopback connection (for readiness probes), bounded.
fn probe(port: u16, request: &[u8]) -> Option<String> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(request).ok()?;
    let mut out = Vec::new();
    s.take(64 * 1024).read_to_end(&mut out).ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn wait_ready(daemon: &mut Daemon, port: u16, request: &[u8], answer: &str) {
    let deadline = Instant::now() + START_LIMIT;
    loop {
        daemon.check_alive();
        if probe(port, request).is_some_and(|r| r.contains(answer)) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{} did not answer on 127.0.0.1:{port} within {START_LIMIT:?}:\n{}",
                daemon.name,
                daemon.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A DNS server on a loopback UDP port that answers every question with NXDOMAIN, so that
/// rspamd's lookups end at once and none goes anywhere else. Stops on drop.
struct NxDns {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NxDns {
    fn start() -> NxDns {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let port = socket.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(reply) = nxdomain(&buf[..n]) {
                    let _ = socket.send_to(&reply, peer);
                }
            }
        });
        NxDns {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for NxDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The NXDOMAIN answer to a query with one question: the header with QR, RA and RCODE 3
/// set, and the question echoed (additional records such as EDNS dropped).
fn nxdomain(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 || query[4..6] != [0, 1] {
        return None;
    }
    let mut i = 12;
    loop {
        let len = *query.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        i += len;
    }
    let end = i + 4;
    if end > query.len() {
        return None;
    }
    let mut reply = query[..end].to_vec();
    reply[2] = 0x80 | (query[2] & 0x79); // QR, opcode and RD kept
    reply[3] = 0x80 | 3; // RA, NXDOMAIN
    reply[6..12].fill(0); // no answer, authority or additional records
    Some(reply)
}

/// rspamd modules that ask other hosts (DNS lists, fuzzy storage, updates) or need redis.
const RSPAMD_OFF: &[&str] = &[
    "antivirus",
    "arc",
    "asn",
    "bimi",
    "clickhouse",
    "dcc",
    "dkim",
    "dkim_signing",
    "dmarc",
    "elastic",
    "emails",
    "external_services",
    "fuzzy_check",
    "greylist",
    "history_redis",
    "metadata_exporter",
    "metric_exporter",
    "mx_check",
    "neural",
    "p0f",
    "ratelimit",
    "rbl",
    "replies",
    "reputation",
    "rspamd_update",
    "spf",
    "surbl",
    "url_redirector",
];

/// Starts rspamd with one normal worker on a free loopback port.
///
/// The configuration is the packaged one (`$CONFDIR/common.conf`: all rules and modules)
/// with our own top-level file: one normal worker and no controller or proxy, `$DBDIR`,
/// `$RUNDIR` and `$LOCAL_CONFDIR` in the temporary directory, the modules of
/// [`RSPAMD_OFF`] disabled through `local.d/<module>.conf`, and options overridden in
/// `override.d/options.inc`: the loopback resolver, hyperscan off and a short list of
/// top-level domains for URL detection (compiling the full list into a hyperscan database
/// takes most of a minute on a fresh `$DBDIR`).
fn start_rspamd(dns: &NxDns) -> (Daemon, u16) {
    let bin = binary("PORTCULLIS_RSPAMD", "/usr/bin/rspamd", "rspamd");
    let dir = temp_dir("rspamd");
    let port = free_port();
    for sub in ["local.d", "override.d", "db", "run"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    for module in RSPAMD_OFF {
        std::fs::write(
            dir.join("local.d").join(format!("{module}.conf")),
            "enabled = false;\n",
        )
        .unwrap();
    }
    let tld = dir.join("tld.dat");
    std::fs::write(
        &tld,
        "com\nnet\norg\nedu\ngov\nde\nuk\nco.uk\nexample\ntest\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("override.d/options.inc"),
        format!(
            "dns {{ nameserver = [\"127.0.0.1:{}\"]; timeout = 1s; retransmits = 1; }}\n\
             disable_hyperscan = true;\n\
             url_tld = \"{}\";\n",
            dns.port,
            tld.display()
        ),
    )
    .unwrap();
    let conf = dir.join("rspamd.conf");
    std::fs::write(
        &conf,
        format!(
            ".include \"$CONFDIR/common.conf\"\n\
             options {{\n\
             \x20   pidfile = \"$RUNDIR/rspamd.pid\";\n\
             \x20   .include \"$CONFDIR/options.inc\"\n\
             \x20   .include(priority=10) \"$LOCAL_CONFDIR/override.d/options.inc\"\n\
             }}\n\
             logging {{ type = \"console\"; level = \"warning\"; }}\n\
             worker \"normal\" {{\n\
             \x20   bind_socket = \"127.0.0.1:{port}\";\n\
             \x20   .include \"$CONFDIR/worker-normal.inc\"\n\
             \x20   count = 1;\n\
             }}\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new(&bin);
    cmd.arg("-f")
        .arg("-u")
        .arg(id("-un"))
        .arg("-g")
        .arg(id("-gn"))
        .arg("-c")
        .arg(&conf);
    if is_root() {
        // rspamd warns about (or refuses) workers running as root unless told this.
        cmd.arg("-i");
    }
    for (var, sub) in [
        ("LOCAL_CONFDIR", ""),
        ("DBDIR", "db"),
        ("RUNDIR", "run"),
        ("LOGDIR", ""),
    ] {
        cmd.arg("--var")
            .arg(format!("{var}={}", dir.join(sub).display()));
    }
    let mut daemon = Daemon::spawn("rspamd", &mut cmd, dir);
    wait_ready(
        &mut daemon,
        port,
        b"GET /ping HTTP/1.0\r\nConnection: close\r\n\r\n",
        "pong",
    );
    (daemon, port)
}

/// Starts spamd on a free loopback port, one child, local tests only, its site
/// configuration (`local.cf` and the packaged `*.pre` plugin lists) in a temporary
/// directory.
fn start_spamd() -> (Daemon, u16) {
    let bin = binary(
        "PORTCULLIS_SPAMD",
        "/usr/sbin/spamd",
        "spamd and spamassassin",
    );
    let packaged = Path::new("/etc/spamassassin");
    assert!(
        packaged.join("v320.pre").is_file(),
        "/etc/spamassassin/v320.pre not found (it loads SpamAssassin's Check plugin): \
         install the Debian package spamassassin (ci/test does)"
    );
    let dir = temp_dir("spamd");
    for entry in std::fs::read_dir(packaged).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pre") {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(
        dir.join("local.cf"),
        "skip_rbl_checks 1\ndns_available no\nuse_bayes 0\nbayes_auto_learn 0\n",
    )
    .unwrap();
    let port = free_port();
    let mut cmd = Command::new(&bin);
    cmd.arg("--syslog=stderr")
        .args(["-i", "127.0.0.1", "-A", "127.0.0.1"])
        .arg("-p")
        .arg(port.to_string())
        .args(["--max-children", "1", "--min-children", "1"])
        .args(["-x", "-L"])
        .arg(format!("--siteconfigpath={}", dir.display()))
        .arg(format!("--helper-home-dir={}", dir.display()))
        .arg("-r")
        .arg(dir.join("spamd.pid"));
    if is_root() {
        // spamd does not scan as root: its child runs as this user, who must be able to
        // read the configuration.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        cmd.args(["-u", "nobody"]);
    }
    let mut daemon = Daemon::spawn("spamd", &mut cmd, dir);
    wait_ready(&mut daemon, port, b"PING SPAMC/1.5\r\n\r\n", "PONG");
    (daemon, port)
}

fn context<'a>(recipients: &'a [String], sender: &'a str) -> ExternalContext<'a> {
    ExternalContext {
        ip: Some("127.0.0.1".parse().unwrap()),
        helo: "mx.example.org",
        sender,
        recipients,
        id: "T1",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rspamd_scores_gtube_as_spam_and_clean_mail_as_ham() {
    let started = Instant::now();
    let dns = NxDns::start();
    let (mut daemon, port) = tokio::task::block_in_place(|| start_rspamd(&dns));
    let settings = ExternalSettings {
        rspamd: Some(format!("127.0.0.1:{port}")),
        // The normal worker ignores it; sent to show it does no harm.
        rspamd_password: Some("secret".into()),
        timeout_ms: 15_000,
        ..Default::default()
    };
    let recipients = vec![
        "bob@example.com".to_string(),
        "carol@example.com".to_string(),
    ];

    let report = external::check(
        &settings,
        &context(&recipients, "spam@example.net"),
        &gtube_message(),
    )
    .await;
    assert!(
        report.unavailable.is_empty(),
        "{report:?}\n{}",
        daemon.log()
    );
    let v = &report.verdicts[0];
    assert!(v.spam, "GTUBE not spam to rspamd: {v:?}");
    assert_eq!(v.action.as_deref(), Some("reject"), "{v:?}");
    assert!(v.symbols.iter().any(|(s, _)| s == "GTUBE"), "{v:?}");
    let f = &report.findings[0];
    assert_eq!(f.name, "rspamd");
    assert!(f.score >= 15.0, "{f:?}");
    assert!(f.detail.starts_with("reject"), "{f:?}");

    for sender in ["alice@example.org", ""] {
        let report =
            external::check(&settings, &context(&recipients, sender), &clean_message()).await;
        assert!(
            report.unavailable.is_empty(),
            "{report:?}\n{}",
            daemon.log()
        );
        eprintln!("rspamd, clean message: {:?}", report.findings);
        let v = &report.verdicts[0];
        assert!(
            !v.spam,
            "clean message is spam to rspamd (sender {sender:?}): {v:?}"
        );
        assert!(report.findings[0].score < 5.0, "{report:?}");
    }
    daemon.check_alive();
    drop(daemon);
    eprintln!("rspamd test took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spamd_scores_gtube_as_spam_and_clean_mail_as_ham() {
    let started = Instant::now();
    let (mut daemon, port) = tokio::task::block_in_place(start_spamd);
    let settings = ExternalSettings {
        spamd: Some(format!("127.0.0.1:{port}")),
        timeout_ms: 30_000,
        ..Default::default()
    };
    let recipients = vec!["bob@example.com".to_string()];

    let report = external::check(
        &settings,
        &context(&recipients, "spam@example.net"),
        &gtube_message(),
    )
    .await;
    assert!(
        report.unavailable.is_empty(),
        "{report:?}\n{}",
        daemon.log()
    );
    let v = &report.verdicts[0];
    assert!(v.spam, "GTUBE not spam to spamd: {v:?}");
    assert!(v.score >= v.required && v.required > 0.0, "{v:?}");
    let f = &report.findings[0];
    assert_eq!(f.name, "spamd");
    assert!(f.score >= 5.0, "{f:?}");
    assert!(f.detail.split(',').any(|s| s == "GTUBE"), "{f:?}");

    let report = external::check(
        &settings,
        &context(&recipients, "alice@example.org"),
        &clean_message(),
    )
    .await;
    assert!(
        report.unavailable.is_empty(),
        "{report:?}\n{}",
        daemon.log()
    );
    eprintln!("spamd, clean message: {:?}", report.findings);
    let v = &report.verdicts[0];
    assert!(!v.spam, "clean message is spam to spamd: {v:?}");
    assert!(report.findings[0].score < 5.0, "{report:?}");
    daemon.check_alive();
    drop(daemon);
    eprintln!("spamd test took {:?}", started.elapsed());
}

#[test]
fn nxdomain_answers_a_query() {
    // A query for example.com/A with an EDNS OPT record.
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    q.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
    q.extend_from_slice(&[0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 0]);
    let r = nxdomain(&q).unwrap();
    assert_eq!(&r[..2], &[0x12, 0x34]);
    assert_eq!(r[2] & 0x80, 0x80);
    assert_eq!(r[3] & 0x0f, 3);
    assert_eq!(&r[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(r.len(), 12 + 13 + 4);
    assert!(nxdomain(&r).is_none(), "answers are not answered");
}
