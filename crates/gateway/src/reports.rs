//! Incoming aggregate reports about our domains: DMARC aggregate reports (RFC 7489 §7.2, XML,
//! sent plain, gzipped or zipped) and SMTP TLS reports (RFC 8460, JSON, usually gzipped). A
//! message addressed to one of our domains is looked at after it is queued (so it is delivered
//! as well); when it carries a report, the report is parsed, summarized and kept in the store,
//! where `portcullis report list|show` finds it. `portcullis report import FILE` does the same
//! for a message saved as a file.
//!
//! A report is recognized by its content, not by who sent it: a part of a report type (gzip,
//! zip, XML, `application/tlsrpt+gzip`, `application/tlsrpt+json`) or with a report file name
//! (`.xml`, `.gz`, `.zip`, `.json`) is unpacked within bounds, and its first non-blank byte
//! says which kind it is (`<` DMARC XML, `{` TLS-RPT JSON). The XML and JSON are parsed by
//! mail-auth. Every step is bounded: message size, parts examined, zip entries, unpacked size,
//! records kept.

use mail_auth::report::tlsrpt::TlsReport;
use mail_auth::report::{DmarcResult, Report};
use mail_parser::{MessageParser, MessagePart, MimeHeaders, PartType};
use portcullis_queue::spool::{new_id, now};
use portcullis_store::{ReportSummary, Store, StoreError, StoredReport};
use std::io::{Cursor, Read};

/// Largest message looked at; reports are small, a big message is something else.
pub const MAX_MESSAGE_SIZE: usize = 50 << 20;
/// Largest report once unpacked (a gzip or zip bomb stops here).
pub const MAX_REPORT_SIZE: usize = 20 << 20;
/// MIME parts examined per message.
const MAX_PARTS: usize = 32;
/// Entries examined per zip archive.
const MAX_ZIP_ENTRIES: usize = 8;
/// DMARC records kept per report; the counts cover every record.
pub const MAX_DMARC_RECORDS: usize = 10_000;
/// TLS-RPT policies kept per report; the counts cover every policy.
pub const MAX_TLSRPT_POLICIES: usize = 1_000;
/// TLS-RPT failure details kept per policy.
pub const MAX_FAILURE_DETAILS: usize = 1_000;

/// Why a message was not stored as a report.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The message carries no report we could read; the reason says what was found.
    #[error("not a DMARC aggregate or TLS-RPT report: {0}")]
    NotAReport(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A report found in a message.
#[derive(Debug)]
enum Parsed {
    Dmarc(Report),
    TlsRpt(TlsReport),
}

/// The DKIM keys for signing outgoing reports (DMARC aggregate, TLS-RPT), or None when
/// they cannot be read (the report then goes out unsigned, logged).
pub async fn report_keys(store: &Store) -> Option<portcullis_filter::sign::KeyRing> {
    match portcullis_filter::sign::KeyRing::load(store, None).await {
        Ok(ring) => Some(ring),
        Err(e) => {
            tracing::warn!(error = %e, "DKIM keys unreadable; reports go out unsigned");
            None
        }
    }
}

/// An outgoing report signed with the DKIM key of its From domain (or the nearest parent
/// with keys) when there is one. Reports go out with the null sender, so DMARC at the
/// receiving end can only pass by DKIM; RFC 8460 §5.3 asks TLS reports to be signed too.
pub fn dkim_signed(
    keys: Option<&portcullis_filter::sign::KeyRing>,
    from: &str,
    message: Vec<u8>,
) -> Vec<u8> {
    let domain = from.rsplit_once('@').map_or(from, |(_, d)| d);
    match keys
        .and_then(|k| k.signer_for_domain(domain))
        .map(|s| s.sign(&message))
    {
        Some(Ok(fields)) => [fields.into_bytes(), message].concat(),
        Some(Err(e)) => {
            tracing::warn!(domain, error = %e, "report not DKIM-signed");
            message
        }
        None => message,
    }
}

/// Looks at an inbound message: if it carries a DMARC aggregate or TLS-RPT report, stores the
/// report and returns its id (the id of the copy already stored when the same report came
/// before); otherwise None. Never fails the caller: store errors are logged.
// Until the SMTP handler calls it, only the tests do.
/// A cheap first look at the start of a message: can it be a report at all (a compressed
/// or XML/JSON attachment, or a TLS-RPT header)? Ordinary mail is not parsed again.
pub fn may_be_report(head: &[u8]) -> bool {
    let head = &head[..head.len().min(64 * 1024)];
    let lower = head.to_ascii_lowercase();
    [
        &b"gzip"[..],
        b"zip",
        b"xml",
        b"tlsrpt",
        b"tls-report-domain",
    ]
    .iter()
    .any(|needle| memchr::memmem::find(&lower, needle).is_some())
}

pub async fn intake(store: &Store, raw: &[u8]) -> Option<String> {
    match take_in(store, raw).await {
        Ok((id, _)) => Some(id),
        Err(IntakeError::NotAReport(_)) => None,
        Err(e) => {
            tracing::warn!(error = %e, "incoming report could not be stored");
            None
        }
    }
}

/// Like [`intake`], saying why a message was refused and whether the report was new.
pub async fn take_in(store: &Store, raw: &[u8]) -> Result<(String, bool), IntakeError> {
    let parsed = find_report(raw).map_err(IntakeError::NotAReport)?;
    let header_domain = MessageParser::new()
        .parse_headers(raw)
        .and_then(|m| m.header_raw("TLS-Report-Domain").map(str::to_string));
    let report = summarize(parsed, header_domain.as_deref(), new_id(), now())
        .map_err(IntakeError::NotAReport)?;
    let (id, new) = store.report_insert(&report).await?;
    let s = &report.summary;
    tracing::info!(
        id,
        kind = s.kind,
        org = s.org,
        report_id = s.report_id,
        domain = s.domain,
        new,
        "incoming report"
    );
    Ok((id, new))
}

/// How a part is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Packing {
    Plain,
    Gzip,
    Zip,
}

/// The packing of a part that may hold a report; None for every other part.
fn packing(part: &MessagePart) -> Option<Packing> {
    if matches!(part.body, PartType::Message(_) | PartType::Multipart(_)) {
        return None;
    }
    let subtype = part
        .content_type()
        .and_then(|ct| ct.subtype())
        .unwrap_or("")
        .to_ascii_lowercase();
    let name = part.attachment_name().unwrap_or("").to_ascii_lowercase();
    match subtype.as_str() {
        "gzip" | "x-gzip" | "tlsrpt+gzip" => return Some(Packing::Gzip),
        "zip" | "x-zip" | "x-zip-compressed" | "tlsrpt+zip" => return Some(Packing::Zip),
        "xml" | "tlsrpt+json" => return Some(Packing::Plain),
        _ => {}
    }
    if name.ends_with(".gz") {
        Some(Packing::Gzip)
    } else if name.ends_with(".zip") {
        Some(Packing::Zip)
    } else if name.ends_with(".xml") || name.ends_with(".json") {
        Some(Packing::Plain)
    } else {
        None
    }
}

/// Reads at most [`MAX_REPORT_SIZE`] bytes; more is an error.
fn read_bounded(reader: impl Read) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    reader
        .take(MAX_REPORT_SIZE as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("unpacking: {e}"))?;
    if out.len() > MAX_REPORT_SIZE {
        return Err(format!(
            "report larger than {} MiB unpacked",
            MAX_REPORT_SIZE >> 20
        ));
    }
    Ok(out)
}

/// The report files of a part, unpacked.
fn unpack(bytes: &[u8], packing: Packing) -> Result<Vec<Vec<u8>>, String> {
    match packing {
        Packing::Plain => {
            if bytes.len() > MAX_REPORT_SIZE {
                return Err(format!("report larger than {} MiB", MAX_REPORT_SIZE >> 20));
            }
            Ok(vec![bytes.to_vec()])
        }
        Packing::Gzip => {
            if !bytes.starts_with(&[0x1f, 0x8b]) {
                return Err("gzip attachment is not gzip data".into());
            }
            let decoder = mail_auth::flate2::read::GzDecoder::new(bytes);
            Ok(vec![read_bounded(decoder)?])
        }
        Packing::Zip => {
            let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
                .map_err(|e| format!("zip attachment: {e}"))?;
            let mut files = Vec::new();
            let mut total = 0usize;
            for i in 0..archive.len().min(MAX_ZIP_ENTRIES) {
                let file = archive
                    .by_index(i)
                    .map_err(|e| format!("zip attachment: {e}"))?;
                if file.is_dir() {
                    continue;
                }
                if file.size() > MAX_REPORT_SIZE as u64 {
                    return Err(format!(
                        "report larger than {} MiB unpacked",
                        MAX_REPORT_SIZE >> 20
                    ));
                }
                let data = read_bounded(file)?;
                total += data.len();
                if total > MAX_REPORT_SIZE {
                    return Err(format!(
                        "zip attachment larger than {} MiB unpacked",
                        MAX_REPORT_SIZE >> 20
                    ));
                }
                files.push(data);
            }
            Ok(files)
        }
    }
}

/// Parses one unpacked file by what it starts with.
fn parse_file(data: &[u8]) -> Result<Parsed, String> {
    let data = data.strip_prefix(b"\xef\xbb\xbf").unwrap_or(data);
    match data.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'<') => {
            let report =
                Report::parse_xml(data).map_err(|e| format!("DMARC aggregate report: {e}"))?;
            if report.report_metadata.report_id.trim().is_empty()
                || report.report_metadata.org_name.trim().is_empty()
                || report.policy_published.domain.trim().is_empty()
            {
                return Err(
                    "DMARC aggregate report lacks org_name, report_id or policy domain".into(),
                );
            }
            Ok(Parsed::Dmarc(report))
        }
        Some(b'{') => {
            let report =
                TlsReport::parse_json(data).map_err(|e| format!("TLS-RPT report: {e:?}"))?;
            if report.report_id.trim().is_empty() {
                return Err("TLS-RPT report lacks report-id".into());
            }
            Ok(Parsed::TlsRpt(report))
        }
        _ => Err("attachment is neither XML nor JSON".into()),
    }
}

/// The first report in a message.
fn find_report(raw: &[u8]) -> Result<Parsed, String> {
    if raw.len() > MAX_MESSAGE_SIZE {
        return Err(format!(
            "message larger than {} MiB",
            MAX_MESSAGE_SIZE >> 20
        ));
    }
    // Most mail is a text or HTML message: its header says so, and the body is never parsed.
    let head = MessageParser::new()
        .parse_headers(raw)
        .ok_or_else(|| "not a parsable message".to_string())?;
    let (ctype, subtype) = head
        .content_type()
        .map(|ct| {
            (
                ct.ctype().to_ascii_lowercase(),
                ct.subtype().unwrap_or("").to_ascii_lowercase(),
            )
        })
        .unwrap_or_else(|| ("text".into(), "plain".into()));
    if ctype == "text" && subtype != "xml" {
        return Err(format!(
            "a {ctype}/{subtype} message has no report attachment"
        ));
    }
    let message = MessageParser::new()
        .parse(raw)
        .ok_or_else(|| "not a parsable message".to_string())?;
    let mut error = None;
    for part in message.parts.iter().take(MAX_PARTS) {
        let Some(packing) = packing(part) else {
            continue;
        };
        match unpack(part.contents(), packing) {
            Ok(files) => {
                for file in files {
                    match parse_file(&file) {
                        Ok(parsed) => return Ok(parsed),
                        Err(e) => error = Some(e),
                    }
                }
            }
            Err(e) => error = Some(e),
        }
    }
    Err(error.unwrap_or_else(|| "no report attachment (XML, JSON, gzip or zip)".into()))
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The row to store: counts over the whole report, the report itself trimmed to the limits.
fn summarize(
    parsed: Parsed,
    header_domain: Option<&str>,
    id: String,
    received_at: i64,
) -> Result<StoredReport, String> {
    match parsed {
        Parsed::Dmarc(mut r) => {
            let (mut messages, mut pass) = (0u64, 0u64);
            for rec in &r.record {
                let count = u64::from(rec.row.count);
                let pe = &rec.row.policy_evaluated;
                messages += count;
                if pe.dkim == DmarcResult::Pass || pe.spf == DmarcResult::Pass {
                    pass += count;
                }
            }
            if r.record.len() > MAX_DMARC_RECORDS {
                tracing::warn!(
                    records = r.record.len(),
                    kept = MAX_DMARC_RECORDS,
                    "DMARC report has too many records; keeping the first"
                );
                r.record.truncate(MAX_DMARC_RECORDS);
            }
            // JSON has no NaN; a hostile version number must not make the report unreadable.
            if !r.version.is_finite() {
                r.version = 0.0;
            }
            if r.policy_published
                .version_published
                .is_some_and(|v| !v.is_finite())
            {
                r.policy_published.version_published = None;
            }
            let m = &r.report_metadata;
            let summary = ReportSummary {
                id,
                kind: "dmarc".into(),
                org: m.org_name.trim().to_string(),
                report_id: m.report_id.trim().to_string(),
                domain: clean_domain(&r.policy_published.domain),
                begin: to_i64(m.date_range.begin),
                end: to_i64(m.date_range.end),
                received_at,
                messages: to_i64(messages),
                pass: to_i64(pass),
                fail: to_i64(messages - pass),
            };
            let report = serde_json::to_string(&r).map_err(|e| e.to_string())?;
            Ok(StoredReport { summary, report })
        }
        Parsed::TlsRpt(mut r) => {
            let (mut success, mut failure) = (0u64, 0u64);
            for p in &r.policies {
                success += u64::from(p.summary.total_success);
                failure += u64::from(p.summary.total_failure);
            }
            r.policies.truncate(MAX_TLSRPT_POLICIES);
            for p in &mut r.policies {
                p.failure_details.truncate(MAX_FAILURE_DETAILS);
            }
            let domain = r
                .policies
                .iter()
                .map(|p| p.policy.policy_domain.trim())
                .find(|d| !d.is_empty())
                .or(header_domain.map(str::trim))
                .map(clean_domain)
                .filter(|d| !d.is_empty())
                .ok_or_else(|| "TLS-RPT report names no policy domain".to_string())?;
            let org = r
                .organization_name
                .as_deref()
                .or(r.contact_info.as_deref())
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .unwrap_or("(unnamed)")
                .to_string();
            let summary = ReportSummary {
                id,
                kind: "tlsrpt".into(),
                org,
                report_id: r.report_id.trim().to_string(),
                domain,
                begin: r.date_range.start_datetime.to_timestamp(),
                end: r.date_range.end_datetime.to_timestamp(),
                received_at,
                messages: to_i64(success + failure),
                pass: to_i64(success),
                fail: to_i64(failure),
            };
            let report = serde_json::to_string(&r).map_err(|e| e.to_string())?;
            Ok(StoredReport { summary, report })
        }
    }
}

fn clean_domain(d: &str) -> String {
    d.trim().trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod first_look {
    #[test]
    fn ordinary_mail_is_not_a_report() {
        assert!(!super::may_be_report(
            b"Subject: lunch\r\nContent-Type: text/plain\r\n\r\nhi"
        ));
        assert!(super::may_be_report(
            b"Subject: Report Domain: x\r\nContent-Type: application/GZIP\r\n"
        ));
        assert!(super::may_be_report(b"TLS-Report-Domain: example.com\r\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_auth::flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    /// A DMARC aggregate report per RFC 7489 Appendix C: two sources, one passing.
    const DMARC_XML: &str = r#"<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <version>1.0</version>
  <report_metadata>
    <org_name>Receiver Example</org_name>
    <email>noreply-dmarc@receiver.example</email>
    <report_id>dmarc-4711</report_id>
    <date_range>
      <begin>1795305600</begin>
      <end>1795391999</end>
    </date_range>
  </report_metadata>
  <policy_published>
    <domain>Example.COM</domain>
    <adkim>r</adkim>
    <aspf>r</aspf>
    <p>quarantine</p>
    <sp>none</sp>
    <pct>100</pct>
  </policy_published>
  <record>
    <row>
      <source_ip>192.0.2.10</source_ip>
      <count>12</count>
      <policy_evaluated>
        <disposition>none</disposition>
        <dkim>pass</dkim>
        <spf>fail</spf>
      </policy_evaluated>
    </row>
    <identifiers>
      <header_from>example.com</header_from>
    </identifiers>
    <auth_results>
      <dkim>
        <domain>example.com</domain>
        <selector>s1</selector>
        <result>pass</result>
      </dkim>
      <spf>
        <domain>bounce.example.net</domain>
        <result>fail</result>
      </spf>
    </auth_results>
  </record>
  <record>
    <row>
      <source_ip>2001:db8::25</source_ip>
      <count>3</count>
      <policy_evaluated>
        <disposition>quarantine</disposition>
        <dkim>fail</dkim>
        <spf>fail</spf>
      </policy_evaluated>
    </row>
    <identifiers>
      <header_from>example.com</header_from>
    </identifiers>
    <auth_results>
      <spf>
        <domain>example.com</domain>
        <result>softfail</result>
      </spf>
    </auth_results>
  </record>
</feedback>
"#;

    /// A TLS-RPT report per RFC 8460 §4.4: one STS policy with a failure.
    const TLSRPT_JSON: &str = r#"{
  "organization-name": "Sender Example Inc.",
  "date-range": {
    "start-datetime": "2026-11-22T00:00:00Z",
    "end-datetime": "2026-11-22T23:59:59Z"
  },
  "contact-info": "smtp-tls-reporting@sender.example",
  "report-id": "2026-11-22T00:00:00Z_example.com",
  "policies": [{
    "policy": {
      "policy-type": "sts",
      "policy-string": ["version: STSv1", "mode: enforce", "mx: mx.example.com", "max_age: 86400"],
      "policy-domain": "example.com",
      "mx-host": ["mx.example.com"]
    },
    "summary": {
      "total-successful-session-count": 5326,
      "total-failure-session-count": 303
    },
    "failure-details": [{
      "result-type": "certificate-expired",
      "sending-mta-ip": "198.51.100.62",
      "receiving-ip": "192.0.2.25",
      "receiving-mx-hostname": "mx.example.com",
      "failed-session-count": 303,
      "failure-reason-code": "X509_V_ERR_CERT_HAS_EXPIRED"
    }]
  }]
}"#;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(data).expect("gzip");
        enc.finish().expect("gzip")
    }

    fn b64(data: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out.as_bytes()
            .chunks(76)
            .map(|l| std::str::from_utf8(l).expect("ascii"))
            .collect::<Vec<_>>()
            .join("\r\n")
    }

    fn message(extra_headers: &str, content_type: &str, name: &str, payload: &[u8]) -> Vec<u8> {
        format!(
            "From: reports@sender.example\r\nTo: dmarc@example.com\r\nSubject: Report\r\n{extra_headers}\
             MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=tlsrpt; boundary=\"b1\"\r\n\r\n\
             --b1\r\nContent-Type: text/plain\r\n\r\nThis is an aggregate report.\r\n\
             --b1\r\nContent-Type: {content_type}\r\nContent-Transfer-Encoding: base64\r\n\
             Content-Disposition: attachment; filename=\"{name}\"\r\n\r\n{}\r\n--b1--\r\n",
            b64(payload)
        )
        .into_bytes()
    }

    fn dmarc_gz() -> Vec<u8> {
        message(
            "",
            "application/gzip",
            "receiver.example!example.com!1795305600!1795391999.xml.gz",
            &gzip(DMARC_XML.as_bytes()),
        )
    }

    fn tlsrpt_gz() -> Vec<u8> {
        message(
            "TLS-Report-Domain: example.com\r\nTLS-Report-Submitter: sender.example\r\n",
            "application/tlsrpt+gzip",
            "sender.example!example.com!1795305600!1795391999.json.gz",
            &gzip(TLSRPT_JSON.as_bytes()),
        )
    }

    #[test]
    fn dmarc_gzip_is_parsed_and_counted() {
        let parsed = find_report(&dmarc_gz()).expect("report");
        let r = summarize(parsed, None, "ID1".into(), 7).expect("summary");
        let s = &r.summary;
        assert_eq!(s.kind, "dmarc");
        assert_eq!(s.org, "Receiver Example");
        assert_eq!(s.report_id, "dmarc-4711");
        assert_eq!(s.domain, "example.com");
        assert_eq!((s.begin, s.end), (1_795_305_600, 1_795_391_999));
        assert_eq!((s.messages, s.pass, s.fail), (15, 12, 3));
        let back: Report = serde_json::from_str(&r.report).expect("stored JSON reads back");
        assert_eq!(back.record.len(), 2);
    }

    #[test]
    fn dmarc_plain_xml_and_zip() {
        let plain = message("", "text/xml", "report.xml", DMARC_XML.as_bytes());
        assert!(matches!(find_report(&plain), Ok(Parsed::Dmarc(_))));

        let mut zipped = Vec::new();
        {
            let mut w = zip::ZipWriter::new(Cursor::new(&mut zipped));
            w.start_file(
                "report.xml",
                zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Deflated),
            )
            .expect("zip");
            w.write_all(DMARC_XML.as_bytes()).expect("zip");
            w.finish().expect("zip");
        }
        let msg = message("", "application/zip", "report.zip", &zipped);
        assert!(matches!(find_report(&msg), Ok(Parsed::Dmarc(_))));
    }

    #[test]
    fn tlsrpt_gzip_is_parsed_and_counted() {
        let parsed = find_report(&tlsrpt_gz()).expect("report");
        let r = summarize(parsed, Some("example.com"), "ID2".into(), 7).expect("summary");
        let s = &r.summary;
        assert_eq!(s.kind, "tlsrpt");
        assert_eq!(s.org, "Sender Example Inc.");
        assert_eq!(s.report_id, "2026-11-22T00:00:00Z_example.com");
        assert_eq!(s.domain, "example.com");
        assert_eq!((s.begin, s.end), (1_795_305_600, 1_795_391_999));
        assert_eq!((s.messages, s.pass, s.fail), (5629, 5326, 303));
        let back: TlsReport = serde_json::from_str(&r.report).expect("stored JSON reads back");
        assert_eq!(
            back.policies[0].failure_details[0].failed_session_count,
            303
        );
    }

    #[test]
    fn other_mail_is_not_a_report() {
        let plain = b"From: a@example.net\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nHello.\r\n";
        assert!(find_report(plain).is_err());
        let pdf = message(
            "",
            "application/pdf",
            "invoice.pdf",
            b"%PDF-1.4 not a report",
        );
        assert!(find_report(&pdf).is_err());
        let xml = message(
            "",
            "application/xml",
            "data.xml",
            b"<invoice><total>3</total></invoice>",
        );
        assert!(find_report(&xml).is_err());
        let bad_gz = message("", "application/gzip", "x.xml.gz", b"not gzip at all");
        assert!(find_report(&bad_gz).is_err());
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        let zeros = vec![b' '; MAX_REPORT_SIZE + 1024];
        let bomb = message("", "application/gzip", "bomb.xml.gz", &gzip(&zeros));
        let err = find_report(&bomb).expect_err("too large");
        assert!(err.contains("larger than"), "{err}");
    }

    #[tokio::test]
    async fn intake_stores_once_and_ignores_other_mail() {
        let store = Store::open("sqlite::memory:").await.expect("store");
        let first = intake(&store, &dmarc_gz()).await.expect("stored");
        let again = intake(&store, &dmarc_gz()).await.expect("stored");
        assert_eq!(first, again);
        let tls = intake(&store, &tlsrpt_gz()).await.expect("stored");
        assert_ne!(tls, first);
        assert!(
            intake(&store, b"Subject: hi\r\n\r\nHello.\r\n")
                .await
                .is_none()
        );
        let all = store
            .report_list(&portcullis_store::ReportQuery::default())
            .await
            .expect("list");
        assert_eq!(all.len(), 2);
        let got = store.report_get(&tls).await.expect("get").expect("found");
        assert_eq!(got.summary.kind, "tlsrpt");
    }
}
