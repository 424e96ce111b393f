//! The SMTP listener's side of the message path: each session event becomes a call on a
//! [`Transaction`], with the session's HELO name, authenticated user and TLS state as a
//! plain [`Client`]. Nothing here decides anything; it counts connections and refusals
//! for the metrics.

use crate::metrics::{Stage, replied};
use crate::submission::{Client, Peer};
use crate::transaction::{Gateway, Transaction};
use portcullis_smtp::server::{ConnInfo, Handler};
use portcullis_smtp::{MailFrom, RcptTo, Reply, Session};
use std::sync::Arc;

/// One SMTP connection's handler.
pub struct SmtpHandler(Transaction);

impl SmtpHandler {
    pub fn new(gw: Arc<Gateway>, conn: ConnInfo) -> Self {
        tracing::debug!(client = %conn.peer, listener = conn.listener, "connect");
        crate::metrics::connection(conn.listener);
        SmtpHandler(Transaction::new(gw, Peer::new(conn.peer)))
    }
}

fn client(session: &Session) -> Client<'_> {
    Client {
        helo: session.helo().unwrap_or(""),
        auth_user: session.authenticated(),
        tls: session.is_tls(),
    }
}

/// `reply`, counted when it refuses.
fn counted(stage: Stage, reply: Reply) -> Reply {
    replied(stage, &reply);
    reply
}

impl Handler for SmtpHandler {
    async fn connect(&mut self) -> Option<Reply> {
        let reply = self.0.connect().await;
        if let Some(r) = &reply {
            replied(Stage::Connect, r);
        }
        reply
    }

    async fn auth(&mut self, _session: &Session, username: &str, password: &str) -> Reply {
        counted(Stage::Auth, self.0.auth(username, password).await)
    }

    async fn mail(&mut self, session: &Session, mail: &MailFrom) -> Reply {
        counted(Stage::Mail, self.0.mail(&client(session), mail).await)
    }

    async fn rcpt(&mut self, session: &Session, rcpt: &RcptTo) -> Reply {
        counted(Stage::Rcpt, self.0.rcpt(&client(session), rcpt).await)
    }

    async fn data_start(&mut self, _session: &Session) -> Reply {
        self.0.data_start()
    }

    async fn data_chunk(&mut self, bytes: &[u8]) {
        self.0.data_chunk(bytes)
    }

    async fn data_end(&mut self, session: &Session, size: usize) -> Reply {
        counted(Stage::Data, self.0.data_end(&client(session), size).await)
    }

    async fn data_aborted(&mut self) {
        self.0.data_aborted()
    }

    fn reset(&mut self) {
        self.0.reset()
    }
}
