//! The control socket (`<data_dir>/control.sock`, mode 0600): how `portcullis queue
//! flush|hold|release|delete` reach a running gateway, so that its scheduler learns of
//! the change at once. One request line, one reply line (`ok ...` or `error ...`).
//! When no gateway runs, the CLI changes the spool itself.

use portcullis_queue::Queue;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

pub fn spawn(data_dir: &Path, queue: Queue) -> std::io::Result<()> {
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
            let queue = queue.clone();
            tokio::spawn(async move {
                let _ = serve(stream, queue).await;
            });
        }
    });
    Ok(())
}

async fn serve(stream: UnixStream, queue: Queue) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    if let Some(line) = lines.next_line().await? {
        let reply = execute(&queue, line.trim());
        write.write_all(reply.as_bytes()).await?;
        write.write_all(b"\n").await?;
    }
    Ok(())
}

fn execute(queue: &Queue, line: &str) -> String {
    let mut words = line.split_whitespace();
    let result = match (words.next(), words.next()) {
        (Some("flush"), None) => queue.flush().map(|n| format!("ok {n} messages scheduled")),
        (Some("hold"), Some(id)) => found(queue.set_held(id, true), id),
        (Some("release"), Some(id)) => found(queue.set_held(id, false), id),
        (Some("delete"), Some(id)) => found(queue.spool().remove(id), id),
        // A message the CLI put in the spool (a quarantine release).
        (Some("load"), Some(id)) => {
            queue.enqueue(id);
            Ok(format!("ok {id}"))
        }
        // A new public suffix list file (`portcullis psl update`).
        (Some("reload-psl"), None) => crate::psl_cli::reload(),
        _ => return format!("error unknown request: {line}"),
    };
    match result {
        Ok(s) => s,
        Err(e) => format!("error {e}"),
    }
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
    let mut stream = UnixStream::connect(socket_path(data_dir)).await.ok()?;
    stream
        .write_all(format!("{line}\n").as_bytes())
        .await
        .ok()?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).await.ok()?;
    Some(reply.trim().to_string())
}
