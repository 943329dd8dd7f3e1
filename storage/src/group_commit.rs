//! Group commit: one WAL `fsync` makes a whole round of Raft log appends durable.
//!
//! This disk allows a few hundred syncs a second. Every Raft group on the node appends to
//! the one RocksDB WAL without syncing, then queues a callback here. A single thread takes
//! everything queued, syncs the WAL once, and runs all the callbacks; whatever arrives
//! during that sync rides the next one. Under load the batches grow by themselves, so
//! throughput scales with the number of concurrent appends instead of collapsing to one
//! request per sync.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Weak};

use rocksdb::DB;

use crate::db::{Failure, StoreStats};
use crate::{Result, StorageError};

type Waiter = Box<dyn FnOnce(std::io::Result<()>) + Send>;

/// Handle to the node's flusher thread. Cheap to clone.
#[derive(Clone)]
pub struct GroupCommit {
    tx: mpsc::Sender<Waiter>,
}

impl GroupCommit {
    /// Starts the flusher. It holds the database weakly, so dropping the store closes it.
    /// With `sync` false the WAL is only written out to the OS, never fsynced (see
    /// [`crate::StoreOptions::sync_wal`]).
    pub(crate) fn start(
        db: &Arc<DB>,
        stats: Arc<StoreStats>,
        failure: Failure,
        sync: bool,
    ) -> GroupCommit {
        let (tx, rx) = mpsc::channel::<Waiter>();
        let db = Arc::downgrade(db);
        std::thread::Builder::new()
            .name("wal-sync".into())
            .spawn(move || run(db, stats, failure, rx, sync))
            .expect("spawn the WAL sync thread");
        GroupCommit { tx }
    }

    /// Runs `done` once everything written to the WAL before this call is on disk.
    pub fn after_sync(&self, done: impl FnOnce(std::io::Result<()>) + Send + 'static) {
        if let Err(mpsc::SendError(done)) = self.tx.send(Box::new(done)) {
            done(Err(std::io::Error::other(
                "the WAL sync thread has stopped",
            )));
        }
    }

    /// Waits until everything written to the WAL before this call is on disk.
    pub async fn sync(&self) -> Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.after_sync(move |r| {
            let _ = tx.send(r);
        });
        rx.await.map_err(|_| StorageError::FlusherGone)??;
        Ok(())
    }
}

fn run(
    db: Weak<DB>,
    stats: Arc<StoreStats>,
    failure: Failure,
    rx: mpsc::Receiver<Waiter>,
    sync: bool,
) {
    // Ends when every sender is gone, i.e. the store was dropped.
    while let Ok(first) = rx.recv() {
        let mut round = vec![first];
        round.extend(rx.try_iter());
        let result = match db.upgrade() {
            Some(db) => db.flush_wal(sync).map_err(|e| e.to_string()),
            None => Err("the database is closed".to_string()),
        };
        stats.wal_syncs.fetch_add(1, Ordering::Relaxed);
        stats
            .synced_appends
            .fetch_add(round.len() as u64, Ordering::Relaxed);
        if let Err(e) = &result {
            tracing::error!(error = %e, "WAL sync failed");
            failure.record(e);
        }
        for waiter in round {
            waiter(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::other(e.clone())),
            });
        }
    }
}
