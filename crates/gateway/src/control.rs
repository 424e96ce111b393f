//! The control socket (`<data_dir>/control.sock`, mode 0600): how commands reach a
//! running gateway, so that it learns of a change at once (`portcullis queue
//! flush|hold|release|retry|delete`, locally made mail to load, a new public suffix list). One
//! request line, one reply line (`ok ...` or `error ...`). When no gateway runs, the
//! commands change the spool themselves and the gateway reads it at start.

use portcullis_queue::Queue;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

/// What a request for the public suffix list runs (`reload-psl`): the binary owns the
/// list's file, the socket only passes the request on.
pub type ReloadPsl = Arc<dyn Fn() -> std::io::Result<String> + Send + Sync>;

pub fn spawn(data_dir: &Path, queue: Queue, reload_psl: ReloadPsl) -> std::io::Result<()> {
    let path = socket_path(data_dir);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (queue, reload_psl) = (queue.clone(), reload_psl.clone());
            tokio::spawn(async move {
                let _ = serve(stream, queue, reload_psl).await;
            });
        }
    });
    Ok(())
}

async fn serve(stream: UnixStream, queue: Queue, reload_psl: ReloadPsl) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    if let Some(line) = lines.next_line().await? {
        let reply = execute(&queue, &reload_psl, line.trim());
        write.write_all(reply.as_bytes()).await?;
        write.write_all(b"\n").await?;
    }
    Ok(())
}

fn execute(queue: &Queue, reload_psl: &ReloadPsl, line: &str) -> String {
    let mut words = line.split_whitespace();
    let result = match (words.next(), words.next()) {
        (Some("flush"), None) => queue.flush().map(|n| format!("ok {n} messages scheduled")),
        (Some("hold"), Some(id)) => found(queue.set_held(id, true), id),
        (Some("release"), Some(id)) => found(queue.set_held(id, false), id),
        (Some("retry"), Some(id)) => match queue.retry(id) {
            Ok(false) if is_held(queue, id) => Ok(format!(
                "error message {id} is held: release it to deliver it"
            )),
            other => found(other, id),
        },
        (Some("delete"), Some(id)) => found(queue.spool().remove(id), id),
        // A message a command put in the spool (see `inject`).
        (Some("load"), Some(id)) => {
            queue.enqueue(id);
            Ok(format!("ok {id}"))
        }
        // A new public suffix list file (`portcullis psl update`).
        (Some("reload-psl"), None) => reload_psl(),
        _ => return format!("error unknown request: {line}"),
    };
    match result {
        Ok(s) => s,
        Err(e) => format!("error {e}"),
    }
}

/// Whether `id` is in the queue and held.
fn is_held(queue: &Queue, id: &str) -> bool {
    let spool = queue.spool();
    spool
        .read_envelope(id)
        .is_ok_and(|env| spool.read_state(id, &env).held)
}

fn found(r: std::io::Result<bool>, id: &str) -> std::io::Result<String> {
    r.map(|ok| {
        if ok {
            format!("ok {id}")
        } else {
            format!("error no message {id} in the queue")
        }
    })
}

/// Send one request to a running gateway; None when none is listening.
pub async fn request(data_dir: &Path, line: &str) -> Option<String> {
    ask(data_dir, line).await.ok().flatten()
}

/// Send one request; `Ok(None)` when no gateway is listening (no socket, or a socket
/// left behind by one that stopped), an error when one listens but the exchange broke.
pub async fn ask(data_dir: &Path, line: &str) -> std::io::Result<Option<String>> {
    let mut stream = match UnixStream::connect(socket_path(data_dir)).await {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    stream.write_all(format!("{line}\n").as_bytes()).await?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).await?;
    Ok(Some(reply.trim().to_string()))
}
