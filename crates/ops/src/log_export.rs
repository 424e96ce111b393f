//! The message log exported by time range, as CSV (one row per recipient) or JSON lines
//! (one message a line, as the API shows it), a page at a time: an export of any length
//! holds one page in memory, never the whole range.

use crate::{Access, Ops, OpsError, Result, Role, Scope};
use portcullis_gateway::dates::{iso, parse_ymd};
use portcullis_store::{MessageRecord, Sees};

/// Messages read per page of an export.
pub const EXPORT_PAGE: i64 = 500;

/// The format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

impl ExportFormat {
    pub fn parse(s: &str) -> Result<ExportFormat> {
        match s {
            "csv" => Ok(ExportFormat::Csv),
            "jsonl" | "json" => Ok(ExportFormat::Jsonl),
            _ => Err(OpsError::invalid("format", s, "expected csv or jsonl")),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Jsonl => "application/x-ndjson",
        }
    }
}

/// A time of an export's range: unix seconds, a span back from now (`30m`, `7d`), a day
/// (`2026-12-01`, its start, UTC) or a UTC time (`2026-12-01T08:30:00Z`).
pub fn parse_time(s: &str, now: i64) -> Result<i64> {
    let s = s.trim();
    if let Ok(t) = crate::log::parse_since(s, now) {
        return Ok(t);
    }
    let bad = || {
        OpsError::invalid(
            "time",
            s,
            "expected unix seconds, 30m/2h/7d, 2026-12-01 or 2026-12-01T08:30:00Z",
        )
    };
    let day = parse_ymd(s.get(..10).ok_or_else(bad)?).ok_or_else(bad)?;
    let rest = &s[10..];
    if rest.is_empty() {
        return Ok(day);
    }
    let clock = rest
        .strip_prefix(['T', ' '])
        .map(|c| c.trim_end_matches('Z'))
        .ok_or_else(bad)?;
    let parts: Vec<i64> = clock
        .split(':')
        .map(|p| p.parse::<i64>().map_err(|_| bad()))
        .collect::<Result<_>>()?;
    let (h, m, sec) = match parts[..] {
        [h, m] => (h, m, 0),
        [h, m, sec] => (h, m, sec),
        _ => return Err(bad()),
    };
    if !(0..24).contains(&h) || !(0..60).contains(&m) || !(0..61).contains(&sec) {
        return Err(bad());
    }
    Ok(day + h * 3600 + m * 60 + sec)
}

/// The columns of the CSV export, its first line.
pub const CSV_HEADER: &str = "id,received_at,direction,client_ip,helo,sender,auth_user,\
message_id,subject,size,verdict,rule,score,recipient,status,remote_host,reply,updated_at,attempts\r\n";

/// A text cell of CSV (RFC 4180): quoted when it holds a comma, a quote or a line break.
/// One that a spreadsheet would take for a formula (`=`, `+`, `-`, `@` first) gets a `'`
/// before it: subjects and addresses come from strangers. Hand-written: the quoting is
/// these few lines, and the export needs nothing else of a CSV library.
fn cell(out: &mut String, text: &str) {
    let guard = text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if guard || text.contains([',', '"', '\r', '\n']) {
        out.push('"');
        if guard {
            out.push('\'');
        }
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

/// The CSV rows of one message: one per recipient (one with empty recipient cells when
/// it has none).
pub fn csv_rows(m: &MessageRecord, out: &mut String) {
    let mut message = String::new();
    for (i, text) in [
        m.id.as_str(),
        &iso(m.received_at),
        &m.direction,
        &m.client_ip,
        &m.helo,
        &m.sender,
        m.auth_user.as_deref().unwrap_or(""),
        m.message_id.as_deref().unwrap_or(""),
        m.subject.as_deref().unwrap_or(""),
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            message.push(',');
        }
        cell(&mut message, text);
    }
    message.push_str(&format!(",{},", m.size));
    cell(&mut message, m.verdict.as_deref().unwrap_or(""));
    message.push(',');
    cell(&mut message, m.rule.as_deref().unwrap_or(""));
    message.push(',');
    if let Some(score) = m.score {
        message.push_str(&score.to_string());
    }
    if m.recipients.is_empty() {
        out.push_str(&message);
        out.push_str(",,,,,,\r\n");
    }
    for r in &m.recipients {
        out.push_str(&message);
        for text in [
            r.address.as_str(),
            &r.status,
            r.remote_host.as_deref().unwrap_or(""),
            r.reply.as_deref().unwrap_or(""),
        ] {
            out.push(',');
            cell(out, text);
        }
        out.push_str(&format!(",{},{}\r\n", iso(r.updated_at), r.attempts));
    }
}

/// An export under way: [`LogExport::next_chunk`] gives the text of one page after the
/// other, then None.
pub struct LogExport {
    ops: Ops,
    sees: Sees,
    from: i64,
    to: i64,
    format: ExportFormat,
    after: Option<(i64, String)>,
    header: bool,
    done: bool,
}

impl LogExport {
    /// The text of the next page (the CSV header first); None at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<String>> {
        if self.done {
            return Ok(None);
        }
        let mut out = String::new();
        if !self.header {
            self.header = true;
            if self.format == ExportFormat::Csv {
                out.push_str(CSV_HEADER);
            }
        }
        let page = self
            .ops
            .store()
            .log_export_page(
                self.from,
                self.to,
                self.after.as_ref().map(|(t, id)| (*t, id.as_str())),
                EXPORT_PAGE,
                &self.sees,
            )
            .await?;
        if (page.len() as i64) < EXPORT_PAGE {
            self.done = true;
        }
        for m in &page {
            match self.format {
                ExportFormat::Csv => csv_rows(m, &mut out),
                ExportFormat::Jsonl => {
                    out.push_str(&serde_json::to_string(m).unwrap_or_default());
                    out.push('\n');
                }
            }
        }
        self.after = page.last().map(|m| (m.received_at, m.id.clone()));
        Ok(Some(out))
    }
}

impl Ops {
    /// An export of the messages received in `[from, to)`. Whole-gateway roles (admin,
    /// auditor, helpdesk) export every message, a domain administrator the mail of their
    /// domains; a user's account may not export.
    pub fn log_export(&self, from: i64, to: i64, format: ExportFormat) -> Result<LogExport> {
        let actor = self.actor();
        let sees = if actor.sees_all() {
            actor.require(Access::ReadMessages, &Scope::Global)?;
            Sees::All
        } else if actor.role == Role::DomainAdmin {
            Sees::Domains(actor.domains.clone())
        } else {
            return Err(OpsError::Forbidden(format!(
                "{} ({}) may not export the message log",
                actor.name, actor.role
            )));
        };
        if to <= from {
            return Err(OpsError::invalid(
                "to",
                &to.to_string(),
                "must be after `from`",
            ));
        }
        Ok(LogExport {
            ops: self.clone(),
            sees,
            from,
            to,
            format,
            after: None,
            header: false,
            done: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1800000000", 0).unwrap(), 1_800_000_000);
        assert_eq!(parse_time("2h", 10_000).unwrap(), 2_800);
        assert_eq!(parse_time("1970-01-02", 0).unwrap(), 86_400);
        assert_eq!(parse_time("1970-01-02T01:02:03Z", 0).unwrap(), 90_123);
        assert_eq!(parse_time("1970-01-02 01:02", 0).unwrap(), 90_120);
        assert!(parse_time("1970-01-02T25:00Z", 0).is_err());
        assert!(parse_time("yesterday", 0).is_err());
        assert!(parse_time("2026-02-30", 0).is_err());
    }

    #[test]
    fn csv_cells() {
        let mut out = String::new();
        cell(&mut out, "plain");
        out.push(',');
        cell(&mut out, "a \"quoted\", text");
        out.push(',');
        cell(&mut out, "=HYPERLINK(\"x\")");
        assert_eq!(
            out,
            "plain,\"a \"\"quoted\"\", text\",\"'=HYPERLINK(\"\"x\"\")\""
        );
    }
}
