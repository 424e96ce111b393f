//! Verification throughput of our inbound mail authentication (DKIM, ARC, DMARC), for
//! `bench/auth`: generates messages signed as the gateway signs them
//! (`portcullis_filter::sign`, relaxed/relaxed, RSA-2048 and Ed25519), answers every DNS
//! question from mail-auth's TXT cache (no DNS at all), and times, on the calling thread,
//! the calls `portcullis_filter::auth::Authenticator::check_message` makes. That method
//! asks its resolver and cannot be handed a cache, so the same mail-auth calls are made
//! here with one: parse, the multiple-From check, `verify_dkim`, `verify_arc`,
//! the `_dmarc` answers by the public suffix list (`org_domain::answers`), `verify_dmarc`,
//! the `Authentication-Results` field.
//!
//! ```text
//! cargo run --release -p portcullis-filter --example auth_bench -- \
//!     [--n 500] [--reps 3] [--min-secs 2] [--out DIR]
//! ```
//!
//! Sets: `rsa` (one RSA-2048 signature), `ed25519` (one Ed25519 signature), `both` (one of
//! each, as a domain with both keys signs), `arc` (RSA-signed, then ARC-sealed by a
//! forwarder with RSA-2048). `--out DIR` writes each set's messages (`DIR/SET/NNNNN.eml`)
//! and the DNS records (`DIR/records.tsv`: name, tab, TXT value) for a peer to verify.
//! Each of the `--reps` runs of a set goes over its `--n` messages as many whole times as
//! fit in `--min-secs`. Prints one line per set:
//! `SET set=N msgs_per_sec=<median> cpu_us_per_msg=<median> runs=<msgs/s of each run>`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use mail_auth::arc::ArcSealer;
use mail_auth::common::crypto::{RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::dmarc::Dmarc;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::config::{ResolverConfig, ResolverOpts};
use mail_auth::hickory_resolver::proto::op::ResponseCode;
use mail_auth::spf::Spf;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, MessageAuthenticator,
    Parameters, SpfOutput, SpfResult, Txt,
};
use portcullis_filter::sign::{Algorithm, Signer, generate, record_name};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

const DOMAIN: &str = "example.com";
const SEALER: &str = "lists.example.org";
const CLIENT: [u8; 4] = [192, 0, 2, 25];
const HELO: &str = "mail.example.com";
const AUTHSERV: &str = "mx.portcullis.test";

/// The DNS: TXT answers by owner name (with the trailing dot, as mail-auth asks).
type Records = portcullis_filter::org_domain::TxtAnswers;

fn put(records: &Records, zone: &mut Vec<(String, String)>, name: String, value: Txt, txt: &str) {
    zone.push((name.trim_end_matches('.').to_string(), txt.to_string()));
    records.set(name, value);
}

/// A plain-text message of about 3 KB, different for each `i`.
fn message(i: usize) -> Vec<u8> {
    let mut body = String::new();
    let words = [
        "quarterly",
        "numbers",
        "meeting",
        "invoice",
        "schedule",
        "release",
        "gateway",
        "delivery",
        "report",
        "budget",
        "review",
        "attached",
        "please",
        "thanks",
    ];
    let mut line = String::new();
    for k in 0..450 {
        line.push_str(words[(i * 7 + k * 13) % words.len()]);
        line.push(' ');
        if line.len() > 68 {
            body.push_str(line.trim_end());
            body.push_str("\r\n");
            line.clear();
        }
    }
    body.push_str(&line);
    body.push_str("\r\n");
    format!(
        "From: User {i} <user{i}@{DOMAIN}>\r\n\
         To: Bob <bob@example.net>\r\n\
         Subject: Report number {i}\r\n\
         Date: Mon, 23 Nov 2026 10:41:02 +0000\r\n\
         Message-ID: <{i}.bench@{DOMAIN}>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         {body}"
    )
    .into_bytes()
}

/// What `Authenticator::check_message` does, with the cache. Returns (dkim, arc, dmarc).
async fn check(
    verifier: &MessageAuthenticator,
    records: &Records,
    raw: &[u8],
    spf: &SpfOutput,
) -> (bool, DkimResult, DmarcResult) {
    let ip = IpAddr::from(CLIENT);
    let sender = "user@example.com";
    let message = AuthenticatedMessage::parse(raw).expect("message parses");
    let from_fields = message
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(b"From"))
        .count();
    assert_eq!(from_fields, 1);
    let dkim = verifier
        .verify_dkim(Parameters::new(&message).with_txt_cache(records))
        .await;
    let arc = verifier
        .verify_arc(Parameters::new(&message).with_txt_cache(records))
        .await;
    // The organizational domains by the public suffix list, as the gateway's default.
    let answers =
        portcullis_filter::org_domain::answers(verifier, Some(records), &message, &dkim, DOMAIN)
            .await;
    let dmarc = verifier
        .verify_dmarc(
            Parameters::new(DmarcParameters::new(&message, &dkim, DOMAIN, spf))
                .with_txt_cache(&answers),
        )
        .await;
    let header_from = message.from.first().map(String::as_str).unwrap_or("");
    let header = AuthenticationResults::new(AUTHSERV)
        .with_dkim_results(&dkim, header_from)
        .with_spf_ehlo_result(spf, ip, HELO)
        .with_spf_mailfrom_result(spf, ip, sender, HELO)
        .with_arc_result(&arc, ip)
        .with_dmarc_result(&dmarc)
        .to_header();
    std::hint::black_box(header);
    let dkim_pass = !dkim.is_empty() && dkim.iter().all(|d| *d.result() == DkimResult::Pass);
    (dkim_pass, arc.result().clone(), dmarc.dkim_result().clone())
}

/// CPU time of this thread, in seconds (/proc/thread-self/schedstat: nanoseconds on a
/// CPU). The runtime is single-threaded and nothing else runs in it, so it is the
/// verification's CPU time; /proc/self/stat's 10 ms ticks would be too coarse.
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map(|ns| ns / 1e9)
        .unwrap_or(0.0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let mut n = 500usize;
    let mut reps = 3usize;
    let mut out: Option<std::path::PathBuf> = None;
    let mut min_secs = 2.0f64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--n" => n = args.next().and_then(|v| v.parse().ok()).expect("--n N"),
            "--reps" => reps = args.next().and_then(|v| v.parse().ok()).expect("--reps N"),
            "--min-secs" => {
                min_secs = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--min-secs S")
            }
            "--out" => out = Some(args.next().expect("--out DIR").into()),
            other => panic!("unknown argument {other}"),
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(n, reps, min_secs, out));
}

async fn run(n: usize, reps: usize, min_secs: f64, out: Option<std::path::PathBuf>) {
    // No name server: every question must be answered by `records`.
    let verifier = MessageAuthenticator::new(
        ResolverConfig::from_name_servers(Vec::new()),
        ResolverOpts::default(),
    )
    .expect("resolver");
    let records = Records::default();
    let mut zone = Vec::new();

    let rsa = generate(Algorithm::Rsa).expect("RSA key");
    let ed = generate(Algorithm::Ed25519).expect("Ed25519 key");
    let sealer_key = generate(Algorithm::Rsa).expect("RSA key");
    for (key, selector, domain) in [
        (&rsa, "rsa-202611", DOMAIN),
        (&ed, "ed25519-202611", DOMAIN),
        (&sealer_key, "arc-202611", SEALER),
    ] {
        let parsed = DomainKey::parse(key.dns_txt.as_bytes()).expect("key record");
        put(
            &records,
            &mut zone,
            record_name(selector, domain),
            Txt::DomainKey(Arc::new(parsed)),
            &key.dns_txt,
        );
    }
    let dmarc = "v=DMARC1; p=reject; adkim=r; aspf=r";
    put(
        &records,
        &mut zone,
        format!("_dmarc.{DOMAIN}."),
        Txt::Dmarc(Arc::new(Dmarc::parse(dmarc.as_bytes()).expect("DMARC"))),
        dmarc,
    );
    // DMARC's tree walk (RFC 9989 §4.10) also asks the parent: NXDOMAIN, as a real zone.
    records.set(
        "_dmarc.com.",
        Txt::Error(mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(
            ResponseCode::NXDomain,
        ))),
    );
    let spf = "v=spf1 ip4:192.0.2.0/24 -all";
    put(
        &records,
        &mut zone,
        format!("{DOMAIN}."),
        Txt::Spf(Arc::new(Spf::parse(spf.as_bytes()).expect("SPF"))),
        spf,
    );

    // SPF is checked at MAIL time, before the message: once here, outside the clock.
    let spf_output = verifier
        .verify_spf(
            Parameters::new(SpfParameters::verify_mail_from(
                IpAddr::from(CLIENT),
                HELO,
                AUTHSERV,
                "user@example.com",
            ))
            .with_txt_cache(&records),
        )
        .await;
    assert_eq!(spf_output.result(), SpfResult::Pass, "SPF from the cache");

    let signer_rsa =
        Signer::new(DOMAIN, &[rsa.to_store(DOMAIN, "rsa-202611", "active", 0)]).expect("signer");
    let signer_ed = Signer::new(
        DOMAIN,
        &[ed.to_store(DOMAIN, "ed25519-202611", "active", 0)],
    )
    .expect("signer");
    let signer_both = Signer::new(
        DOMAIN,
        &[
            rsa.to_store(DOMAIN, "rsa-202611", "active", 0),
            ed.to_store(DOMAIN, "ed25519-202611", "active", 0),
        ],
    )
    .expect("signer");
    let arc_key = RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        sealer_key.private_pkcs8_der.clone(),
    )))
    .expect("key");
    let sealer = ArcSealer::from_key(arc_key)
        .domain(SEALER)
        .selector("arc-202611")
        .headers([
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "DKIM-Signature",
        ]);

    let sign = |signer: &Signer, m: Vec<u8>| -> Vec<u8> {
        let mut signed = signer.sign(&m).expect("sign").into_bytes();
        signed.extend_from_slice(&m);
        signed
    };
    let mut sets: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "rsa",
            (0..n).map(|i| sign(&signer_rsa, message(i))).collect(),
        ),
        (
            "ed25519",
            (0..n).map(|i| sign(&signer_ed, message(i))).collect(),
        ),
        (
            "both",
            (0..n).map(|i| sign(&signer_both, message(i))).collect(),
        ),
    ];
    let mut sealed = Vec::with_capacity(n);
    for i in 0..n {
        let signed = sign(&signer_rsa, message(i));
        let parsed = AuthenticatedMessage::parse(&signed).expect("parse");
        let dkim = verifier
            .verify_dkim(Parameters::new(&parsed).with_txt_cache(&records))
            .await;
        let arc = verifier
            .verify_arc(Parameters::new(&parsed).with_txt_cache(&records))
            .await;
        let results = AuthenticationResults::new(SEALER).with_dkim_results(&dkim, "");
        let set = sealer.seal(&parsed, &results, &arc).expect("ARC seal");
        let mut m = set.to_header().into_bytes();
        m.extend_from_slice(results.to_header().as_bytes());
        m.extend_from_slice(&signed);
        sealed.push(m);
    }
    sets.push(("arc", sealed));

    if let Some(dir) = &out {
        std::fs::create_dir_all(dir).expect("out dir");
        let tsv: String = zone.iter().map(|(k, v)| format!("{k}\t{v}\n")).collect();
        std::fs::write(dir.join("records.tsv"), tsv).expect("write records");
        for (name, messages) in &sets {
            let d = dir.join(name);
            std::fs::create_dir_all(&d).expect("set dir");
            for (i, m) in messages.iter().enumerate() {
                std::fs::write(d.join(format!("{i:05}.eml")), m).expect("write message");
            }
        }
    }

    // Every message must verify (else the figures would time failures).
    for (name, messages) in &sets {
        for m in messages {
            let (dkim, arc, dmarc) = check(&verifier, &records, m, &spf_output).await;
            let arc_ok = if *name == "arc" {
                arc == DkimResult::Pass
            } else {
                arc == DkimResult::None
            };
            assert!(
                dkim && arc_ok && dmarc == DmarcResult::Pass,
                "{name}: dkim={dkim} arc={arc:?} dmarc={dmarc:?}"
            );
        }
    }

    for (name, messages) in &sets {
        let mut rates = Vec::new();
        let mut cpus = Vec::new();
        for _ in 0..reps {
            // Whole passes over the set until the run has lasted `min_secs`.
            let (t0, c0) = (Instant::now(), cpu_seconds());
            let mut done = 0usize;
            while done == 0 || t0.elapsed().as_secs_f64() < min_secs {
                for m in messages {
                    std::hint::black_box(check(&verifier, &records, m, &spf_output).await);
                }
                done += messages.len();
            }
            let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
            rates.push(done as f64 / wall);
            cpus.push(cpu * 1e6 / done as f64);
        }
        let runs: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
        println!(
            "{name} set={} msgs_per_sec={:.0} cpu_us_per_msg={:.0} runs={}",
            messages.len(),
            median(&mut rates),
            median(&mut cpus),
            runs.join(",")
        );
    }
}
