//! The durable spool: the truth for mail in flight.
//!
//! Layout under the spool directory (states are directories, as in Postfix):
//! - `tmp/`   messages being received; removed at start-up (never acknowledged).
//! - `queue/` committed messages, one file `<id>.msg` each: the message bytes followed by
//!   the envelope as JSON and a fixed-size footer giving the JSON's length. One file means
//!   one fsync per message; the envelope trails the body so the body can be streamed to
//!   disk before the envelope is final.
//! - `queue/<id>.st` delivery state (per-recipient results, attempts, next try, hold).
//!   It is rewritten by rename and not fsynced: losing it in a crash means a retry, which
//!   at-least-once delivery allows.
//!
//! A message is acknowledged only after its file is fsynced, renamed into `queue/` and the
//! directory fsynced. Directory fsyncs are group-committed: one fsync covers every rename
//! that finished before it started.

use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

pub use portcullis_smtp::Ret;

const FOOTER_MAGIC: &[u8; 10] = b"\n%PCSPOOL ";
const FOOTER_LEN: usize = FOOTER_MAGIC.len() + 10 + 1;
/// Bodies up to this size stay in memory until commit; larger ones spill to `tmp/`.
const SPILL_THRESHOLD: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// The envelope written with the message; it never changes after commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: String,
    pub received_at: i64,
    pub client_ip: String,
    pub helo: String,
    pub direction: Direction,
    pub auth_user: Option<String>,
    /// Empty for the null sender (bounces).
    pub sender: String,
    pub eight_bit: bool,
    pub smtputf8: bool,
    pub ret: Option<Ret>,
    pub envid: Option<String>,
    pub recipients: Vec<EnvelopeRecipient>,
    /// Header fields the gateway adds (Received, Authentication-Results, ...), CRLF
    /// terminated. They go in front of the body when the message is read, so that a body
    /// already streamed to disk never has to be rewritten to add them.
    #[serde(default)]
    pub prepend: String,
}

impl Envelope {
    /// The envelope of a message the gateway writes itself (a DSN, a quarantine digest, a
    /// report): from the null sender, so that one that cannot be delivered never bounces
    /// into a loop, and asking for no delivery notices.
    pub fn notice(id: String, hostname: &str, direction: Direction, to: &[String]) -> Envelope {
        Envelope {
            id,
            received_at: now(),
            client_ip: "127.0.0.1".into(),
            helo: hostname.to_string(),
            direction,
            auth_user: None,
            sender: String::new(),
            eight_bit: false,
            smtputf8: false,
            ret: None,
            envid: None,
            recipients: to
                .iter()
                .map(|address| EnvelopeRecipient {
                    address: address.clone(),
                    orcpt: None,
                    notify: Some(vec!["NEVER".into()]),
                })
                .collect(),
            prepend: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeRecipient {
    pub address: String,
    pub orcpt: Option<String>,
    pub notify: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecipientStatus {
    Pending,
    Delivered,
    Failed,
}

/// Mutable delivery state, kept beside the message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryState {
    pub status: Vec<RecipientStatus>,
    pub last_reply: Vec<Option<String>>,
    pub attempts: u32,
    pub next_attempt: i64,
    pub held: bool,
    pub delay_warned: bool,
    /// Recipients that failed but whose failure notice could not be stored yet: the
    /// message stays until it is.
    #[serde(default)]
    pub dsn_owed: Vec<usize>,
}

impl DeliveryState {
    pub fn new(recipients: usize, now: i64) -> Self {
        DeliveryState {
            status: vec![RecipientStatus::Pending; recipients],
            last_reply: vec![None; recipients],
            attempts: 0,
            next_attempt: now,
            held: false,
            delay_warned: false,
            dsn_owed: Vec::new(),
        }
    }

    pub fn pending(&self) -> usize {
        self.status
            .iter()
            .filter(|s| **s == RecipientStatus::Pending)
            .count()
    }
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A queue id: microseconds since the epoch and a process counter, in hex, so ids sort
/// by arrival and never repeat within a process.
pub fn new_id() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff;
    format!("{micros:014X}{n:04X}")
}

/// The arrival time (Unix seconds) a queue id made by [`new_id`] carries.
fn id_time(id: &str) -> Option<i64> {
    let micros = u64::from_str_radix(id.get(..14)?, 16).ok()?;
    i64::try_from(micros / 1_000_000).ok()
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The spool directories and the group-commit state for the queue directory.
pub struct Spool {
    tmp: PathBuf,
    queue: PathBuf,
    dir_sync: DirSync,
    /// The exclusive lock of the gateway that owns this spool (None for the CLI).
    lock: Mutex<Option<File>>,
    /// Files of delivered messages waiting in `tmp/` to be overwritten by new ones, each
    /// with the queue-directory fsync ticket taken after it left `queue/`.
    free: Mutex<std::collections::VecDeque<(PathBuf, u64)>>,
}

/// Delivered messages' files kept for reuse at most, and the largest kept. Creating and
/// unlinking a file per message makes the file system allocate and free an inode each
/// time (on ext4 without a journal, the allocation also scans past every inode freed in
/// the last seconds); overwriting a kept file does neither. At most 32 MiB stay on disk.
const RECYCLE_FILES: usize = 256;
const RECYCLE_MAX_BYTES: usize = 128 * 1024;

impl Spool {
    /// Open (and create) the spool under `dir` for the gateway itself, and clear `tmp/`
    /// of messages that were never acknowledged. Only `serve` may do this: in any other
    /// process it would delete bodies a running gateway is still receiving.
    pub fn open(dir: &Path) -> io::Result<Arc<Spool>> {
        fs::create_dir_all(dir)?;
        // One gateway per spool: a second one would clean up and deliver the first one's
        // mail. The lock lives as long as the process.
        let lock = File::create(dir.join("lock"))?;
        lock.try_lock().map_err(|_| {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "spool {} is in use by another portcullis serve",
                    dir.display()
                ),
            )
        })?;
        let spool = Self::open_shared(dir)?;
        spool.clean_leftovers()?;
        *spool.lock.lock().unwrap_or_else(|p| p.into_inner()) = Some(lock);
        Ok(spool)
    }

    /// Open the spool beside a gateway that may be running (CLI): no clean-up.
    pub fn open_shared(dir: &Path) -> io::Result<Arc<Spool>> {
        let tmp = dir.join("tmp");
        let queue = dir.join("queue");
        fs::create_dir_all(&tmp)?;
        fs::create_dir_all(&queue)?;
        let dir_sync = DirSync::new(File::open(&queue)?);
        Ok(Arc::new(Spool {
            tmp,
            queue,
            dir_sync,
            lock: Mutex::new(None),
            free: Mutex::new(std::collections::VecDeque::new()),
        }))
    }

    fn clean_leftovers(&self) -> io::Result<()> {
        let (tmp, queue) = (&self.tmp, &self.queue);
        for entry in fs::read_dir(tmp)? {
            let _ = fs::remove_file(entry?.path());
        }
        // State files half-written when the process died.
        for entry in fs::read_dir(queue)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                let _ = fs::remove_file(path);
            }
        }
        Ok(())
    }

    pub fn message_path(&self, id: &str) -> PathBuf {
        self.queue.join(format!("{id}.msg"))
    }

    fn state_path(&self, id: &str) -> PathBuf {
        self.queue.join(format!("{id}.st"))
    }

    /// Start receiving a message.
    pub fn writer(self: &Arc<Self>, id: String) -> SpoolWriter {
        SpoolWriter {
            spool: self.clone(),
            tmp_path: self.tmp.join(format!("{id}.msg")),
            id,
            buffer: Vec::new(),
            file: None,
            written: 0,
            recycled: false,
            error: None,
            committed: false,
        }
    }

    /// Take a delivered message out of the queue once it is finished with, like
    /// [`Spool::remove`], keeping a small file in `tmp/` for a new message to overwrite.
    /// `size` is about the file's size (the message as delivered).
    pub fn retire(&self, id: &str, size: usize) -> io::Result<bool> {
        if !valid_id(id) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad queue id"));
        }
        let room = self.free.lock().unwrap_or_else(|p| p.into_inner()).len() < RECYCLE_FILES;
        if size > RECYCLE_MAX_BYTES || !room {
            return self.remove(id);
        }
        let kept = self.tmp.join(format!("{id}.free"));
        match fs::rename(self.message_path(id), &kept) {
            Ok(()) => {
                let _ = fs::remove_file(self.state_path(id));
                // Reused only after a later fsync of `queue/` has made its departure
                // durable: otherwise a power cut could leave the old name in `queue/`
                // pointing at a new message's bytes.
                let ticket = self.dir_sync.requested();
                self.free
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_back((kept, ticket));
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(_) => self.remove(id),
        }
    }

    /// A kept file whose departure from `queue/` is durable, opened for overwriting.
    fn take_free(&self) -> Option<(PathBuf, File)> {
        let durable = self.dir_sync.durable_upto();
        loop {
            let (path, _) = {
                let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
                match free.front() {
                    Some((_, ticket)) if *ticket < durable => free.pop_front()?,
                    _ => return None,
                }
            };
            match OpenOptions::new().write(true).open(&path) {
                Ok(file) => return Some((path, file)),
                Err(_) => {
                    let _ = fs::remove_file(&path);
                }
            }
        }
    }

    /// How many messages are committed, and when the oldest arrived (Unix seconds, read
    /// from its id, which begins with its arrival time), for the queue gauges.
    pub fn census(&self) -> io::Result<(usize, Option<i64>)> {
        // One pass, keeping only the smallest id (ids sort by time): the gauges run every
        // few seconds, and a large queue need not be collected and sorted for them.
        let mut count = 0;
        let mut oldest: Option<String> = None;
        self.each_id(|id| {
            count += 1;
            if oldest.as_deref().is_none_or(|o| id < o) {
                oldest = Some(id.to_string());
            }
        })?;
        Ok((count, oldest.as_deref().and_then(id_time)))
    }

    /// Ids of every committed message, oldest first.
    pub fn list(&self) -> io::Result<Vec<String>> {
        let mut ids = Vec::new();
        self.each_id(|id| ids.push(id.to_string()))?;
        ids.sort();
        Ok(ids)
    }

    /// Call `f` with the id of every committed message, in directory order.
    fn each_id(&self, mut f: impl FnMut(&str)) -> io::Result<()> {
        for entry in fs::read_dir(&self.queue)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name.strip_suffix(".msg")
                && valid_id(id)
            {
                f(id);
            }
        }
        Ok(())
    }

    /// Read a committed message's envelope.
    pub fn read_envelope(&self, id: &str) -> io::Result<Envelope> {
        let (envelope, _) = self.read_envelope_and_len(id)?;
        Ok(envelope)
    }

    fn read_envelope_and_len(&self, id: &str) -> io::Result<(Envelope, u64)> {
        if !valid_id(id) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad queue id"));
        }
        let mut file = File::open(self.message_path(id))?;
        let total = file.metadata()?.len();
        if total < FOOTER_LEN as u64 {
            return Err(corrupt(id, "too short"));
        }
        file.seek(SeekFrom::Start(total - FOOTER_LEN as u64))?;
        let mut footer = [0u8; FOOTER_LEN];
        file.read_exact(&mut footer)?;
        if &footer[..FOOTER_MAGIC.len()] != FOOTER_MAGIC || footer[FOOTER_LEN - 1] != b'\n' {
            return Err(corrupt(id, "no footer"));
        }
        let len: u64 = std::str::from_utf8(&footer[FOOTER_MAGIC.len()..FOOTER_LEN - 1])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| corrupt(id, "bad footer length"))?;
        let body_len = total
            .checked_sub(FOOTER_LEN as u64 + len)
            .ok_or_else(|| corrupt(id, "envelope longer than file"))?;
        file.seek(SeekFrom::Start(body_len))?;
        let mut json = vec![0u8; len as usize];
        file.read_exact(&mut json)?;
        let envelope =
            serde_json::from_slice(&json).map_err(|e| corrupt(id, &format!("envelope: {e}")))?;
        Ok((envelope, body_len))
    }

    /// Read a committed message as it is to be delivered: the added header fields, then
    /// the received bytes (without the envelope).
    pub fn read_message(&self, id: &str) -> io::Result<(Envelope, Vec<u8>)> {
        let (envelope, body_len) = self.read_envelope_and_len(id)?;
        let mut file = File::open(self.message_path(id))?;
        let prefix = envelope.prepend.len();
        let mut message = vec![0u8; prefix + body_len as usize];
        message[..prefix].copy_from_slice(envelope.prepend.as_bytes());
        file.read_exact(&mut message[prefix..])?;
        Ok((envelope, message))
    }

    /// The delivery state, or a fresh one when none was written yet.
    pub fn read_state(&self, id: &str, envelope: &Envelope) -> DeliveryState {
        fs::read(self.state_path(id))
            .ok()
            .and_then(|b| serde_json::from_slice::<DeliveryState>(&b).ok())
            .filter(|s| s.status.len() == envelope.recipients.len())
            .unwrap_or_else(|| DeliveryState::new(envelope.recipients.len(), envelope.received_at))
    }

    pub fn write_state(&self, id: &str, state: &DeliveryState) -> io::Result<()> {
        if !valid_id(id) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad queue id"));
        }
        let json = serde_json::to_vec(state).map_err(io::Error::other)?;
        // A name of its own per write: the scheduler and an admin command may write the
        // same message's state at once.
        static WRITES: AtomicU32 = AtomicU32::new(0);
        let n = WRITES.fetch_add(1, Ordering::Relaxed);
        let tmp = self.queue.join(format!("{id}.st.{n}.tmp"));
        fs::write(&tmp, json)?;
        fs::rename(tmp, self.state_path(id))
    }

    /// Hold or release a message (a release makes it due at `now`). Ok(None) when it
    /// is not in the queue; otherwise its new state.
    pub fn set_held(&self, id: &str, held: bool, now: i64) -> io::Result<Option<DeliveryState>> {
        let envelope = match self.read_envelope(id) {
            Ok(envelope) => envelope,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut state = self.read_state(id, &envelope);
        state.held = held;
        if !held {
            state.next_attempt = now;
        }
        self.write_state(id, &state)?;
        Ok(Some(state))
    }

    /// Make a message that is not held due at `at`; false when it is held or unreadable.
    pub fn make_due(&self, id: &str, at: i64) -> io::Result<bool> {
        let Ok(envelope) = self.read_envelope(id) else {
            return Ok(false);
        };
        let mut state = self.read_state(id, &envelope);
        if state.held {
            return Ok(false);
        }
        state.next_attempt = at;
        self.write_state(id, &state)?;
        Ok(true)
    }

    /// Remove a message whose every recipient is final (or that an admin deleted).
    pub fn remove(&self, id: &str) -> io::Result<bool> {
        if !valid_id(id) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad queue id"));
        }
        // The message first: a crash in between leaves an orphan state file, not a
        // message whose finished recipients would all be tried again.
        let removed = match fs::remove_file(self.message_path(id)) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        let _ = fs::remove_file(self.state_path(id));
        Ok(removed)
    }

    /// Write a complete message (bounces, tests) straight into the queue.
    pub fn store_message(self: &Arc<Self>, envelope: &Envelope, message: &[u8]) -> io::Result<()> {
        let mut writer = self.writer(envelope.id.clone());
        writer.buffer.extend_from_slice(message);
        writer.commit_blocking(envelope)
    }
}

fn corrupt(id: &str, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("spool file {id} is corrupt: {what}"),
    )
}

/// Receives one message's bytes, then commits it durably.
pub struct SpoolWriter {
    spool: Arc<Spool>,
    id: String,
    tmp_path: PathBuf,
    buffer: Vec<u8>,
    file: Option<File>,
    /// Bytes written to `file` so far.
    written: u64,
    /// `file` is a delivered message's file being overwritten: it may be longer.
    recycled: bool,
    /// The first write error; reported at commit so the client gets a 4xx.
    error: Option<io::Error>,
    /// Renamed into the queue: the file is no longer ours to remove.
    committed: bool,
}

impl Drop for SpoolWriter {
    /// A message dropped before commit (a reset, a lost connection) leaves nothing in
    /// `tmp/`: otherwise a client could fill the disk with abandoned bodies.
    fn drop(&mut self) {
        if !self.committed {
            self.discard();
        }
    }
}

impl SpoolWriter {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Append message bytes. Large bodies spill to disk (blocking writes of at most
    /// about a megabyte at a time, short enough to run on the async thread).
    pub fn write(&mut self, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= SPILL_THRESHOLD
            && let Err(e) = self.spill()
        {
            self.error = Some(e);
        }
    }

    fn spill(&mut self) -> io::Result<()> {
        if self.file.is_none() {
            if let Some((path, file)) = self.spool.take_free() {
                self.tmp_path = path;
                self.file = Some(file);
                self.recycled = true;
            } else {
                self.file = Some(
                    OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&self.tmp_path)?,
                );
            }
        }
        if let Some(file) = &mut self.file {
            file.write_all(&self.buffer)?;
            self.written += self.buffer.len() as u64;
        }
        self.buffer.clear();
        Ok(())
    }

    /// True when the body went to disk: reading it back ([`SpoolWriter::contents`])
    /// then blocks.
    pub fn spilled(&self) -> bool {
        self.file.is_some()
    }

    /// The message received so far: from memory, or read back from disk when it was
    /// large enough to spill (blocking; only for bodies over the spill threshold).
    pub fn contents(&mut self) -> io::Result<std::borrow::Cow<'_, [u8]>> {
        if let Some(e) = &self.error {
            return Err(io::Error::new(e.kind(), e.to_string()));
        }
        if self.file.is_none() {
            return Ok(std::borrow::Cow::Borrowed(&self.buffer));
        }
        self.spill()?;
        // Exactly what was written: a reused file may hold an older message beyond it.
        let mut bytes = Vec::with_capacity(self.written as usize);
        File::open(&self.tmp_path)?
            .take(self.written)
            .read_to_end(&mut bytes)?;
        Ok(std::borrow::Cow::Owned(bytes))
    }

    /// Make the message durable: write the envelope, fsync the file, rename it into the
    /// queue and fsync the directory (group commit). Blocking: call from
    /// `spawn_blocking` or [`SpoolWriter::commit`].
    pub fn commit_blocking(mut self, envelope: &Envelope) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            self.discard();
            return Err(e);
        }
        let result = self.write_and_rename(envelope, false);
        if result.is_err() {
            self.discard();
        }
        result.map(|_| ())
    }

    /// `keep`: also return the message as [`Spool::read_message`] would (added headers,
    /// then the body) when the body never left memory, so delivery need not read it back.
    fn write_and_rename(&mut self, envelope: &Envelope, keep: bool) -> io::Result<Option<Vec<u8>>> {
        let kept = (keep && self.file.is_none()).then(|| {
            let mut message = Vec::with_capacity(envelope.prepend.len() + self.buffer.len());
            message.extend_from_slice(envelope.prepend.as_bytes());
            message.extend_from_slice(&self.buffer);
            message
        });
        let json = serde_json::to_vec(envelope).map_err(io::Error::other)?;
        self.buffer.extend_from_slice(&json);
        self.buffer.extend_from_slice(FOOTER_MAGIC);
        self.buffer
            .extend_from_slice(format!("{:>10}\n", json.len()).as_bytes());
        self.spill()?;
        let file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("spool file vanished"))?;
        if self.recycled {
            // The envelope must end the file: cut what is left of the older message.
            file.set_len(self.written)?;
        }
        let started = std::time::Instant::now();
        file.sync_all()?;
        crate::metrics::fsync(false, started);
        drop(file);
        let path = self.spool.message_path(&self.id);
        fs::rename(&self.tmp_path, &path)?;
        self.committed = true;
        if let Err(e) = self.spool.dir_sync.sync() {
            // The client will hear 451 and send again: take the message back out so it
            // is not delivered twice, once from here and once from the retry.
            let _ = fs::remove_file(&path);
            let _ = self.spool.dir_sync.sync();
            return Err(e);
        }
        Ok(kept)
    }

    /// Commit on a blocking thread. Returns the message as it is to be delivered when it
    /// was small enough to stay in memory (under the spill threshold).
    pub async fn commit(mut self, envelope: Envelope) -> io::Result<Option<Vec<u8>>> {
        tokio::task::spawn_blocking(move || {
            if let Some(e) = self.error.take() {
                self.discard();
                return Err(e);
            }
            let result = self.write_and_rename(&envelope, true);
            if result.is_err() {
                self.discard();
            }
            result
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Throw the message away.
    pub fn discard(&mut self) {
        self.file = None;
        self.buffer = Vec::new();
        let _ = fs::remove_file(&self.tmp_path);
    }
}

/// Group commit of directory fsyncs: a caller whose rename finished before an fsync
/// began is covered by that fsync and need not start its own.
struct DirSync {
    dir: File,
    state: Mutex<SyncState>,
    done: Condvar,
}

#[derive(Default)]
struct SyncState {
    /// Tickets handed out; each caller takes one after its rename.
    requested: u64,
    /// Every ticket up to this one is durable.
    synced: u64,
    /// Every ticket up to this one is covered by an fsync that succeeded.
    good: u64,
    running: bool,
    /// The last fsync failed: callers whose tickets it covered must fail.
    failed_upto: u64,
}

impl DirSync {
    fn new(dir: File) -> Self {
        DirSync {
            dir,
            state: Mutex::new(SyncState::default()),
            done: Condvar::new(),
        }
    }

    /// Tickets handed out so far: an fsync that covers a later one began after this call.
    fn requested(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .requested
    }

    /// Every ticket up to this one is covered by an fsync that succeeded.
    fn durable_upto(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).good
    }

    fn sync(&self) -> io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.requested += 1;
        let ticket = st.requested;
        loop {
            if st.synced >= ticket {
                return if st.failed_upto >= ticket {
                    Err(io::Error::other("spool directory fsync failed"))
                } else {
                    Ok(())
                };
            }
            if !st.running {
                st.running = true;
                let target = st.requested;
                drop(st);
                let started = std::time::Instant::now();
                let result = self.dir.sync_all();
                crate::metrics::fsync(true, started);
                st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                st.running = false;
                st.synced = target;
                if result.is_err() {
                    st.failed_upto = target;
                } else {
                    st.good = target;
                }
                self.done.notify_all();
                continue;
            }
            st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(id: &str) -> Envelope {
        Envelope {
            id: id.to_string(),
            received_at: 1_700_000_000,
            client_ip: "127.0.0.1".into(),
            helo: "client".into(),
            direction: Direction::Inbound,
            auth_user: None,
            sender: "a@x.test".into(),
            eight_bit: false,
            smtputf8: false,
            ret: None,
            envid: None,
            recipients: vec![EnvelopeRecipient {
                address: "b@y.test".into(),
                orcpt: None,
                notify: None,
            }],
            prepend: String::new(),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pc-spool-{name}-{}", new_id()));
        fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn census_counts_and_dates_the_oldest() {
        let dir = temp_dir("census");
        let spool = Spool::open(&dir).expect("spool");
        assert_eq!(spool.census().expect("census"), (0, None));
        let before = now();
        for _ in 0..3 {
            let env = envelope(&new_id());
            spool
                .store_message(&env, b"Subject: x\r\n\r\nbody\r\n")
                .expect("store");
        }
        let (count, oldest) = spool.census().expect("census");
        assert_eq!(count, 3);
        let oldest = oldest.expect("an arrival time");
        assert!(
            oldest >= before && oldest <= now(),
            "{oldest} not near {before}"
        );
    }

    #[test]
    fn commit_and_read_back_small_and_spilled() {
        let dir = temp_dir("rw");
        let spool = Spool::open(&dir).expect("open");
        for size in [10usize, 3 * SPILL_THRESHOLD + 17] {
            let id = new_id();
            let body: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
            let mut w = spool.writer(id.clone());
            for chunk in body.chunks(65536) {
                w.write(chunk);
            }
            assert_eq!(w.contents().expect("contents").as_ref(), &body[..]);
            w.commit_blocking(&envelope(&id)).expect("commit");
            let (env, read) = spool.read_message(&id).expect("read");
            assert_eq!(env, envelope(&id));
            assert_eq!(read, body);
        }
        assert_eq!(spool.list().expect("list").len(), 2);
        assert_eq!(fs::read_dir(dir.join("tmp")).expect("tmp").count(), 0);
        fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn tmp_is_cleared_at_open_and_state_round_trips() {
        let dir = temp_dir("state");
        let spool = Spool::open(&dir).expect("open");
        let id = new_id();
        // A crash before commit leaves a body in tmp/.
        fs::write(dir.join("tmp").join(format!("{id}.msg")), b"partial").expect("stray");
        assert_eq!(fs::read_dir(dir.join("tmp")).expect("tmp").count(), 1);
        drop(spool);
        let spool = Spool::open(&dir).expect("reopen");
        assert_eq!(fs::read_dir(dir.join("tmp")).expect("tmp").count(), 0);
        assert!(spool.list().expect("list").is_empty());

        spool
            .store_message(&envelope(&id), b"hello\r\n")
            .expect("store");
        let env = spool.read_envelope(&id).expect("env");
        let mut st = spool.read_state(&id, &env);
        assert_eq!(st.pending(), 1);
        st.status[0] = RecipientStatus::Delivered;
        spool.write_state(&id, &st).expect("state");
        assert_eq!(spool.read_state(&id, &env).pending(), 0);
        assert!(spool.remove(&id).expect("remove"));
        assert!(!spool.remove(&id).expect("remove again"));
        assert!(spool.read_envelope("../etc").is_err());
        fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn one_gateway_per_spool() {
        let dir = temp_dir("lock");
        let first = Spool::open(&dir).expect("open");
        let second = Spool::open(&dir).err().expect("second open refused");
        assert_eq!(second.kind(), io::ErrorKind::WouldBlock);
        assert!(Spool::open_shared(&dir).is_ok(), "the CLI may still look");
        drop(first);
        assert!(Spool::open(&dir).is_ok(), "the lock goes with the gateway");
        fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_dropped_writer_leaves_nothing_behind() {
        let dir = temp_dir("drop");
        let spool = Spool::open(&dir).expect("open");
        let mut w = spool.writer(new_id());
        w.write(&vec![b'x'; SPILL_THRESHOLD + 1]);
        drop(w);
        assert_eq!(fs::read_dir(dir.join("tmp")).expect("tmp").count(), 0);
        fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn group_commit_from_many_threads() {
        let dir = temp_dir("group");
        let spool = Spool::open(&dir).expect("open");
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let spool = spool.clone();
                std::thread::spawn(move || {
                    let id = new_id();
                    spool
                        .store_message(&envelope(&id), b"x\r\n")
                        .expect("store");
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread");
        }
        assert_eq!(spool.list().expect("list").len(), 16);
        fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn delivered_files_are_reused_only_after_their_departure_is_durable() {
        let dir = temp_dir("recycle");
        let spool = Spool::open(&dir).expect("open");
        let tmp_count = || fs::read_dir(dir.join("tmp")).expect("tmp").count();
        let old = new_id();
        let long: Vec<u8> = (0..20_000).map(|i| b'a' + (i % 26) as u8).collect();
        spool.store_message(&envelope(&old), &long).expect("store");
        assert!(spool.retire(&old, long.len()).expect("retire"));
        assert!(spool.list().expect("list").is_empty(), "out of the queue");
        assert_eq!(tmp_count(), 1, "kept in tmp/ for reuse");
        assert!(
            spool.take_free().is_none(),
            "no fsync of queue/ since it left"
        );

        // The next commit fsyncs queue/; the one after it may overwrite the kept file,
        // which is longer than the new message: nothing of the old one may remain.
        let first = new_id();
        spool
            .store_message(&envelope(&first), b"one\r\n")
            .expect("store");
        assert_eq!(tmp_count(), 1, "not reused yet");
        let second = new_id();
        spool
            .store_message(&envelope(&second), b"two\r\n")
            .expect("store");
        assert_eq!(tmp_count(), 0, "reused");
        let (env, body) = spool.read_message(&second).expect("read");
        assert_eq!((env, body), (envelope(&second), b"two\r\n".to_vec()));

        // A spilled body written into a reused file reads back exactly.
        assert!(spool.retire(&first, 5).expect("retire"));
        spool
            .store_message(&envelope(&new_id()), b"x\r\n")
            .expect("store");
        let id = new_id();
        let mut w = spool.writer(id.clone());
        let big = vec![b'y'; SPILL_THRESHOLD + 3];
        w.write(&big);
        assert!(w.recycled, "the kept file was taken");
        assert_eq!(w.contents().expect("contents").as_ref(), &big[..]);
        w.commit_blocking(&envelope(&id)).expect("commit");
        assert_eq!(spool.read_message(&id).expect("read").1, big);

        // Large messages are unlinked, not kept; a kept file is gone after a restart.
        assert!(spool.retire(&id, RECYCLE_MAX_BYTES + 1).expect("retire"));
        assert_eq!(tmp_count(), 0);
        assert!(spool.retire(&second, 5).expect("retire"));
        assert_eq!(tmp_count(), 1);
        drop(spool);
        let spool = Spool::open(&dir).expect("reopen");
        assert_eq!(tmp_count(), 0);
        assert!(!spool.retire(&second, 5).expect("already gone"));
        fs::remove_dir_all(dir).ok();
    }
}
