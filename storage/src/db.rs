//! Opening the node's RocksDB and the few primitives every other module builds on.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, DBRecoveryMode,
    Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions, DB,
};

use tokio::sync::watch;

use crate::group_commit::GroupCommit;
use crate::keys::{self, RaftGroupId};
use crate::{PartitionLog, RaftLog, Result};

pub(crate) const CF_RAFT_LOG: &str = "raft_log";
pub(crate) const CF_RAFT_STATE: &str = "raft_state";
pub(crate) const CF_STATE: &str = "state";

/// Tunables for the node's RocksDB.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Directory of the database (created if missing).
    pub path: PathBuf,
    /// Memory all memtables may use together.
    pub memtable_budget_bytes: usize,
    /// WAL size that forces a flush of the families holding its oldest data.
    pub max_wal_bytes: u64,
    /// Whether group commit fsyncs the WAL. Only the Jepsen self-check's skip-fsync mode
    /// turns it off, to show that the harness notices acknowledged writes lost in a crash.
    pub sync_wal: bool,
    /// Direct I/O for flushes, compactions and reads: `None` uses it where the file system
    /// takes it (a probe at open), `Some(false)` never, `Some(true)` always (opening fails
    /// where the file system refuses it).
    pub direct_io: Option<bool>,
}

impl StoreOptions {
    pub fn new(path: impl AsRef<Path>) -> StoreOptions {
        StoreOptions {
            path: path.as_ref().to_path_buf(),
            memtable_budget_bytes: 256 << 20,
            max_wal_bytes: 1 << 30,
            sync_wal: true,
            direct_io: None,
        }
    }
}

/// Counters a node exports as metrics.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// WAL syncs performed by the group-commit flusher.
    pub wal_syncs: AtomicU64,
    /// Appends made durable by those syncs (appends per sync = the group-commit factor).
    pub synced_appends: AtomicU64,
    /// Bytes written to the Raft log.
    pub raft_log_bytes: AtomicU64,
    /// Bytes written to the state family by state machines.
    pub state_bytes: AtomicU64,
}

/// The first write the disk refused, for whoever must stop the node (see
/// [`Store::failure`]).
#[derive(Clone)]
pub(crate) struct Failure(Arc<watch::Sender<Option<String>>>);

impl Failure {
    fn new() -> Failure {
        Failure(Arc::new(watch::Sender::new(None)))
    }

    /// Records `error` unless an earlier failure was recorded.
    pub(crate) fn record(&self, error: &dyn std::fmt::Display) {
        self.0.send_if_modified(|first| {
            if first.is_some() {
                return false;
            }
            tracing::error!(%error, "the disk refused a write; this node cannot go on");
            *first = Some(error.to_string());
            true
        });
    }
}

/// The node's one RocksDB instance. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: Arc<DB>,
    group_commit: GroupCommit,
    stats: Arc<StoreStats>,
    failure: Failure,
}

fn family(name: &str, write_buffer: usize, blobs: bool) -> ColumnFamilyDescriptor {
    let mut opts = Options::default();
    opts.set_write_buffer_size(write_buffer);
    opts.set_compression_type(DBCompressionType::None);
    opts.set_level_compaction_dynamic_level_bytes(true);
    let mut table = BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    opts.set_block_based_table_factory(&table);
    if blobs {
        // Entries (record batches) go to blob files when their memtable is flushed and
        // stay there: compaction rewrites only the small keys, never the payload, so each
        // payload byte reaches the disk twice (WAL, blob file).
        opts.set_enable_blob_files(true);
        opts.set_min_blob_size(256);
        opts.set_blob_file_size(256 << 20);
        opts.set_enable_blob_gc(false);
    }
    ColumnFamilyDescriptor::new(name, opts)
}

/// Whether files under `dir` take direct I/O: a probe file opened with `O_DIRECT` gets one
/// aligned block written and read back. Only the errors that mean "not supported here"
/// (some FUSE file systems, older tmpfs) answer `false`; any other is the disk's problem and
/// is returned.
#[cfg(target_os = "linux")]
fn supports_direct_io(dir: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    const BLOCK: usize = 4096;
    let unsupported = |e: &std::io::Error| {
        matches!(
            e.raw_os_error(),
            Some(libc::EINVAL) | Some(libc::EOPNOTSUPP)
        )
    };
    let probe = dir.join("DIRECT_IO_PROBE");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe);
    let result = file.and_then(|file| {
        // Direct I/O needs a buffer aligned to the block size: take one from a larger one.
        let mut buffer = vec![0u8; 2 * BLOCK];
        let start = buffer.as_ptr().align_offset(BLOCK);
        let block = &mut buffer[start..start + BLOCK];
        block.fill(0x5a);
        file.write_all_at(block, 0)?;
        block.fill(0);
        file.read_exact_at(block, 0)?;
        if block.iter().any(|b| *b != 0x5a) {
            return Err(std::io::Error::other(
                "a block written with O_DIRECT read back different",
            ));
        }
        Ok(true)
    });
    let _ = std::fs::remove_file(&probe);
    match result {
        Err(e) if unsupported(&e) => Ok(false),
        other => other,
    }
}

#[cfg(not(target_os = "linux"))]
fn supports_direct_io(_dir: &Path) -> std::io::Result<bool> {
    Ok(false)
}

impl Store {
    /// Opens (or creates) the database and starts its group-commit flusher.
    pub fn open(options: &StoreOptions) -> Result<Store> {
        std::fs::create_dir_all(&options.path)?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.increase_parallelism(2);
        opts.set_max_background_jobs(2);
        opts.set_db_write_buffer_size(options.memtable_budget_bytes);
        opts.set_max_total_wal_size(options.max_wal_bytes);
        opts.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
        opts.set_bytes_per_sync(1 << 20);
        // Flushes write every payload byte a second time (into blob files). Through the page
        // cache that copy cost half the node's CPU when producing flat out (a VM backs fresh
        // pages on first touch: 2 GB per core-second); with direct I/O the disk takes it by
        // DMA. Reads go direct too: through the page cache they would pay the same first
        // touch for data that was never cached, and catch-up reads measured faster without.
        // Recent batches are read from the memtables; older ones, and the state family's
        // index blocks on a block-cache miss, from the disk.
        let direct = match options.direct_io {
            Some(direct) => direct,
            None => supports_direct_io(&options.path)?,
        };
        opts.set_use_direct_io_for_flush_and_compaction(direct);
        opts.set_use_direct_reads(direct);
        if !direct {
            tracing::info!(path = %options.path.display(), "direct I/O is off here: using the page cache");
        }
        opts.set_enable_pipelined_write(true);
        // The WAL is synced after every round of appends. Syncing a file that has grown
        // also writes its inode, a second I/O the sync waits for (ext4 without a journal
        // does it synchronously); a recycled WAL is overwritten within its old size, so
        // the sync writes the data alone. RocksDB recycles only if no write skips the WAL.
        opts.set_recycle_log_file_num(4);
        // RocksDB starts a new info log (LOG, the old one kept as LOG.old.<time>) at every
        // open and keeps 1,000 by default: a node restarted often piles them up.
        opts.set_keep_log_file_num(4);
        let db = DB::open_cf_descriptors(
            &opts,
            &options.path,
            vec![
                family(CF_RAFT_LOG, options.memtable_budget_bytes / 2, true),
                family(CF_RAFT_STATE, 4 << 20, false),
                family(CF_STATE, options.memtable_budget_bytes / 8, false),
            ],
        )?;
        let db = Arc::new(db);
        let stats = Arc::new(StoreStats::default());
        let failure = Failure::new();
        let group_commit =
            GroupCommit::start(&db, stats.clone(), failure.clone(), options.sync_wal);
        Ok(Store {
            db,
            group_commit,
            stats,
            failure,
        })
    }

    pub(crate) fn cf(&self, name: &str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column families are created at open")
    }

    /// The flusher that makes Raft log appends durable.
    pub fn group_commit(&self) -> &GroupCommit {
        &self.group_commit
    }

    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    /// Becomes `Some(error)` at the first write the disk refuses (a full disk, an I/O
    /// error). RocksDB then takes no more writes until it is reopened, and the Raft groups
    /// whose appends failed have stopped, so the node must stop too, as a Kafka broker
    /// does when its last log directory fails: the other replicas then take over.
    pub fn failure(&self) -> watch::Receiver<Option<String>> {
        self.failure.0.subscribe()
    }

    /// A group's Raft log and hard state.
    pub fn raft_log(&self, group: RaftGroupId) -> RaftLog {
        RaftLog::new(self.clone(), group)
    }

    /// A partition's stored batches and indexes.
    pub fn partition_log(&self, group: RaftGroupId) -> PartitionLog {
        PartitionLog::new(self.clone(), group)
    }

    /// Writes through the WAL, not synced here: durability comes from [`GroupCommit`] (for
    /// state-machine writes, from the Raft log entries ahead of them in the WAL).
    pub(crate) fn write_logged(&self, batch: WriteBatch) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(false);
        self.db
            .write_opt(batch, &wo)
            .inspect_err(|e| self.failure.record(e))?;
        Ok(())
    }

    /// Bytes the file system holding the database still offers an unprivileged user, for
    /// the message that stops a node whose disk refused a write.
    pub fn available_bytes(&self) -> std::io::Result<u64> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(self.db.path().as_os_str().as_bytes())?;
        let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `path` is a NUL-terminated string and `stat` a buffer statvfs fills in.
        if unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: statvfs returned 0, so it filled `stat` in.
        let stat = unsafe { stat.assume_init() };
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// A batch of state-machine writes, applied atomically by [`Store::write_state`].
    pub fn state_batch(&self) -> StateBatch {
        StateBatch {
            store: self.clone(),
            batch: WriteBatch::default(),
            bytes: 0,
        }
    }

    /// Applies state-machine writes through the WAL, unsynced (see the crate docs: the Raft
    /// log is what makes them durable, and [`Store::flush_state`] runs before any of it is
    /// purged).
    pub fn write_state(&self, batch: StateBatch) -> Result<()> {
        self.stats
            .state_bytes
            .fetch_add(batch.bytes as u64, Ordering::Relaxed);
        self.write_logged(batch.batch)
    }

    /// Persists every state-machine write made so far (a memtable flush), so the Raft log
    /// entries they came from may be purged.
    pub fn flush_state(&self) -> Result<()> {
        self.db
            .flush_cf(self.cf(CF_STATE))
            .inspect_err(|e| self.failure.record(e))?;
        Ok(())
    }

    pub fn get_state(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(CF_STATE), key)?)
    }

    /// Calls `visit` with every `state` key and value in `[start, end)`, in key order,
    /// until it returns `false`.
    pub fn scan_state(
        &self,
        start: &[u8],
        end: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(end.to_vec());
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_STATE),
            ro,
            IteratorMode::From(start, Direction::Forward),
        );
        for item in iter {
            let (k, v) = item?;
            if !visit(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    /// Removes every trace of a group: Raft log, hard state and state-machine data. Used
    /// when a partition's topic is deleted or the partition moves off this node.
    pub fn delete_group(&self, group: RaftGroupId) -> Result<()> {
        let (start, end) = (keys::group_start(group), keys::group_end(group));
        let mut batch = WriteBatch::default();
        for cf in [CF_RAFT_LOG, CF_RAFT_STATE, CF_STATE] {
            batch.delete_range_cf(self.cf(cf), start, end);
        }
        // Through the WAL, so a deleted group's state cannot reappear after a crash.
        self.write_logged(batch)
    }

    /// Every `state` key and value of `group`: a state machine's whole state, for a
    /// snapshot.
    pub fn group_state(&self, group: RaftGroupId) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        self.scan_state(
            &keys::group_start(group),
            &keys::group_end(group),
            |k, v| {
                out.push((k.to_vec(), v.to_vec()));
                true
            },
        )?;
        Ok(out)
    }

    /// Installs a snapshot of `group`, atomically: its state becomes `state` (keys of the
    /// group only), its log entries below `first_entry` go, `entries` are written, and the
    /// log's purge point becomes `purge_point`. Later entries the group holds stay; Raft
    /// decides about those.
    pub fn install_group(
        &self,
        group: RaftGroupId,
        state: &[(Vec<u8>, Vec<u8>)],
        first_entry: u64,
        entries: &[(u64, impl AsRef<[u8]>)],
        purge_point: &[u8],
    ) -> Result<()> {
        let (start, end) = (keys::group_start(group), keys::group_end(group));
        if let Some((key, _)) = state.iter().find(|(k, _)| !k.starts_with(&start)) {
            return Err(crate::StorageError::Corrupt {
                what: "snapshot",
                detail: format!("key {key:02x?} is not group {group}'s"),
            });
        }
        let mut batch = WriteBatch::default();
        let state_cf = self.cf(CF_STATE);
        batch.delete_range_cf(state_cf, start, end);
        for (key, value) in state {
            batch.put_cf(state_cf, key, value);
        }
        let log_cf = self.cf(CF_RAFT_LOG);
        batch.delete_range_cf(log_cf, &start[..], &keys::raft_log(group, first_entry)[..]);
        for (index, entry) in entries {
            batch.put_cf(log_cf, keys::raft_log(group, *index), entry);
        }
        batch.put_cf(
            self.cf(CF_RAFT_STATE),
            keys::raft_state(group, keys::RAFT_PURGED),
            purge_point,
        );
        self.write_logged(batch)
    }

    /// Whether any key of `group` exists in the Raft state family (the group was created
    /// on this node before).
    pub fn group_exists(&self, group: RaftGroupId) -> Result<bool> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(keys::group_end(group).to_vec());
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(CF_RAFT_STATE), ro);
        iter.seek(keys::group_start(group));
        Ok(iter.valid())
    }

    /// A RocksDB statistic by property name (for metrics), if known.
    pub fn property(&self, name: &str) -> Option<u64> {
        self.db.property_int_value(name).ok().flatten()
    }
}

/// State-machine writes collected during one apply round.
pub struct StateBatch {
    store: Store,
    batch: WriteBatch,
    bytes: usize,
}

impl StateBatch {
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.bytes += key.len() + value.len();
        self.batch.put_cf(self.store.cf(CF_STATE), key, value);
    }

    pub fn delete(&mut self, key: &[u8]) {
        self.batch.delete_cf(self.store.cf(CF_STATE), key);
    }

    /// Deletes `[start, end)`.
    pub fn delete_range(&mut self, start: &[u8], end: &[u8]) {
        self.batch
            .delete_range_cf(self.store.cf(CF_STATE), start, end);
    }

    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn the_direct_io_probe_reports_a_broken_directory_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(
            supports_direct_io(&missing).is_err(),
            "a directory that cannot be written is an error, not a file system without direct I/O"
        );
        supports_direct_io(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// Set in the child process of [`synced_writes_in_recycled_wal_files_survive_a_crash`]:
    /// the directory it writes to before it dies.
    const CRASH_DIR: &str = "STRAND_STORAGE_TEST_CRASH_DIR";
    const CRASH_ENTRIES: u64 = 1200;

    fn crash_entry(index: u64) -> Vec<u8> {
        vec![index as u8; 20_000 + index as usize]
    }

    fn crash_options(dir: &Path) -> StoreOptions {
        // Small memtables and WAL limit: the WAL rolls over, and old files are recycled,
        // many times within a few megabytes.
        StoreOptions {
            memtable_budget_bytes: 4 << 20,
            max_wal_bytes: 8 << 20,
            ..StoreOptions::new(dir)
        }
    }

    /// The child's part: appends and state writes, each round synced, then death without
    /// closing the database (nothing flushed on the way out).
    fn write_then_crash(dir: &Path) -> ! {
        let store = Store::open(&crash_options(dir)).unwrap();
        let log = store.raft_log(9);
        for index in 1..=CRASH_ENTRIES {
            log.append([(index, crash_entry(index).as_slice())])
                .unwrap();
            let mut state = store.state_batch();
            state.put(b"applied", &index.to_be_bytes());
            store.write_state(state).unwrap();
            if index % 10 == 0 {
                let (synced, wait) = std::sync::mpsc::channel();
                store
                    .group_commit()
                    .after_sync(move |r| synced.send(r).unwrap());
                wait.recv().unwrap().unwrap();
            }
        }
        std::process::abort();
    }

    /// WAL files are recycled (see [`Store::open`]): a recovery must read a reused file up to
    /// where its new records end and take nothing of the old ones behind them.
    #[test]
    fn synced_writes_in_recycled_wal_files_survive_a_crash() {
        if let Some(dir) = std::env::var_os(CRASH_DIR) {
            write_then_crash(Path::new(&dir));
        }
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "db::tests::synced_writes_in_recycled_wal_files_survive_a_crash",
                "--nocapture",
            ])
            .env(CRASH_DIR, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!child.success(), "the writer dies instead of closing");
        let info_log = std::fs::read_to_string(dir.path().join("LOG")).unwrap();
        let recycled = info_log
            .find("to recycle list")
            .expect("the writer had WAL files to recycle");
        assert!(
            info_log[recycled..].contains("New memtable created with log file"),
            "a WAL rolled over after a file was up for recycling"
        );

        let store = Store::open(&crash_options(dir.path())).unwrap();
        let entries = store.raft_log(9).read(1, CRASH_ENTRIES + 1).unwrap();
        assert_eq!(
            entries.len() as u64,
            CRASH_ENTRIES,
            "every synced entry is back"
        );
        for (index, entry) in entries {
            assert!(entry == crash_entry(index), "entry {index} intact");
        }
        let applied = store.get_state(b"applied").unwrap().unwrap();
        assert_eq!(applied, CRASH_ENTRIES.to_be_bytes(), "the state write too");
    }
}
