//! The outbound SMTP client: one connection to one server, many messages per connection
//! (RFC 5321, PIPELINING RFC 2920, STARTTLS RFC 3207, AUTH RFC 4954, DSN RFC 3461).
//! It owns the wire dialogue only; choosing the server, retrying and bouncing belong to
//! the scheduler, and every remote reply is handed back unchanged as a `Reply`.
//!
//! The transport underneath (the TCP/TLS stream, the rustls configurations, reading whole
//! replies) is `tls`, which this module uses and which does not use it; the error type
//! both report is in `client_error` (re-exported here as [`ClientError`]).

use std::net::SocketAddr;
use std::time::Duration;

use mail_builder::encoders::Base64Encoder;
use portcullis_smtp::Reply;
use smtp_proto::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

pub use crate::client_error::ClientError;
pub use crate::tls::TlsConfigs;
use crate::tls::{Conn, Stream, parse_reply, start_tls};

/// Size of the pieces the message body is written in.
const BODY_CHUNK: usize = 64 * 1024;

/// TLS policy for one connection (the names follow Postfix `smtp_tls_security_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Never STARTTLS.
    None,
    /// STARTTLS when offered, certificate not verified; a failed handshake is retried
    /// once in plain text.
    May,
    /// STARTTLS required, certificate not verified.
    Encrypt,
    /// STARTTLS required, certificate verified for the host name.
    Verify,
    /// STARTTLS required, certificate checked against the host's DNSSEC-validated TLSA
    /// records (RFC 7672). The caller looks them up and passes the configuration made
    /// from them to [`SmtpClient::connect_with`]; without one the connection fails.
    Dane,
}

#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub helo_name: String,
    pub connect_timeout: Duration,
    /// Greeting, EHLO, MAIL, RCPT, DATA and each body write (RFC 5321 §4.5.3.2: 5 min).
    pub command_timeout: Duration,
    /// The reply to the final dot (RFC 5321 §4.5.3.2: 10 min).
    pub data_timeout: Duration,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            helo_name: "localhost".to_string(),
            connect_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
        }
    }
}

/// What the server advertised in its (last) EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    pub pipelining: bool,
    /// `Some(0)` when SIZE is offered without a limit.
    pub size: Option<usize>,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub dsn: bool,
    pub chunking: bool,
    pub enhanced_status_codes: bool,
    pub starttls: bool,
    pub auth_plain: bool,
    pub auth_login: bool,
}

impl Extensions {
    fn from_ehlo(ehlo: &EhloResponse<String>) -> Self {
        let has = |ext| ehlo.capabilities & ext != 0;
        Extensions {
            pipelining: has(EXT_PIPELINING),
            size: has(EXT_SIZE).then_some(ehlo.size),
            eight_bit_mime: has(EXT_8BIT_MIME),
            smtputf8: has(EXT_SMTP_UTF8),
            dsn: has(EXT_DSN),
            chunking: has(EXT_CHUNKING),
            enhanced_status_codes: has(EXT_ENHANCED_STATUS_CODES),
            starttls: has(EXT_START_TLS),
            auth_plain: has(EXT_AUTH) && ehlo.auth_mechanisms & AUTH_PLAIN != 0,
            auth_login: has(EXT_AUTH) && ehlo.auth_mechanisms & AUTH_LOGIN != 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnRet {
    Full,
    Headers,
}

/// One message for one transaction.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingMessage<'a> {
    /// `""` is the null sender.
    pub sender: &'a str,
    pub recipients: &'a [OutgoingRecipient],
    /// The complete message with CRLF line endings, not dot-stuffed.
    pub data: &'a [u8],
    pub eight_bit: bool,
    pub smtputf8: bool,
    pub envid: Option<&'a str>,
    pub ret: Option<DsnRet>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingRecipient {
    pub address: String,
    /// NOTIFY keywords, e.g. `["SUCCESS", "FAILURE"]` or `["NEVER"]`.
    pub notify: Option<Vec<String>>,
    /// ORCPT, decoded: `rfc822;user@example.org` or a bare address (rfc822 assumed).
    pub orcpt: Option<String>,
}

/// The result for one recipient, in the order the recipients were given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientOutcome {
    Delivered(Reply),
    TempFailed(Reply),
    PermFailed(Reply),
}

impl RecipientOutcome {
    fn from_reply(reply: Reply) -> Self {
        match reply.code {
            200..=299 => RecipientOutcome::Delivered(reply),
            500.. => RecipientOutcome::PermFailed(reply),
            _ => RecipientOutcome::TempFailed(reply),
        }
    }
}

/// One session with one server.
pub struct SmtpClient {
    conn: Conn,
    server_name: String,
    ext: Extensions,
    command_timeout: Duration,
    data_timeout: Duration,
    /// The last transaction ended without a final reply to the dot.
    needs_rset: bool,
    /// False after an I/O error, a timeout or a 421: the session is over.
    usable: bool,
    /// The body of the current transaction went out: after a failure from here on the
    /// server may already have the message, so a retry could deliver it twice.
    body_sent: bool,
}

impl SmtpClient {
    /// Opens a session: greeting, EHLO (HELO fallback), STARTTLS per `tls`, AUTH when
    /// `auth` is given (only ever over TLS). `server_name` is the MX host name, used for
    /// SNI and certificate verification.
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        tls: TlsMode,
        auth: Option<(String, String)>,
        configs: &TlsConfigs,
        settings: &ClientSettings,
    ) -> Result<SmtpClient, ClientError> {
        Self::connect_with(addr, server_name, tls, None, auth, configs, settings).await
    }

    /// As [`connect`](Self::connect), with the TLS client configuration given by the
    /// caller (`config`, a DANE verifier for instance) instead of the one `tls` implies.
    /// `config` is only used when TLS is required (`Encrypt`, `Verify`, `Dane`).
    pub async fn connect_with(
        addr: SocketAddr,
        server_name: &str,
        tls: TlsMode,
        config: Option<std::sync::Arc<rustls::ClientConfig>>,
        auth: Option<(String, String)>,
        configs: &TlsConfigs,
        settings: &ClientSettings,
    ) -> Result<SmtpClient, ClientError> {
        let first = Self::connect_once(
            addr,
            server_name,
            tls,
            config.clone(),
            auth.as_ref(),
            configs,
            settings,
        )
        .await;
        match first {
            Err(ClientError::Tls(e)) if tls == TlsMode::May => {
                tracing::info!(server = server_name, %addr, error = %e, "TLS handshake failed, retrying without TLS");
                Self::connect_once(
                    addr,
                    server_name,
                    TlsMode::None,
                    None,
                    auth.as_ref(),
                    configs,
                    settings,
                )
                .await
            }
            other => other,
        }
    }

    async fn connect_once(
        addr: SocketAddr,
        server_name: &str,
        tls: TlsMode,
        config: Option<std::sync::Arc<rustls::ClientConfig>>,
        auth: Option<&(String, String)>,
        configs: &TlsConfigs,
        settings: &ClientSettings,
    ) -> Result<SmtpClient, ClientError> {
        let limit = settings.command_timeout;
        if tls == TlsMode::Dane && config.is_none() {
            return Err(ClientError::Tls(format!(
                "DANE required for {server_name} but no TLSA records were given"
            )));
        }
        let tcp = match timeout(settings.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(ClientError::Connect(e)),
            Err(_) => return Err(ClientError::Timeout("connect")),
        };
        // Pipelined batches are written whole; Nagle would only delay them.
        let _ = tcp.set_nodelay(true);
        let mut conn = Conn {
            stream: Stream::Plain(tcp),
            rbuf: Vec::new(),
        };

        let greeting = conn.read_reply(limit, "greeting").await?;
        if !greeting.is_positive() {
            return Err(ClientError::Greeting(greeting));
        }
        let mut ext = ehlo(&mut conn, &settings.helo_name, limit).await?;

        let want_tls = match tls {
            TlsMode::None => false,
            TlsMode::May => ext.starttls,
            TlsMode::Encrypt | TlsMode::Verify | TlsMode::Dane if ext.starttls => true,
            TlsMode::Encrypt | TlsMode::Verify | TlsMode::Dane => {
                return Err(ClientError::Tls(format!(
                    "{server_name} does not offer STARTTLS"
                )));
            }
        };
        if want_tls {
            let reply = conn.command("STARTTLS\r\n", limit, "STARTTLS").await?;
            if reply.code == 220 {
                let config = match (tls, config) {
                    (TlsMode::May, _) => configs.unverified(),
                    (_, Some(given)) => given,
                    (TlsMode::Verify, None) => configs.verified(),
                    _ => configs.unverified(),
                };
                conn = start_tls(conn, server_name, config, limit).await?;
                ext = ehlo(&mut conn, &settings.helo_name, limit).await?;
            } else if tls == TlsMode::May {
                tracing::info!(server = server_name, %reply, "STARTTLS refused, continuing without TLS");
            } else {
                return Err(ClientError::Tls(format!("STARTTLS refused: {reply}")));
            }
        }

        if let Some((user, password)) = auth {
            if !matches!(conn.stream, Stream::Tls(_)) {
                return Err(ClientError::AuthUnavailable(
                    "refusing to send credentials over an unencrypted connection".into(),
                ));
            }
            authenticate(&mut conn, &ext, user, password, limit).await?;
        }

        Ok(SmtpClient {
            conn,
            server_name: server_name.to_string(),
            ext,
            command_timeout: settings.command_timeout,
            data_timeout: settings.data_timeout,
            needs_rset: false,
            usable: true,
            body_sent: false,
        })
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.conn.stream, Stream::Tls(_))
    }

    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    pub fn extensions(&self) -> &Extensions {
        &self.ext
    }

    /// False once the session has failed (I/O error, timeout, 421); open a new one.
    /// Whether the last `send` got as far as sending the body.
    pub fn body_sent(&self) -> bool {
        self.body_sent
    }

    pub fn is_usable(&self) -> bool {
        self.usable
    }

    /// Sends QUIT and closes; errors do not matter any more.
    pub async fn quit(mut self) {
        if self.usable {
            let _ = self
                .conn
                .command("QUIT\r\n", self.command_timeout, "QUIT")
                .await;
        }
        let _ = self.conn.stream.shutdown().await;
    }

    /// A recipient probe (an SMTP callout): MAIL FROM and RCPT TO, and the server's reply
    /// to the RCPT; no DATA, the envelope is reset before the next probe. `Err`: the
    /// session broke, or the server refused MAIL (the recipient is then not known either
    /// way).
    pub async fn probe_recipient(
        &mut self,
        sender: &str,
        recipient: &str,
    ) -> Result<Reply, ClientError> {
        if !self.usable {
            return Err(ClientError::Protocol("session already failed".into()));
        }
        if !is_safe_path(sender) || recipient.is_empty() || !is_safe_path(recipient) {
            return Err(ClientError::Protocol(
                "address not fit for an SMTP path".into(),
            ));
        }
        let result = self.probe(sender, recipient).await;
        if result.is_err() {
            self.usable = false;
        }
        result
    }

    async fn probe(&mut self, sender: &str, recipient: &str) -> Result<Reply, ClientError> {
        let limit = self.command_timeout;
        if self.needs_rset {
            self.rset().await?;
        }
        self.needs_rset = true;
        let mail = self
            .conn
            .command(&format!("MAIL FROM:<{sender}>\r\n"), limit, "MAIL FROM")
            .await?;
        if !mail.is_positive() {
            return Err(ClientError::Protocol(format!("MAIL refused: {mail}")));
        }
        self.conn
            .command(&format!("RCPT TO:<{recipient}>\r\n"), limit, "RCPT TO")
            .await
    }

    /// Runs one mail transaction. `Ok` carries one outcome per recipient, in order; `Err`
    /// means the session broke mid-transaction and no recipient is known delivered.
    pub async fn send(
        &mut self,
        msg: &OutgoingMessage<'_>,
    ) -> Result<Vec<RecipientOutcome>, ClientError> {
        if !self.usable {
            return Err(ClientError::Protocol("session already failed".into()));
        }
        self.body_sent = false;
        let result = self.transaction(msg).await;
        if result.is_err() {
            self.usable = false;
        }
        result
    }

    async fn transaction(
        &mut self,
        msg: &OutgoingMessage<'_>,
    ) -> Result<Vec<RecipientOutcome>, ClientError> {
        let limit = self.command_timeout;
        let fail_all =
            |reply: Reply| vec![RecipientOutcome::from_reply(reply); msg.recipients.len()];

        if !is_safe_path(msg.sender) {
            return Ok(fail_all(Reply::new(550, "5.1.7", "invalid sender address")));
        }
        if msg.smtputf8 && !self.ext.smtputf8 {
            return Ok(fail_all(Reply::new(
                550,
                "5.6.7",
                format!(
                    "{} does not support SMTPUTF8, required by this message",
                    self.server_name
                ),
            )));
        }
        if let Some(max) = self.ext.size
            && max > 0
            && msg.data.len() > max
        {
            return Ok(fail_all(Reply::new(
                552,
                "5.3.4",
                format!(
                    "message size {} exceeds the limit of {} at {}",
                    msg.data.len(),
                    max,
                    self.server_name
                ),
            )));
        }

        // None = recipient still pending (RCPT accepted or not yet sent).
        let mut outcomes: Vec<Option<RecipientOutcome>> = Vec::with_capacity(msg.recipients.len());
        let mut batch = self.mail_from(msg);
        let mut sent = Vec::new();
        for (i, rcpt) in msg.recipients.iter().enumerate() {
            match self.rcpt_to(rcpt) {
                Some(line) => {
                    batch.push_str(&line);
                    sent.push(i);
                    outcomes.push(None);
                }
                None => outcomes.push(Some(RecipientOutcome::PermFailed(Reply::new(
                    550,
                    "5.1.3",
                    "invalid recipient address or DSN parameters",
                )))),
            }
        }
        if sent.is_empty() {
            return Ok(finish(outcomes));
        }

        if self.needs_rset {
            self.rset().await?;
        }
        self.needs_rset = true;

        let pipelining = self.ext.pipelining;
        if pipelining {
            batch.push_str("DATA\r\n");
            self.conn
                .write(batch.as_bytes(), limit, "MAIL FROM")
                .await?;
        } else {
            let mail_line = batch.split_inclusive("\r\n").next().unwrap_or_default();
            self.conn
                .write(mail_line.as_bytes(), limit, "MAIL FROM")
                .await?;
        }

        let mail = self.conn.read_reply(limit, "MAIL FROM").await?;
        self.note_closing(&mail);
        if !mail.is_positive() {
            let outcome = RecipientOutcome::from_reply(mail);
            for &i in &sent {
                outcomes[i] = Some(outcome.clone());
            }
            if pipelining && self.usable {
                self.drain_pipelined(sent.len()).await;
            }
            return Ok(finish(outcomes));
        }

        let mut rcpt_lines = batch.split_inclusive("\r\n").skip(1);
        let mut accepted = 0;
        for &i in &sent {
            if !pipelining {
                let line = rcpt_lines.next().unwrap_or_default();
                self.conn.write(line.as_bytes(), limit, "RCPT TO").await?;
            }
            let reply = self.conn.read_reply(limit, "RCPT TO").await?;
            self.note_closing(&reply);
            if !self.usable {
                // The server is closing: nothing more will be answered.
                fill_pending(&mut outcomes, &reply);
                return Ok(finish(outcomes));
            }
            if reply.is_positive() {
                accepted += 1;
            } else {
                outcomes[i] = Some(RecipientOutcome::from_reply(reply));
            }
        }

        let data = if pipelining {
            Some(self.conn.read_reply(limit, "DATA").await?)
        } else if accepted > 0 {
            Some(self.conn.command("DATA\r\n", limit, "DATA").await?)
        } else {
            None
        };
        let data = match data {
            Some(reply) if reply.code == 354 && accepted == 0 => {
                // A server that said 354 with no recipients needs an end of data.
                self.conn.write(b".\r\n", limit, "DATA").await?;
                let _ = self
                    .conn
                    .read_reply(self.data_timeout, "end of data")
                    .await?;
                return Ok(finish(outcomes));
            }
            Some(reply) if reply.code == 354 => reply,
            Some(reply) => {
                self.note_closing(&reply);
                fill_pending(&mut outcomes, &reply);
                return Ok(finish(outcomes));
            }
            None => return Ok(finish(outcomes)),
        };
        tracing::trace!(server = %self.server_name, %data, "sending message body");

        self.body_sent = true;
        self.write_body(msg.data).await?;
        let last = self
            .conn
            .read_reply(self.data_timeout, "end of data")
            .await?;
        self.note_closing(&last);
        self.needs_rset = false;
        fill_pending(&mut outcomes, &last);
        Ok(finish(outcomes))
    }

    fn mail_from(&self, msg: &OutgoingMessage<'_>) -> String {
        let mut line = format!("MAIL FROM:<{}>", msg.sender);
        if self.ext.size.is_some() {
            line.push_str(&format!(" SIZE={}", msg.data.len()));
        }
        // Without 8BITMIME the message goes as is: nearly every server takes 8-bit data,
        // and downgrading to 7 bit (RFC 6152 §3) would break DKIM signatures.
        if (msg.eight_bit || msg.smtputf8) && self.ext.eight_bit_mime {
            line.push_str(" BODY=8BITMIME");
        }
        if msg.smtputf8 {
            line.push_str(" SMTPUTF8");
        }
        if self.ext.dsn {
            match msg.ret {
                Some(DsnRet::Full) => line.push_str(" RET=FULL"),
                Some(DsnRet::Headers) => line.push_str(" RET=HDRS"),
                None => {}
            }
            if let Some(envid) = msg.envid {
                line.push_str(" ENVID=");
                line.push_str(&xtext(envid));
            }
        }
        line.push_str("\r\n");
        line
    }

    /// The RCPT command, or None when the address or parameters cannot be sent safely.
    fn rcpt_to(&self, rcpt: &OutgoingRecipient) -> Option<String> {
        if rcpt.address.is_empty() || !is_safe_path(&rcpt.address) {
            return None;
        }
        let mut line = format!("RCPT TO:<{}>", rcpt.address);
        if self.ext.dsn {
            if let Some(notify) = &rcpt.notify {
                if notify.is_empty()
                    || !notify
                        .iter()
                        .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphabetic()))
                {
                    return None;
                }
                line.push_str(" NOTIFY=");
                line.push_str(&notify.join(",").to_ascii_uppercase());
            }
            if let Some(orcpt) = &rcpt.orcpt {
                let (kind, addr) = match orcpt.split_once(';') {
                    Some((kind, addr))
                        if !kind.is_empty()
                            && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
                    {
                        (kind, addr)
                    }
                    _ => ("rfc822", orcpt.as_str()),
                };
                line.push_str(&format!(" ORCPT={kind};{}", xtext(addr)));
            }
        }
        line.push_str("\r\n");
        Some(line)
    }

    async fn rset(&mut self) -> Result<(), ClientError> {
        let reply = self
            .conn
            .command("RSET\r\n", self.command_timeout, "RSET")
            .await?;
        if !reply.is_positive() {
            return Err(ClientError::Protocol(format!("RSET refused: {reply}")));
        }
        self.needs_rset = false;
        Ok(())
    }

    /// After a refused MAIL in a pipelined batch, the RCPT and DATA replies still
    /// arrive: read them to stay in step. The outcomes are already known, so an error
    /// here only ends the session.
    async fn drain_pipelined(&mut self, rcpts: usize) {
        let limit = self.command_timeout;
        for _ in 0..rcpts {
            match self.conn.read_reply(limit, "RCPT TO").await {
                Ok(reply) if reply.code != 421 => {}
                _ => {
                    self.usable = false;
                    return;
                }
            }
        }
        let ok = match self.conn.read_reply(limit, "DATA").await {
            // A server that says 354 without a transaction still needs an end of data.
            Ok(reply) if reply.code == 354 => {
                self.conn.write(b".\r\n", limit, "DATA").await.is_ok()
                    && self
                        .conn
                        .read_reply(self.data_timeout, "end of data")
                        .await
                        .is_ok()
            }
            Ok(reply) => reply.code != 421,
            Err(_) => false,
        };
        self.usable &= ok;
    }

    /// A 421 means the server is closing the session (RFC 5321 §3.8).
    fn note_closing(&mut self, reply: &Reply) {
        if reply.code == 421 {
            self.usable = false;
        }
    }

    /// Writes the body dot-stuffed (RFC 5321 §4.5.2) in chunks, then the final dot.
    async fn write_body(&mut self, data: &[u8]) -> Result<(), ClientError> {
        let limit = self.command_timeout;
        let mut buf = Vec::with_capacity(BODY_CHUNK * 2);
        let mut line_start = true;
        let mut at = 0;
        while at < data.len() {
            if line_start && data[at] == b'.' {
                buf.push(b'.');
            }
            let line_end = data[at..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(data.len(), |p| at + p + 1);
            let end = line_end.min(at + BODY_CHUNK);
            buf.extend_from_slice(&data[at..end]);
            line_start = data[end - 1] == b'\n';
            at = end;
            if buf.len() >= BODY_CHUNK {
                self.conn.write(&buf, limit, "DATA").await?;
                buf.clear();
            }
        }
        if !data.is_empty() && !data.ends_with(b"\r\n") {
            buf.extend_from_slice(b"\r\n");
        }
        buf.extend_from_slice(b".\r\n");
        self.conn.write(&buf, limit, "DATA").await
    }
}

fn fill_pending(outcomes: &mut [Option<RecipientOutcome>], reply: &Reply) {
    for slot in outcomes.iter_mut().filter(|o| o.is_none()) {
        *slot = Some(RecipientOutcome::from_reply(reply.clone()));
    }
}

/// Recipients still pending when a transaction ends were accepted by RCPT but never
/// reached DATA (no transaction happened), so they are retried.
fn finish(outcomes: Vec<Option<RecipientOutcome>>) -> Vec<RecipientOutcome> {
    outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| {
                RecipientOutcome::TempFailed(Reply::new(
                    451,
                    "4.5.0",
                    "transaction aborted before DATA",
                ))
            })
        })
        .collect()
}

async fn ehlo(
    conn: &mut Conn,
    helo_name: &str,
    limit: Duration,
) -> Result<Extensions, ClientError> {
    conn.write(format!("EHLO {helo_name}\r\n").as_bytes(), limit, "EHLO")
        .await?;
    let raw = conn.read_raw(limit, "EHLO").await?;
    let reply = parse_reply(&raw)?;
    if reply.code == 250 {
        let parsed = EhloResponse::parse(&mut raw.iter())
            .map_err(|e| ClientError::Protocol(format!("unparseable EHLO reply: {e:?}")))?;
        return Ok(Extensions::from_ehlo(&parsed));
    }
    if !reply.is_permanent() {
        return Err(ClientError::Rejected {
            stage: "EHLO",
            reply,
        });
    }
    // An RFC 821 server: no extensions.
    let reply = conn
        .command(&format!("HELO {helo_name}\r\n"), limit, "HELO")
        .await?;
    if !reply.is_positive() {
        return Err(ClientError::Rejected {
            stage: "HELO",
            reply,
        });
    }
    Ok(Extensions::default())
}

async fn authenticate(
    conn: &mut Conn,
    ext: &Extensions,
    user: &str,
    password: &str,
    limit: Duration,
) -> Result<(), ClientError> {
    let reply = if ext.auth_plain {
        let token = b64(format!("\0{user}\0{password}").as_bytes());
        let reply = conn
            .command(&format!("AUTH PLAIN {token}\r\n"), limit, "AUTH")
            .await?;
        if reply.code == 334 {
            conn.command(&format!("{token}\r\n"), limit, "AUTH").await?
        } else {
            reply
        }
    } else if ext.auth_login {
        let reply = conn.command("AUTH LOGIN\r\n", limit, "AUTH").await?;
        if reply.code != 334 {
            return Err(ClientError::Auth(reply));
        }
        let reply = conn
            .command(&format!("{}\r\n", b64(user.as_bytes())), limit, "AUTH")
            .await?;
        if reply.code != 334 {
            return Err(ClientError::Auth(reply));
        }
        conn.command(&format!("{}\r\n", b64(password.as_bytes())), limit, "AUTH")
            .await?
    } else {
        return Err(ClientError::AuthUnavailable(
            "server offers neither AUTH PLAIN nor AUTH LOGIN".into(),
        ));
    };
    if reply.code == 235 {
        Ok(())
    } else {
        Err(ClientError::Auth(reply))
    }
}

fn b64(data: &[u8]) -> String {
    let encoded = Base64Encoder::new().encode(data).unwrap_or_default();
    String::from_utf8(encoded).unwrap_or_default()
}

/// A path we can put between `<` and `>` without changing the command.
fn is_safe_path(address: &str) -> bool {
    !address
        .bytes()
        .any(|b| b < 0x20 || b == 0x7f || b == b'<' || b == b'>' || b == b' ')
}

/// xtext (RFC 3461 §4): `+`, `=`, controls, space and non-ASCII become `+XX`.
fn xtext(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xtext_and_paths() {
        assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
        assert!(is_safe_path("user@example.org"));
        assert!(is_safe_path(""));
        assert!(!is_safe_path("a>\r\nRCPT TO:<b"));
    }
}
