//! The thin async shell around [`Session`]: accepts connections, enforces connection
//! limits and timeouts, upgrades to TLS, and hands each session event to a [`Handler`]
//! that the binary supplies (policy, spool). All protocol decisions stay in the session.

use crate::reply::Reply;
use crate::session::{Event, MailFrom, RcptTo, Session, SessionConfig};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The most read from a client at once.
const READ_BUFFER: usize = 64 * 1024;

/// Facts about a connection, fixed when it is accepted.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// The listener's name (`smtp`, `submission`, `submissions`), for logs.
    pub listener: &'static str,
}

/// What the binary does with session events. One handler per connection.
pub trait Handler: Send {
    /// A new connection, before the greeting: Some reply (4xx/5xx) turns it away.
    fn connect(&mut self) -> impl Future<Output = Option<Reply>> + Send {
        async { None }
    }
    fn helo(&mut self, _session: &Session, _name: &str) {}
    fn auth(
        &mut self,
        session: &Session,
        username: &str,
        password: &str,
    ) -> impl Future<Output = Reply> + Send;
    fn mail(&mut self, session: &Session, mail: &MailFrom) -> impl Future<Output = Reply> + Send;
    fn rcpt(&mut self, session: &Session, rcpt: &RcptTo) -> impl Future<Output = Reply> + Send;
    /// Open the spool file; 354 to go on.
    fn data_start(&mut self, session: &Session) -> impl Future<Output = Reply> + Send;
    /// Store body bytes. Errors are kept by the handler and reported by `data_end`.
    fn data_chunk(&mut self, bytes: &[u8]) -> impl Future<Output = ()> + Send;
    /// The body is complete: make it durable and reply 250, or say why not.
    fn data_end(&mut self, session: &Session, size: usize) -> impl Future<Output = Reply> + Send;
    /// Throw away a partly received body.
    fn data_aborted(&mut self) -> impl Future<Output = ()> + Send;
    /// Forget the current envelope (RSET, EHLO, STARTTLS, end of connection).
    fn reset(&mut self);
}

/// Timeouts of the shell (RFC 5321 §4.5.3.2 suggests 5 minutes for commands).
#[derive(Debug, Clone)]
pub struct Timeouts {
    pub command: Duration,
    pub data: Duration,
    pub tls_handshake: Duration,
    /// The longest a whole connection may last, however busy, so that a client dripping
    /// bytes just inside the other timeouts cannot hold a connection slot for ever.
    pub session: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            command: Duration::from_secs(300),
            data: Duration::from_secs(300),
            tls_handshake: Duration::from_secs(60),
            session: Duration::from_secs(3600),
        }
    }
}

/// Connection counts, in total and per client address.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_per_ip: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1000,
            max_per_ip: 50,
        }
    }
}

/// Counts live connections; a slot is released when its guard drops. It also carries the
/// shutdown: [`ConnectionCounter::close`] stops every listener sharing it, and each session
/// ends at its next point between transactions.
#[derive(Clone)]
pub struct ConnectionCounter {
    inner: Arc<Counts>,
}

struct Counts {
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
    /// True once the gateway is shutting down.
    closing: watch::Sender<bool>,
    /// Woken when the last connection ends.
    idle: Notify,
}

impl Default for ConnectionCounter {
    fn default() -> Self {
        ConnectionCounter {
            inner: Arc::new(Counts {
                open: Mutex::default(),
                closing: watch::Sender::new(false),
                idle: Notify::new(),
            }),
        }
    }
}

pub struct ConnectionSlot {
    counter: ConnectionCounter,
    ip: IpAddr,
}

impl ConnectionCounter {
    /// Take a slot, or None when a limit is reached.
    pub fn acquire(&self, ip: IpAddr, limits: &ConnectionLimits) -> Option<ConnectionSlot> {
        let ip = ip.to_canonical();
        let mut guard = self.inner.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per_ip) = &mut *guard;
        let count = per_ip.entry(ip).or_insert(0);
        if *total >= limits.max_connections || *count >= limits.max_per_ip {
            if *count == 0 {
                per_ip.remove(&ip);
            }
            return None;
        }
        *count += 1;
        *total += 1;
        Some(ConnectionSlot {
            counter: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner.open.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    /// Start the shutdown: the listeners close their sockets (new connections are refused),
    /// idle sessions get `421 4.3.2` at once, sessions in a transaction finish it first.
    pub fn close(&self) {
        self.inner.closing.send_replace(true);
    }

    /// Resolves when no connection is open.
    pub async fn drained(&self) {
        loop {
            let idle = self.inner.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            idle.await;
        }
    }

    fn closing(&self) -> watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }
}

/// Resolves once `closing` says the gateway shuts down (never if it cannot tell).
async fn shutting_down(closing: &mut watch::Receiver<bool>) {
    if closing.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut guard = self
            .counter
            .inner
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (total, per_ip) = &mut *guard;
        *total = total.saturating_sub(1);
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
        if *total == 0 {
            self.counter.inner.idle.notify_waiters();
        }
    }
}

/// A listener's setup.
pub struct Listener<F> {
    pub name: &'static str,
    pub socket: TcpListener,
    pub session: SessionConfig,
    /// For STARTTLS, or for every connection when `session.implicit_tls`.
    pub tls: Option<TlsAcceptor>,
    pub timeouts: Timeouts,
    pub limits: ConnectionLimits,
    pub counter: ConnectionCounter,
    /// Makes the handler for each accepted connection.
    pub make_handler: F,
}

impl<F, H> Listener<F>
where
    F: Fn(ConnInfo) -> H + Send + Sync + 'static,
    H: Handler + 'static,
{
    /// Accept connections until the counter closes; each runs in its own task. The
    /// socket closes when this returns, while sessions in flight go on.
    pub async fn run(self) {
        let Listener {
            name,
            socket,
            session,
            tls,
            timeouts,
            limits,
            counter,
            make_handler,
        } = self;
        let mut closing = counter.closing();
        let this = Arc::new(Shared {
            name,
            session,
            tls,
            timeouts,
            limits,
            counter,
            make_handler,
        });
        loop {
            let accepted = tokio::select! {
                accepted = socket.accept() => accepted,
                _ = shutting_down(&mut closing) => {
                    tracing::info!(listener = name, "no longer accepting connections");
                    return;
                }
            };
            let (stream, peer) = match accepted {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = this.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let this = this.clone();
            // Boxed: a session's future holds every check's state and is tens of
            // kilobytes; tokio moves an unboxed future several times while spawning it.
            tokio::spawn(Box::pin(async move {
                let _ = stream.set_nodelay(true);
                let Some(slot) = this.counter.acquire(peer.ip(), &this.limits) else {
                    tracing::warn!(listener = this.name, client = %peer, "connection limit reached");
                    let mut stream = stream;
                    let reply = Reply::new(421, "4.7.0", "Too many connections, try again later");
                    let _ = stream.write_all(&reply.to_bytes()).await;
                    return;
                };
                let local = stream.local_addr().unwrap_or(peer);
                let info = ConnInfo {
                    peer,
                    local,
                    listener: this.name,
                };
                let mut handler = (this.make_handler)(info);
                if let Some(reply) = handler.connect().await {
                    let mut stream = stream;
                    let _ = stream.write_all(&reply.to_bytes()).await;
                    return;
                }
                let result = this.serve(stream, &mut handler).await;
                handler.reset();
                if let Err(e) = result {
                    tracing::debug!(listener = this.name, client = %peer, error = %e, "session ended");
                }
                drop(slot);
            }));
        }
    }
}

/// What every session of a listener shares.
struct Shared<F> {
    name: &'static str,
    session: SessionConfig,
    tls: Option<TlsAcceptor>,
    timeouts: Timeouts,
    limits: ConnectionLimits,
    counter: ConnectionCounter,
    make_handler: F,
}

impl<F> Shared<F> {
    async fn serve<H: Handler>(&self, stream: TcpStream, handler: &mut H) -> io::Result<()> {
        let mut conn = if self.session.implicit_tls {
            let acceptor = self
                .tls
                .as_ref()
                .ok_or_else(|| io::Error::other("implicit TLS listener without a certificate"))?;
            let tls = tokio::time::timeout(self.timeouts.tls_handshake, acceptor.accept(stream))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake"))??;
            Conn::Tls(Box::new(tls))
        } else {
            Conn::Plain(stream)
        };
        let mut session = Session::new(self.session.clone());
        drive(&mut conn, &mut session, handler, self).await
    }
}

async fn drive<F, H: Handler>(
    conn: &mut Conn,
    session: &mut Session,
    handler: &mut H,
    listener: &Shared<F>,
) -> io::Result<()> {
    // Read into spare capacity: no 64 KiB of zeroes written for every connection.
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BUFFER);
    let deadline = tokio::time::Instant::now() + listener.timeouts.session;
    let mut closing = listener.counter.closing();
    loop {
        while let Some(event) = session.poll_event() {
            match event {
                Event::Helo { name, .. } => {
                    handler.reset();
                    handler.helo(session, &name);
                }
                Event::Auth { username, password } => {
                    let reply = handler.auth(session, &username, &password).await;
                    session.decide(reply);
                }
                Event::Mail(mail) => {
                    let reply = handler.mail(session, &mail).await;
                    session.decide(reply);
                }
                Event::Rcpt(rcpt) => {
                    let reply = handler.rcpt(session, &rcpt).await;
                    session.decide(reply);
                }
                Event::DataStart => {
                    let reply = handler.data_start(session).await;
                    session.decide(reply);
                }
                Event::Body => {
                    let body = std::mem::take(session.body());
                    handler.data_chunk(&body).await;
                    // Hand the allocation back so the next chunk reuses it.
                    *session.body() = body;
                    session.body().clear();
                }
                Event::DataEnd { size } => {
                    let tail = std::mem::take(session.body());
                    if !tail.is_empty() {
                        handler.data_chunk(&tail).await;
                    }
                    let reply = handler.data_end(session, size).await;
                    session.decide(reply);
                }
                Event::DataAborted => {
                    session.body().clear();
                    handler.data_aborted().await;
                }
                Event::Reset => handler.reset(),
                Event::StartTls => {
                    flush(conn, session).await?;
                    handler.reset();
                    let Conn::Plain(stream) = std::mem::replace(conn, Conn::Closed) else {
                        return Err(io::Error::other("STARTTLS on an encrypted connection"));
                    };
                    let acceptor = listener
                        .tls
                        .as_ref()
                        .ok_or_else(|| io::Error::other("STARTTLS without a certificate"))?;
                    let tls = tokio::time::timeout(
                        listener.timeouts.tls_handshake,
                        acceptor.accept(stream),
                    )
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake"))??;
                    *conn = Conn::Tls(Box::new(tls));
                    session.tls_started();
                }
                Event::Close => {
                    flush(conn, session).await?;
                    conn.shutdown().await;
                    return Ok(());
                }
            }
        }
        flush(conn, session).await?;
        // Shutting down: a session between transactions ends now; one in a transaction
        // (MAIL given, or a body coming) finishes it first, within the drain's bound.
        let idle = !session.in_transaction();
        if idle && *closing.borrow() {
            let reply = Reply::new(421, "4.3.2", "Service shutting down, try again later");
            let _ = conn.write_all(&reply.to_bytes()).await;
            conn.shutdown().await;
            return Ok(());
        }
        let timeout = if session.in_body() {
            listener.timeouts.data
        } else {
            listener.timeouts.command
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        buf.clear();
        let read = tokio::select! {
            read = tokio::time::timeout(timeout.min(left), conn.read(&mut buf)) => read,
            _ = shutting_down(&mut closing), if idle => continue,
        };
        let n = match read {
            Ok(result) => result?,
            Err(_) => {
                if session.in_body() {
                    handler.data_aborted().await;
                }
                let text = if timeout <= left {
                    "Error: timeout exceeded"
                } else {
                    "Error: connection time limit exceeded"
                };
                let reply = Reply::new(421, "4.4.2", text);
                let _ = conn.write_all(&reply.to_bytes()).await;
                return Err(io::Error::new(io::ErrorKind::TimedOut, "client timeout"));
            }
        };
        if n == 0 {
            if session.in_body() {
                handler.data_aborted().await;
            }
            return Ok(());
        }
        session.feed(&buf[..n]);
    }
}

async fn flush(conn: &mut Conn, session: &mut Session) -> io::Result<()> {
    let out = session.output();
    if !out.is_empty() {
        conn.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

/// A connection before or after STARTTLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Closed,
}

impl Conn {
    /// Read into `buf`'s spare capacity (which must not be zero).
    async fn read(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read_buf(buf).await,
            Conn::Tls(s) => s.read_buf(buf).await,
            Conn::Closed => Ok(0),
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.write_all(bytes).await,
            Conn::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Conn::Closed => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }

    async fn shutdown(&mut self) {
        let _ = match self {
            Conn::Plain(s) => s.shutdown().await,
            Conn::Tls(s) => s.shutdown().await,
            Conn::Closed => Ok(()),
        };
    }
}
