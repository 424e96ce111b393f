//! One background task that writes what many callers hand it, in batches: the first item
//! of a batch waits a moment for others (`gather`), then all of them go to the writer
//! together. The message log and the DMARC report results use it: SQLite takes one writer
//! at a time, and a few large transactions cost far less than many small ones. Callers
//! never wait; `flush` waits until everything handed over before it is written (at
//! shutdown).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

/// Items, and requests to report once everything sent before them is written. Nearly
/// every message is an item, so the small variant's wasted space costs nothing that
/// boxing each item would not cost more.
#[allow(clippy::large_enum_variant)]
enum Msg<T> {
    Item(T),
    Flush(oneshot::Sender<()>),
}

pub struct Batcher<T> {
    tx: mpsc::UnboundedSender<Msg<T>>,
    /// Items handed over and not yet written, against `limit`.
    pending: Arc<AtomicUsize>,
    limit: usize,
}

impl<T> Clone for Batcher<T> {
    fn clone(&self) -> Self {
        Batcher {
            tx: self.tx.clone(),
            pending: self.pending.clone(),
            limit: self.limit,
        }
    }
}

impl<T: Send + 'static> Batcher<T> {
    /// Start the task. `write` gets each batch (at most `max_batch` items); `limit` bounds
    /// the items waiting (beyond it [`Batcher::push`] refuses).
    pub fn spawn<F, Fut>(gather: Duration, max_batch: usize, limit: usize, mut write: F) -> Self
    where
        F: FnMut(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Msg<T>>();
        let pending = Arc::new(AtomicUsize::new(0));
        let counted = pending.clone();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(max_batch);
            while rx.recv_many(&mut batch, max_batch).await > 0 {
                let flushing = batch.iter().any(|m| matches!(m, Msg::Flush(_)));
                if batch.len() < max_batch && !flushing {
                    tokio::time::sleep(gather).await;
                    while batch.len() < max_batch {
                        match rx.try_recv() {
                            Ok(msg) => batch.push(msg),
                            Err(_) => break,
                        }
                    }
                }
                let mut waiting = Vec::new();
                let items: Vec<T> = batch
                    .drain(..)
                    .filter_map(|m| match m {
                        Msg::Item(item) => Some(item),
                        Msg::Flush(done) => {
                            waiting.push(done);
                            None
                        }
                    })
                    .collect();
                let n = items.len();
                if n > 0 {
                    write(items).await;
                    counted.fetch_sub(n, Ordering::Relaxed);
                }
                for done in waiting {
                    let _ = done.send(());
                }
            }
        });
        Batcher { tx, pending, limit }
    }

    /// Hand an item over; false when `limit` items are already waiting or the task has
    /// stopped (the item is dropped).
    pub fn push(&self, item: T) -> bool {
        if self.pending.fetch_add(1, Ordering::Relaxed) >= self.limit {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        if self.tx.send(Msg::Item(item)).is_err() {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Wait until every item handed over before this call is written.
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).is_ok() {
            let _ = written.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn batches_flushes_and_refuses_beyond_the_limit() {
        let written: Arc<Mutex<Vec<Vec<u32>>>> = Arc::default();
        let sink = written.clone();
        let b = Batcher::spawn(Duration::from_millis(30), 3, 5, move |items: Vec<u32>| {
            let sink = sink.clone();
            async move { sink.lock().unwrap().push(items) }
        });
        for i in 0..5 {
            assert!(b.push(i));
        }
        assert!(!b.push(99), "a sixth waiting item is refused");
        b.flush().await;
        let batches = written.lock().unwrap().clone();
        assert_eq!(
            batches.concat(),
            vec![0, 1, 2, 3, 4],
            "in order, nothing lost"
        );
        assert!(batches.iter().all(|b| b.len() <= 3), "{batches:?}");
        assert!(b.push(5), "room again once written");
        b.flush().await;
        assert_eq!(written.lock().unwrap().concat().last(), Some(&5));
    }
}
