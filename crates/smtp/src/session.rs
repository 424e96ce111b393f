//! The sans-IO SMTP server session (RFC 5321 with PIPELINING, SIZE, 8BITMIME, SMTPUTF8,
//! ENHANCEDSTATUSCODES, STARTTLS, AUTH, CHUNKING and DSN). Bytes go in with
//! [`Session::feed`]; [`Session::poll_event`] yields events for the caller to act on; replies
//! collect in an output buffer the caller writes when the session wants input, which is
//! what makes pipelining work. Decisions (accept a sender, a recipient, a message) come
//! back through [`Session::decide`]. No sockets, no clocks, no policy.

use crate::auth::{self, AuthStep};
use crate::data::{DataProgress, DataReader};
use crate::reply::Reply;
use smtp_proto::{Error as ProtoError, Request};

/// Every bound of a session, each a named setting (Postfix style).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest command line accepted, CRLF included (RFC 5321 §4.5.3.1.4 says 512 at least).
    pub max_line_length: usize,
    /// Recipients per message (Postfix `smtpd_recipient_limit`).
    pub max_recipients: usize,
    /// Message size in bytes, enforced while the body streams in.
    pub max_message_size: usize,
    /// Protocol errors before the session is dropped (Postfix `smtpd_hard_error_limit`).
    pub max_errors: usize,
    /// Failed AUTH attempts before the session is dropped.
    pub max_auth_failures: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line_length: 2048,
            max_recipients: 1000,
            max_message_size: 25 * 1024 * 1024,
            max_errors: 20,
            max_auth_failures: 3,
        }
    }
}

/// What a session offers; set by the listener for its port.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub hostname: String,
    pub limits: Limits,
    /// A TLS certificate is available for STARTTLS.
    pub starttls: bool,
    /// The connection is already encrypted (implicit TLS, port 465).
    pub implicit_tls: bool,
    /// AUTH is offered (after TLS only).
    pub auth: bool,
    /// MAIL is refused until the client authenticates (submission ports).
    pub auth_required: bool,
}

/// The DSN `RET` parameter (RFC 3461 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Ret {
    Full,
    Headers,
}

/// MAIL FROM and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailFrom {
    /// Empty for the null reverse-path.
    pub address: String,
    /// The SIZE the client declared, 0 when none.
    pub size: usize,
    pub eight_bit: bool,
    pub smtputf8: bool,
    pub ret: Option<Ret>,
    pub envid: Option<String>,
}

/// RCPT TO and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptTo {
    pub address: String,
    /// NOTIFY values in upper case (`SUCCESS`, `FAILURE`, `DELAY`, `NEVER`).
    pub notify: Option<Vec<String>>,
    pub orcpt: Option<String>,
}

/// What the caller must act on. Events marked "decide" suspend the session until
/// [`Session::decide`] is called with the reply to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// EHLO/HELO was accepted. Like RSET it ends any transaction: forget the envelope.
    Helo { name: String, extended: bool },
    /// Decide: verify these credentials; reply 235 to accept, 535 to refuse.
    Auth { username: String, password: String },
    /// Decide: accept or refuse the sender.
    Mail(MailFrom),
    /// Decide: accept or refuse one recipient.
    Rcpt(RcptTo),
    /// Decide: the client wants to send the body (DATA or the first BDAT chunk); reply
    /// 354 for DATA (any 2xx/3xx for BDAT) to go on, or an error to refuse.
    DataStart,
    /// Body bytes are waiting in [`Session::body`]; write them out and clear it.
    Body,
    /// Decide: the body is complete and [`Session::body`] holds its tail. Reply 250
    /// only after the message is durably stored.
    DataEnd { size: usize },
    /// The body was refused by the session itself (size, bare line ending); discard
    /// what was stored. The session has already queued its reply.
    DataAborted,
    /// The transaction was reset (RSET); forget the envelope.
    Reset,
    /// Write the output, then start TLS, then call [`Session::tls_started`].
    StartTls,
    /// Write the output and close the connection.
    Close,
}

#[derive(Debug)]
enum Input {
    Command,
    Data(DataReader),
    Bdat {
        remaining: usize,
        last: bool,
        /// The chunk is read and thrown away (no transaction, or refused).
        discard: bool,
    },
    AuthResponse(AuthStep),
}

/// One step of [`Session::poll_event`]'s loop.
enum Step {
    Event(Event),
    /// Progress was made without an event; look again.
    Again,
    /// Nothing to do until more input or a decision arrives.
    Wait,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    None,
    Auth,
    Mail,
    Rcpt,
    DataStart { bdat: bool },
    DataEnd,
}

/// One SMTP server session. See the module documentation.
pub struct Session {
    cfg: SessionConfig,
    input: Vec<u8>,
    output: Vec<u8>,
    body: Vec<u8>,
    mode: Input,
    pending: Pending,
    pending_auth_user: Option<String>,
    pending_mail: Option<MailFrom>,
    helo: Option<String>,
    tls: bool,
    authenticated: Option<String>,
    mail: Option<MailFrom>,
    recipients: usize,
    /// BDAT chunks of this transaction started (the first asks for DataStart).
    bdat_started: bool,
    /// Body bytes received in the BDAT chunks of this transaction.
    bdat_size: usize,
    errors: usize,
    auth_failures: usize,
    closing: bool,
    /// The rest of an over-long line is being thrown away.
    discarding_line: bool,
}

impl Session {
    /// A new session; the greeting is already in the output buffer.
    pub fn new(cfg: SessionConfig) -> Self {
        let mut s = Session {
            tls: cfg.implicit_tls,
            cfg,
            input: Vec::new(),
            output: Vec::new(),
            body: Vec::new(),
            mode: Input::Command,
            pending: Pending::None,
            pending_auth_user: None,
            pending_mail: None,
            helo: None,
            authenticated: None,
            mail: None,
            recipients: 0,
            bdat_started: false,
            bdat_size: 0,
            errors: 0,
            auth_failures: 0,
            closing: false,
            discarding_line: false,
        };
        let greeting = format!("{} ESMTP Portcullis", s.cfg.hostname);
        s.reply(Reply::new(220, "", greeting));
        s
    }

    /// Append bytes read from the client.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// Replies waiting to be written; the caller writes and clears them.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }

    /// Body bytes waiting to be stored; the caller writes and clears them.
    pub fn body(&mut self) -> &mut Vec<u8> {
        &mut self.body
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    pub fn authenticated(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    /// A body is being received (DATA, or BDAT chunks since the first), so a spool
    /// file may be open.
    pub fn in_body(&self) -> bool {
        matches!(self.mode, Input::Data(_) | Input::Bdat { .. }) || self.bdat_started
    }

    /// A transaction is open: MAIL was accepted (or is being decided), or a body is coming.
    pub fn in_transaction(&self) -> bool {
        self.mail.is_some() || self.pending_mail.is_some() || self.in_body()
    }

    pub fn helo(&self) -> Option<&str> {
        self.helo.as_deref()
    }

    /// The caller finished the TLS handshake asked for by [`Event::StartTls`].
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.helo = None;
    }

    /// Answer the event that asked for a decision.
    pub fn decide(&mut self, reply: Reply) {
        let pending = std::mem::replace(&mut self.pending, Pending::None);
        let ok = reply.is_positive();
        match pending {
            Pending::None => return,
            Pending::Auth => {
                let user = self.pending_auth_user.take();
                if reply.code == 235 {
                    self.authenticated = user;
                } else {
                    self.auth_failures += 1;
                    if self.auth_failures >= self.cfg.limits.max_auth_failures {
                        self.closing = true;
                    }
                }
            }
            Pending::Mail => {
                let mail = self.pending_mail.take();
                if ok {
                    self.mail = mail;
                    self.recipients = 0;
                }
            }
            Pending::Rcpt => {
                if ok {
                    self.recipients += 1;
                } else {
                    // Refused recipients count as errors (as in Postfix), so that a
                    // client cannot probe for addresses without end.
                    self.reply(reply);
                    self.count_error();
                    return;
                }
            }
            Pending::DataStart { bdat } => {
                if bdat {
                    // The chunk follows the command whatever the answer; refusal discards it.
                    if let Input::Bdat { discard, .. } = &mut self.mode {
                        *discard = !ok;
                    }
                    if ok {
                        self.bdat_started = true;
                        // The chunk's own reply comes when it is read.
                        return;
                    }
                } else if reply.code == 354 {
                    self.mode = Input::Data(DataReader::new(self.cfg.limits.max_message_size));
                }
            }
            Pending::DataEnd => self.end_transaction(),
        }
        self.reply(reply);
    }

    /// The next thing for the caller to do. `None` means: write the output, read more
    /// input (or wait for a pending decision).
    pub fn poll_event(&mut self) -> Option<Event> {
        // A loop, not recursion: a client may pipeline thousands of commands that each
        // produce only a reply, and none of them may grow the stack.
        loop {
            match self.step() {
                Step::Event(event) => return Some(event),
                Step::Again => {}
                Step::Wait => return None,
            }
        }
    }

    fn step(&mut self) -> Step {
        if self.pending != Pending::None {
            return Step::Wait;
        }
        if self.closing {
            self.closing = false;
            self.input.clear();
            return Step::Event(Event::Close);
        }
        match &mut self.mode {
            Input::Data(_) => self.next_data(),
            Input::Bdat { .. } => self.next_bdat(),
            Input::AuthResponse(_) => self.next_auth_line(),
            Input::Command => self.next_command(),
        }
    }

    fn reply(&mut self, reply: Reply) {
        reply.write_to(&mut self.output);
    }

    fn error(&mut self, reply: Reply) {
        self.reply(reply);
        self.count_error();
    }

    fn count_error(&mut self) {
        self.errors += 1;
        if self.errors >= self.cfg.limits.max_errors {
            self.reply(Reply::new(
                421,
                "4.7.0",
                "Too many errors, closing connection",
            ));
            self.closing = true;
        }
    }

    fn end_transaction(&mut self) {
        self.mail = None;
        self.pending_mail = None;
        self.recipients = 0;
        self.bdat_started = false;
        self.bdat_size = 0;
        self.mode = Input::Command;
    }

    /// Take one line (up to and including LF) off the input, or None when incomplete.
    /// An over-long line is reported as `Err` after dropping it.
    fn take_line(&mut self) -> Option<Result<Vec<u8>, ()>> {
        if self.discarding_line {
            let pos = memchr::memchr(b'\n', &self.input);
            match pos {
                Some(pos) => {
                    self.input.drain(..=pos);
                    self.discarding_line = false;
                }
                None => {
                    self.input.clear();
                    return None;
                }
            }
        }
        let max = self.cfg.limits.max_line_length;
        match memchr::memchr(b'\n', &self.input) {
            Some(pos) if pos < max => Some(Ok(self.input.drain(..=pos).collect())),
            Some(pos) => {
                self.input.drain(..=pos);
                Some(Err(()))
            }
            None if self.input.len() >= max => {
                // Keep discarding until the line ends, so its tail is never read as a
                // command of its own.
                self.input.clear();
                self.discarding_line = true;
                self.mode = Input::Command;
                Some(Err(()))
            }
            None => None,
        }
    }

    fn next_command(&mut self) -> Step {
        let line = match self.take_line() {
            None => return Step::Wait,
            Some(Ok(line)) => line,
            Some(Err(())) => {
                self.error(Reply::new(500, "5.5.6", "Line too long"));
                return Step::Again;
            }
        };
        let request = match Request::parse(&mut line.iter()) {
            Ok(r) => r.into_owned_request(),
            Err(e) => {
                let reply = parse_error_reply(&e, &line);
                self.error(reply);
                return Step::Again;
            }
        };
        match self.command(request) {
            Some(event) => Step::Event(event),
            None => Step::Again,
        }
    }

    fn command(&mut self, request: OwnedRequest) -> Option<Event> {
        match request {
            OwnedRequest::Ehlo(name) | OwnedRequest::Helo(name) if name.is_empty() => {
                self.error(Reply::new(501, "5.5.4", "Host name required"));
                None
            }
            OwnedRequest::Ehlo(name) => {
                self.end_transaction();
                self.helo = Some(name.clone());
                let ehlo = self.ehlo_reply();
                self.reply(ehlo);
                Some(Event::Helo {
                    name,
                    extended: true,
                })
            }
            OwnedRequest::Helo(name) => {
                self.end_transaction();
                self.helo = Some(name.clone());
                let text = format!("{} Hello {}", self.cfg.hostname, name);
                self.reply(Reply::new(250, "", text));
                Some(Event::Helo {
                    name,
                    extended: false,
                })
            }
            OwnedRequest::StartTls => {
                if self.tls {
                    self.error(Reply::new(503, "5.5.1", "TLS already active"));
                    None
                } else if !self.cfg.starttls {
                    self.error(Reply::new(502, "5.5.1", "STARTTLS not available"));
                    None
                } else {
                    self.reply(Reply::new(220, "2.0.0", "Ready to start TLS"));
                    self.end_transaction();
                    // Anything pipelined after STARTTLS was sent in plain text and must not
                    // be read as if it came over TLS (CVE-2011-0411).
                    self.input.clear();
                    Some(Event::StartTls)
                }
            }
            OwnedRequest::Auth { mechanism, initial } => self.auth_command(mechanism, initial),
            OwnedRequest::Mail(mail) => self.mail_command(mail),
            OwnedRequest::Rcpt(rcpt) => {
                if self.mail.is_none() {
                    self.error(Reply::new(503, "5.5.1", "Error: need MAIL command"));
                    None
                } else if self.bdat_started {
                    // RFC 3030: the recipients are fixed before the first chunk.
                    self.error(Reply::new(503, "5.5.1", "Error: RCPT after BDAT"));
                    None
                } else if self.recipients >= self.cfg.limits.max_recipients {
                    self.reply(Reply::new(452, "4.5.3", "Error: too many recipients"));
                    None
                } else {
                    self.pending = Pending::Rcpt;
                    Some(Event::Rcpt(rcpt))
                }
            }
            OwnedRequest::Data => {
                if self.mail.is_none() {
                    self.error(Reply::new(503, "5.5.1", "Error: need MAIL command"));
                    None
                } else if self.recipients == 0 {
                    self.error(Reply::new(554, "5.5.1", "Error: no valid recipients"));
                    None
                } else if self.bdat_started {
                    self.error(Reply::new(503, "5.5.1", "Error: DATA after BDAT"));
                    None
                } else {
                    self.pending = Pending::DataStart { bdat: false };
                    Some(Event::DataStart)
                }
            }
            OwnedRequest::Bdat { size, last } => self.bdat_command(size, last),
            OwnedRequest::Rset => {
                self.end_transaction();
                self.reply(Reply::new(250, "2.0.0", "Ok"));
                Some(Event::Reset)
            }
            OwnedRequest::Noop => {
                self.reply(Reply::new(250, "2.0.0", "Ok"));
                None
            }
            OwnedRequest::Vrfy => {
                self.reply(Reply::new(
                    252,
                    "2.5.0",
                    "Cannot VRFY user, but will accept message",
                ));
                None
            }
            OwnedRequest::Help => {
                self.reply(Reply::new(214, "2.0.0", "See RFC 5321"));
                None
            }
            OwnedRequest::Quit => {
                self.reply(Reply::new(221, "2.0.0", "Bye"));
                self.closing = true;
                None
            }
            OwnedRequest::Unsupported(name) => {
                self.error(Reply::new(
                    502,
                    "5.5.1",
                    format!("Error: command {name} not implemented"),
                ));
                None
            }
        }
    }

    fn ehlo_reply(&self) -> Reply {
        let mut lines = vec![
            self.cfg.hostname.clone(),
            "PIPELINING".into(),
            format!("SIZE {}", self.cfg.limits.max_message_size),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
        ];
        if self.cfg.starttls && !self.tls {
            lines.push("STARTTLS".into());
        }
        if self.cfg.auth && self.tls && self.authenticated.is_none() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        lines.push("CHUNKING".into());
        lines.push("DSN".into());
        Reply::multiline(250, lines)
    }

    fn mail_command(&mut self, mail: MailFrom) -> Option<Event> {
        if self.helo.is_none() {
            self.error(Reply::new(503, "5.5.1", "Error: send HELO/EHLO first"));
        } else if self.mail.is_some() {
            self.error(Reply::new(503, "5.5.1", "Error: nested MAIL command"));
        } else if self.cfg.auth_required && self.authenticated.is_none() {
            let reply = if self.tls {
                Reply::new(530, "5.7.0", "Authentication required")
            } else {
                Reply::new(530, "5.7.0", "Must issue a STARTTLS command first")
            };
            self.error(reply);
        } else if mail.size > self.cfg.limits.max_message_size {
            self.reply(too_big());
        } else {
            self.pending = Pending::Mail;
            self.pending_mail = Some(mail.clone());
            return Some(Event::Mail(mail));
        }
        None
    }

    fn bdat_command(&mut self, size: usize, last: bool) -> Option<Event> {
        let ready = self.mail.is_some() && self.recipients > 0;
        self.mode = Input::Bdat {
            remaining: size,
            last,
            discard: !ready,
        };
        if ready && !self.bdat_started {
            self.pending = Pending::DataStart { bdat: true };
            return Some(Event::DataStart);
        }
        None
    }

    fn auth_command(&mut self, mechanism: u64, initial: String) -> Option<Event> {
        if !self.cfg.auth {
            self.error(Reply::new(502, "5.5.1", "Error: AUTH not available"));
        } else if !self.tls {
            self.error(Reply::new(
                538,
                "5.7.11",
                "Encryption required for requested authentication mechanism",
            ));
        } else if self.authenticated.is_some() {
            self.error(Reply::new(503, "5.5.1", "Error: already authenticated"));
        } else if self.mail.is_some() {
            self.error(Reply::new(
                503,
                "5.5.1",
                "Error: MAIL transaction in progress",
            ));
        } else {
            match auth::start(mechanism, &initial) {
                Ok(AuthStep::Done { username, password }) => {
                    return Some(self.ask_auth(username, password));
                }
                Ok(step) => {
                    self.reply(step.challenge());
                    self.mode = Input::AuthResponse(step);
                }
                Err(reply) => self.error(reply),
            }
        }
        None
    }

    fn ask_auth(&mut self, username: String, password: String) -> Event {
        self.pending = Pending::Auth;
        self.pending_auth_user = Some(username.clone());
        Event::Auth { username, password }
    }

    fn next_auth_line(&mut self) -> Step {
        let line = match self.take_line() {
            None => return Step::Wait,
            Some(Ok(line)) => line,
            Some(Err(())) => {
                self.mode = Input::Command;
                self.error(Reply::new(500, "5.5.6", "Line too long"));
                return Step::Again;
            }
        };
        let Input::AuthResponse(step) = std::mem::replace(&mut self.mode, Input::Command) else {
            return Step::Wait;
        };
        match step.respond(&line) {
            Ok(AuthStep::Done { username, password }) => {
                Step::Event(self.ask_auth(username, password))
            }
            Ok(step) => {
                self.reply(step.challenge());
                self.mode = Input::AuthResponse(step);
                Step::Again
            }
            Err(reply) => {
                self.error(reply);
                Step::Again
            }
        }
    }

    fn next_data(&mut self) -> Step {
        let Input::Data(reader) = &mut self.mode else {
            return Step::Wait;
        };
        let progress = reader.feed(&self.input, &mut self.body);
        match progress {
            DataProgress::NeedMore => {
                self.input.clear();
                self.body_or_wait()
            }
            DataProgress::End { consumed } => {
                self.input.drain(..consumed);
                let size = reader.size();
                if reader.too_big() {
                    self.end_transaction();
                    self.reply(too_big());
                    return Step::Event(Event::DataAborted);
                }
                self.pending = Pending::DataEnd;
                Step::Event(Event::DataEnd { size })
            }
            DataProgress::BareLineEnding { lf, .. } => {
                // As Postfix with smtpd_forbid_bare_newline: refuse and hang up, so nothing
                // after the bare line ending can be taken as a command or a second message.
                let what = if lf { "<LF>" } else { "<CR>" };
                self.end_transaction();
                self.reply(Reply::new(
                    521,
                    "5.5.2",
                    format!("Error: bare {what} received in message data"),
                ));
                self.closing = true;
                Step::Event(Event::DataAborted)
            }
        }
    }

    fn body_or_wait(&self) -> Step {
        if self.body.is_empty() {
            Step::Wait
        } else {
            Step::Event(Event::Body)
        }
    }

    fn next_bdat(&mut self) -> Step {
        let Input::Bdat {
            remaining,
            last,
            discard,
        } = &mut self.mode
        else {
            return Step::Wait;
        };
        let take = (*remaining).min(self.input.len());
        if !*discard {
            let room = self
                .cfg
                .limits
                .max_message_size
                .saturating_sub(self.bdat_size);
            self.body.extend_from_slice(&self.input[..take.min(room)]);
            self.bdat_size += take;
        }
        *remaining -= take;
        self.input.drain(..take);
        if *remaining > 0 {
            return self.body_or_wait();
        }
        let (last, discard) = (*last, *discard);
        self.mode = Input::Command;
        if discard {
            if self.mail.is_none() {
                self.error(Reply::new(503, "5.5.1", "Error: need MAIL command"));
            } else if self.recipients == 0 {
                self.error(Reply::new(554, "5.5.1", "Error: no valid recipients"));
            } else {
                // DataStart was refused and its reply already sent.
                self.end_transaction();
            }
            return Step::Again;
        }
        let size = self.bdat_size;
        if size > self.cfg.limits.max_message_size {
            self.end_transaction();
            self.reply(too_big());
            return Step::Event(Event::DataAborted);
        }
        if last {
            self.pending = Pending::DataEnd;
            return Step::Event(Event::DataEnd { size });
        }
        self.reply(Reply::new(250, "2.0.0", format!("{size} octets received")));
        if self.body.is_empty() {
            Step::Again
        } else {
            Step::Event(Event::Body)
        }
    }
}

/// Commands after parsing, owning their strings and reduced to what the session uses.
#[derive(Debug)]
enum OwnedRequest {
    Ehlo(String),
    Helo(String),
    StartTls,
    Auth { mechanism: u64, initial: String },
    Mail(MailFrom),
    Rcpt(RcptTo),
    Data,
    Bdat { size: usize, last: bool },
    Rset,
    Noop,
    Vrfy,
    Help,
    Quit,
    Unsupported(&'static str),
}

trait IntoOwnedRequest {
    fn into_owned_request(self) -> OwnedRequest;
}

impl IntoOwnedRequest for Request<std::borrow::Cow<'_, str>> {
    fn into_owned_request(self) -> OwnedRequest {
        match self {
            Request::Ehlo { host } => OwnedRequest::Ehlo(host.into_owned()),
            Request::Helo { host } => OwnedRequest::Helo(host.into_owned()),
            Request::StartTls => OwnedRequest::StartTls,
            Request::Auth {
                mechanism,
                initial_response,
            } => OwnedRequest::Auth {
                mechanism,
                initial: initial_response.into_owned(),
            },
            Request::Mail { from } => OwnedRequest::Mail(MailFrom {
                address: from.address.into_owned(),
                size: from.size,
                eight_bit: from.flags & smtp_proto::MAIL_BODY_8BITMIME != 0
                    || from.flags & smtp_proto::MAIL_BODY_BINARYMIME != 0,
                smtputf8: from.flags & smtp_proto::MAIL_SMTPUTF8 != 0,
                ret: if from.flags & smtp_proto::MAIL_RET_FULL != 0 {
                    Some(Ret::Full)
                } else if from.flags & smtp_proto::MAIL_RET_HDRS != 0 {
                    Some(Ret::Headers)
                } else {
                    None
                },
                envid: from.env_id.map(|e| e.into_owned()),
            }),
            Request::Rcpt { to } => {
                let mut notify = Vec::new();
                for (flag, name) in [
                    (smtp_proto::RCPT_NOTIFY_SUCCESS, "SUCCESS"),
                    (smtp_proto::RCPT_NOTIFY_FAILURE, "FAILURE"),
                    (smtp_proto::RCPT_NOTIFY_DELAY, "DELAY"),
                    (smtp_proto::RCPT_NOTIFY_NEVER, "NEVER"),
                ] {
                    if to.flags & flag != 0 {
                        notify.push(name.to_string());
                    }
                }
                OwnedRequest::Rcpt(RcptTo {
                    address: to.address.into_owned(),
                    notify: (!notify.is_empty()).then_some(notify),
                    orcpt: to.orcpt.map(|o| o.into_owned()),
                })
            }
            Request::Data => OwnedRequest::Data,
            Request::Bdat {
                chunk_size,
                is_last,
            } => OwnedRequest::Bdat {
                size: chunk_size,
                last: is_last,
            },
            Request::Rset => OwnedRequest::Rset,
            Request::Noop { .. } => OwnedRequest::Noop,
            Request::Vrfy { .. } => OwnedRequest::Vrfy,
            Request::Help { .. } => OwnedRequest::Help,
            Request::Quit => OwnedRequest::Quit,
            other => OwnedRequest::Unsupported(other.name()),
        }
    }
}

fn too_big() -> Reply {
    Reply::new(
        552,
        "5.3.4",
        "Message size exceeds fixed maximum message size",
    )
}

fn parse_error_reply(e: &ProtoError, line: &[u8]) -> Reply {
    match e {
        ProtoError::UnknownCommand => {
            let verb: String = line
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric())
                .take(16)
                .map(|&b| b as char)
                .collect();
            if verb.is_empty() {
                Reply::new(500, "5.5.2", "Error: bad syntax")
            } else {
                Reply::new(
                    502,
                    "5.5.2",
                    format!("Error: command not recognized: {verb}"),
                )
            }
        }
        ProtoError::InvalidSenderAddress => Reply::new(501, "5.1.7", "Bad sender address syntax"),
        ProtoError::InvalidRecipientAddress => {
            Reply::new(501, "5.1.3", "Bad recipient address syntax")
        }
        ProtoError::SyntaxError { syntax } => Reply::new(501, "5.5.4", format!("Syntax: {syntax}")),
        ProtoError::InvalidParameter { param } => {
            Reply::new(501, "5.5.4", format!("Invalid parameter {param}"))
        }
        ProtoError::UnsupportedParameter { param } => {
            let param: String = param.chars().take(32).collect();
            Reply::new(555, "5.5.4", format!("Unsupported parameter {param}"))
        }
        ProtoError::ResponseTooLong => Reply::new(500, "5.5.6", "Line too long"),
        ProtoError::NeedsMoreData { .. } | ProtoError::InvalidResponse { .. } => {
            Reply::new(500, "5.5.2", "Error: bad syntax")
        }
    }
}
