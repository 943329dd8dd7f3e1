//! Fetch read-ahead. A consumer catching up on history alternates between waiting for the
//! broker to read a response from disk and parsing it, and the disk would idle while the
//! consumer parses. So once a large response has been read, its connection goes on to
//! read what the next fetch will most likely ask for: the batches after those just sent,
//! and the partitions the response had no room for, in the order of the next request
//! (librdkafka starts each fetch one partition further down its list). That fetch is
//! served from memory, and the disk moves on meanwhile. Kafka gets the same from the page
//! cache's readahead; Strand reads with direct I/O, so it reads ahead itself.
//!
//! Only committed batches are read ahead (below the high watermark when planned), and those
//! never change. A chunk read ahead is used only where it holds exactly the next batches
//! the fetch located itself, so a wrong guess costs disk time, never a wrong answer. The
//! next fetch stops the read-ahead, waits for the chunk being read, takes what is there and
//! drops the rest. Memory is bounded per connection (the fetch's own max_bytes, at most
//! [`PER_CONNECTION_MAX`]) and per node (`--fetch-read-ahead-bytes`).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use strand_raft::PartitionReplica;
use strand_storage::{BatchLocation, StorageError};
use tokio::sync::watch;

use super::chunk_end;

/// The most one connection reads ahead, whatever its fetches' max_bytes.
const PER_CONNECTION_MAX: usize = 64 << 20;

/// How much the read-ahead reads at a time: direct reads move several times more bytes per
/// second in megabytes than in the 128 KiB a reader would ask for, and nobody waits for
/// the first bytes.
const CHUNK: usize = 8 << 20;

/// A node's read-ahead memory, shared by its connections, and what it did.
#[derive(Debug)]
pub struct ReadAheadBudget {
    limit: usize,
    held: Arc<AtomicUsize>,
    /// Bytes read ahead, and bytes of those sent to consumers (metrics).
    pub read_bytes: AtomicU64,
    pub served_bytes: AtomicU64,
}

impl ReadAheadBudget {
    /// A budget of `limit` bytes; 0 turns read-ahead off.
    pub fn new(limit: usize) -> ReadAheadBudget {
        ReadAheadBudget {
            limit,
            held: Arc::default(),
            read_bytes: AtomicU64::new(0),
            served_bytes: AtomicU64::new(0),
        }
    }

    fn hold(&self, bytes: usize) -> Option<Held> {
        self.held
            .fetch_update(Relaxed, Relaxed, |held| {
                (held + bytes <= self.limit).then_some(held + bytes)
            })
            .ok()?;
        Some(Held {
            bytes,
            held: self.held.clone(),
        })
    }
}

/// Bytes counted against the node's budget until dropped.
pub struct Held {
    bytes: usize,
    held: Arc<AtomicUsize>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.held.fetch_sub(self.bytes, Relaxed);
    }
}

/// One connection's read-ahead.
pub struct ReadAhead {
    shared: Arc<Shared>,
    budget: Arc<ReadAheadBudget>,
}

struct Shared {
    shelf: Mutex<Shelf>,
    /// Whether a chunk is being read (set under the shelf's lock).
    reading: watch::Sender<bool>,
}

#[derive(Default)]
struct Shelf {
    /// Counts fetches; a read-ahead planned by an earlier one reads no further chunk.
    generation: u64,
    chunks: Vec<Chunk>,
}

/// Consecutive batches of one partition, read ahead.
struct Chunk {
    replica: Weak<PartitionReplica>,
    located: Vec<(i64, BatchLocation)>,
    pieces: Vec<Bytes>,
    held: Held,
}

impl Shared {
    fn shelf(&self) -> MutexGuard<'_, Shelf> {
        self.shelf.lock().expect("read-ahead lock")
    }
}

impl ReadAhead {
    pub fn new(budget: Arc<ReadAheadBudget>) -> ReadAhead {
        ReadAhead {
            shared: Arc::new(Shared {
                shelf: Mutex::default(),
                reading: watch::Sender::new(false),
            }),
            budget,
        }
    }

    /// Starts a fetch: stops the read-ahead in progress, waits for the chunk it is reading
    /// and hands over what it read, with the fetch's generation.
    pub async fn take(&self) -> (Shelved, u64) {
        let generation = {
            let mut shelf = self.shared.shelf();
            shelf.generation += 1;
            shelf.generation
        };
        let mut reading = self.shared.reading.subscribe();
        // The sender lives in `self.shared`, so this cannot fail.
        let _ = reading.wait_for(|reading| !reading).await;
        let chunks = std::mem::take(&mut self.shared.shelf().chunks);
        (Shelved { chunks }, generation)
    }

    /// A read-ahead of `items`, in order, up to `max_bytes`, to run once the response of
    /// the fetch of `generation` has been read.
    pub fn plan(
        &self,
        generation: u64,
        items: Vec<Item>,
        max_bytes: usize,
    ) -> Option<ReadAheadPlan> {
        (self.budget.limit > 0 && !items.is_empty()).then(|| ReadAheadPlan {
            shared: self.shared.clone(),
            budget: self.budget.clone(),
            generation,
            items,
            max_bytes: max_bytes.min(PER_CONNECTION_MAX),
        })
    }
}

/// What a fetch took off the shelf.
pub struct Shelved {
    chunks: Vec<Chunk>,
}

/// Batches read ahead that a fetch uses: their pieces, how many of the located batches
/// they are, and their hold on the budget (kept until they are sent).
pub struct Used {
    pub pieces: Vec<Bytes>,
    pub batches: usize,
    pub held: Vec<Held>,
}

impl Used {
    /// The bytes of the batches used.
    pub fn bytes(&self) -> usize {
        self.held.iter().map(|h| h.bytes).sum()
    }
}

impl Shelved {
    /// Whether anything was read ahead for `replica`.
    pub fn holds(&self, replica: &Arc<PartitionReplica>) -> bool {
        self.chunks.iter().any(|c| same(&c.replica, replica))
    }

    /// Takes the chunks read ahead for `replica` that hold exactly the first batches of
    /// `located`, in order.
    pub fn take(
        &mut self,
        replica: &Arc<PartitionReplica>,
        located: &[(i64, BatchLocation)],
    ) -> Used {
        let mut used = Used {
            pieces: Vec::new(),
            batches: 0,
            held: Vec::new(),
        };
        while let Some(i) = self.chunks.iter().position(|c| {
            same(&c.replica, replica) && starts_with(&located[used.batches..], &c.located)
        }) {
            let chunk = self.chunks.swap_remove(i);
            used.batches += chunk.located.len();
            used.pieces.extend(chunk.pieces);
            used.held.push(chunk.held);
        }
        used
    }
}

fn same(chunk_replica: &Weak<PartitionReplica>, replica: &Arc<PartitionReplica>) -> bool {
    chunk_replica.as_ptr() == Arc::as_ptr(replica)
}

/// Whether `located` begins with the (non-empty) `chunk`.
fn starts_with(located: &[(i64, BatchLocation)], chunk: &[(i64, BatchLocation)]) -> bool {
    !chunk.is_empty() && located.starts_with(chunk)
}

/// Where a partition's read-ahead starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// After the batch with this base offset, the last one sent.
    After(i64),
    /// At this offset, which the response had no room for.
    At(i64),
}

/// One partition to read ahead: from `next` up to `end` (the high watermark then), at most
/// `max_bytes` (the partition's limit in the fetch).
pub struct Item {
    pub replica: Arc<PartitionReplica>,
    pub next: Next,
    pub end: i64,
    pub max_bytes: usize,
}

/// A read-ahead to run after a response.
pub struct ReadAheadPlan {
    shared: Arc<Shared>,
    budget: Arc<ReadAheadBudget>,
    generation: u64,
    items: Vec<Item>,
    max_bytes: usize,
}

impl ReadAheadPlan {
    /// Reads, a chunk at a time, until done, out of budget, or overtaken by the
    /// connection's next fetch. Blocks: call it on a blocking thread.
    pub fn run(self) {
        if let Err(e) = self.read() {
            tracing::debug!(error = %e, "fetch read-ahead stopped");
        }
    }

    fn read(&self) -> Result<(), StorageError> {
        let mut left = self.max_bytes;
        for item in &self.items {
            let reader = &item.replica.reader;
            if left == 0 {
                return Ok(());
            }
            let limit = item.max_bytes.min(left);
            if limit == 0 {
                continue;
            }
            let located = match item.next {
                Next::After(base) => reader.index().locate_from_base(base + 1, item.end, limit)?,
                Next::At(offset) => reader.locate(offset, item.end, limit)?,
            };
            let mut start = 0;
            while start < located.len() {
                let end = chunk_end(&located, start, CHUNK);
                let bytes: usize = located[start..end]
                    .iter()
                    .map(|(_, l)| l.len as usize)
                    .sum();
                if bytes > left {
                    return Ok(());
                }
                let Some(held) = self.budget.hold(bytes) else {
                    return Ok(());
                };
                let Some(reading) = self.begin_chunk() else {
                    return Ok(());
                };
                let pieces = reader.read_located_pieces(&located[start..end])?;
                // A fetch that started meanwhile waits for this chunk: shelve it for that
                // fetch even so, before saying it is read.
                self.shared.shelf().chunks.push(Chunk {
                    replica: Arc::downgrade(&item.replica),
                    located: located[start..end].to_vec(),
                    pieces,
                    held,
                });
                drop(reading);
                self.budget.read_bytes.fetch_add(bytes as u64, Relaxed);
                left -= bytes;
                start = end;
            }
        }
        Ok(())
    }

    /// Marks a chunk as being read until the guard is dropped, unless a later fetch has
    /// started or the connection has closed (the plan holds the last reference).
    fn begin_chunk(&self) -> Option<Reading<'_>> {
        let shelf = self.shared.shelf();
        let wanted = shelf.generation == self.generation && Arc::strong_count(&self.shared) > 1;
        wanted.then(|| {
            self.shared.reading.send_replace(true);
            Reading(&self.shared)
        })
    }
}

/// A chunk being read: the fetch that stops the read-ahead waits for it. Dropped however
/// the read ends, so that a failed read never leaves a fetch waiting.
struct Reading<'a>(&'a Shared);

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.0.reading.send_replace(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: i64, raft_index: u64) -> (i64, BatchLocation) {
        (
            base,
            BatchLocation {
                raft_index,
                position: 0,
                len: 100,
            },
        )
    }

    #[test]
    fn a_chunk_is_used_only_where_it_holds_the_next_located_batches() {
        let located = [at(0, 1), at(5, 2), at(9, 3)];
        assert!(starts_with(&located, &located[..2]));
        assert!(starts_with(&located[2..], &[at(9, 3)]));
        assert!(!starts_with(&located, &[at(5, 2)]), "not the first batch");
        assert!(
            !starts_with(&located, &[at(0, 7)]),
            "same offset, another entry: not the same batch"
        );
        assert!(
            !starts_with(&located[..1], &located[..2]),
            "more than the fetch has room for"
        );
        assert!(!starts_with(&located, &[]));
    }

    #[test]
    fn the_budget_is_shared_and_given_back_on_drop() {
        let budget = ReadAheadBudget::new(250);
        let first = budget.hold(200).expect("within the limit");
        assert!(budget.hold(100).is_none(), "over the limit");
        drop(first);
        assert!(budget.hold(250).is_some());
        assert!(ReadAheadBudget::new(0).hold(1).is_none(), "0 turns it off");
    }
}
