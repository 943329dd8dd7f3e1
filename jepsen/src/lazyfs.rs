//! A FUSE filesystem that forgets what was never fsynced: the "lost un-fsynced writes"
//! fault. A node's data directory is this filesystem, mounted over a real directory (the
//! disk). Writes stay in memory, as in a page cache, until `fsync`/`fdatasync` of their
//! file carries them to the disk; [`LazyFs::lose_unsynced`], called while the node is
//! dead, throws every unsynced write away, as a power cut would. A process that fsyncs
//! what it acknowledges loses nothing acknowledged; one that skips an fsync does.
//!
//! The model, and where it is kinder than a real power cut: file data is lost at page
//! granularity (what was fsynced survives exactly, the rest reverts to the disk's
//! content); file creation, deletion, renames and truncation are durable at once, as if
//! every directory were fsynced after each change. So the fault catches a missing fsync of
//! data (the WAL), not a missing fsync of a directory.
//!
//! Files are opened with direct I/O, so the kernel keeps no page cache of its own that
//! could still show lost data after a crash, and attributes are never cached.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation,
    INodeNo, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};

/// The unit in which unsynced data is kept and lost.
const PAGE: u64 = 4096;
/// Nothing is cached by the kernel: every lookup and stat comes here.
const NO_CACHE: Duration = Duration::ZERO;

/// A mounted lazy filesystem. Unmounted when dropped.
pub struct LazyFs {
    state: Arc<Mutex<State>>,
    _session: BackgroundSession,
}

impl LazyFs {
    /// Mounts a lazy view of `disk` (created if missing) at `mountpoint` (likewise).
    pub fn mount(disk: &Path, mountpoint: &Path) -> anyhow::Result<LazyFs> {
        fs::create_dir_all(disk)?;
        fs::create_dir_all(mountpoint)?;
        let state = Arc::new(Mutex::new(State::new(disk.to_path_buf())));
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("strand-lazyfs".into()),
            MountOption::DefaultPermissions,
        ];
        let session = fuser::spawn_mount(
            Filesystem {
                state: state.clone(),
            },
            mountpoint,
            &config,
        )
        .with_context(|| {
            format!(
                "cannot mount the lazy filesystem at {} (FUSE needs /dev/fuse and fusermount3; \
                 scripts/setup.sh installs fuse3)",
                mountpoint.display()
            )
        })?;
        Ok(LazyFs {
            state,
            _session: session,
        })
    }

    /// Throws away every write not yet fsynced. Call it only while no process uses the
    /// filesystem (after kill -9), as a crash would.
    pub fn lose_unsynced(&self) -> LossReport {
        lock(&self.state).lose_unsynced()
    }
}

/// What one crash threw away.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LossReport {
    pub files: usize,
    pub pages: usize,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic in a FUSE callback leaves the maps as they were between two operations.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes to one file since it was last fsynced.
struct Unsynced {
    /// The file's size as its users see it.
    size: u64,
    /// Whole pages by page number, each as its users last wrote it.
    pages: HashMap<u64, Box<[u8]>>,
}

struct State {
    disk: PathBuf,
    /// Inode numbers are ours, handed out by path (relative to the disk) on lookup.
    paths: HashMap<u64, PathBuf>,
    inodes: HashMap<PathBuf, u64>,
    next_inode: u64,
    /// Open files on the disk, by file handle.
    handles: HashMap<u64, Arc<File>>,
    next_handle: u64,
    unsynced: HashMap<u64, Unsynced>,
}

type Answer<T> = Result<T, Errno>;

fn io(e: std::io::Error) -> Errno {
    Errno::from(e)
}

impl State {
    fn new(disk: PathBuf) -> State {
        State {
            disk,
            paths: HashMap::from([(INodeNo::ROOT.0, PathBuf::new())]),
            inodes: HashMap::from([(PathBuf::new(), INodeNo::ROOT.0)]),
            next_inode: INodeNo::ROOT.0 + 1,
            handles: HashMap::new(),
            next_handle: 1,
            unsynced: HashMap::new(),
        }
    }

    fn lose_unsynced(&mut self) -> LossReport {
        let report = LossReport {
            files: self.unsynced.len(),
            pages: self.unsynced.values().map(|u| u.pages.len()).sum(),
        };
        self.unsynced.clear();
        report
    }

    fn path(&self, ino: INodeNo) -> Answer<&PathBuf> {
        self.paths.get(&ino.0).ok_or(Errno::ENOENT)
    }

    fn on_disk(&self, relative: &Path) -> PathBuf {
        self.disk.join(relative)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Answer<PathBuf> {
        Ok(self.path(parent)?.join(name))
    }

    fn inode(&mut self, relative: &Path) -> u64 {
        if let Some(ino) = self.inodes.get(relative) {
            return *ino;
        }
        let ino = self.next_inode;
        self.next_inode += 1;
        self.paths.insert(ino, relative.to_path_buf());
        self.inodes.insert(relative.to_path_buf(), ino);
        ino
    }

    /// Removes `name` from `parent` on the disk with `remove` (of a file, or of a
    /// directory) and forgets its inode.
    fn remove(
        &mut self,
        parent: INodeNo,
        name: &OsStr,
        remove: fn(&Path) -> std::io::Result<()>,
    ) -> Answer<()> {
        let relative = self.child(parent, name)?;
        remove(&self.on_disk(&relative)).map_err(io)?;
        self.forget_path(&relative);
        Ok(())
    }

    fn forget_path(&mut self, relative: &Path) {
        if let Some(ino) = self.inodes.remove(relative) {
            self.paths.remove(&ino);
            self.unsynced.remove(&ino);
        }
    }

    /// Attributes as the users see them: the disk's, with the unsynced size.
    fn attr(&mut self, relative: &Path) -> Answer<FileAttr> {
        let meta = fs::symlink_metadata(self.on_disk(relative)).map_err(io)?;
        let ino = self.inode(relative);
        let size = self.unsynced.get(&ino).map_or(meta.len(), |u| u.size);
        let time = |secs: i64, nanos: i64| {
            UNIX_EPOCH + Duration::new(secs.max(0) as u64, nanos.clamp(0, 999_999_999) as u32)
        };
        let kind = if meta.is_dir() {
            FileType::Directory
        } else if meta.file_type().is_symlink() {
            FileType::Symlink
        } else {
            FileType::RegularFile
        };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: time(meta.atime(), meta.atime_nsec()),
            mtime: time(meta.mtime(), meta.mtime_nsec()),
            ctime: time(meta.ctime(), meta.ctime_nsec()),
            crtime: time(meta.ctime(), meta.ctime_nsec()),
            kind,
            perm: (meta.mode() & 0o7777) as u16,
            nlink: meta.nlink() as u32,
            uid: meta.uid(),
            gid: meta.gid(),
            rdev: meta.rdev() as u32,
            blksize: PAGE as u32,
            flags: 0,
        })
    }

    fn file(&self, fh: FileHandle) -> Answer<Arc<File>> {
        self.handles.get(&fh.0).cloned().ok_or(Errno::EBADF)
    }

    fn add_handle(&mut self, file: File) -> FileHandle {
        let fh = self.next_handle;
        self.next_handle += 1;
        self.handles.insert(fh, Arc::new(file));
        FileHandle(fh)
    }

    /// The unsynced state of `ino`, started from the disk's size.
    fn unsynced_of(&mut self, ino: u64, file: &File) -> Answer<&mut Unsynced> {
        Ok(match self.unsynced.entry(ino) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(Unsynced {
                size: file.metadata().map_err(io)?.len(),
                pages: HashMap::new(),
            }),
        })
    }

    fn write(&mut self, ino: u64, file: &File, offset: u64, data: &[u8]) -> Answer<()> {
        let unsynced = self.unsynced_of(ino, file)?;
        let end = offset + data.len() as u64;
        let mut at = offset;
        while at < end {
            let number = at / PAGE;
            let page = match unsynced.pages.entry(number) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(disk_page(file, number, unsynced.size)?),
            };
            let within = (at - number * PAGE) as usize;
            let n = (PAGE as usize - within).min((end - at) as usize);
            let from = (at - offset) as usize;
            page[within..within + n].copy_from_slice(&data[from..from + n]);
            at += n as u64;
        }
        unsynced.size = unsynced.size.max(end);
        Ok(())
    }

    fn read(&self, ino: u64, file: &File, offset: u64, size: u32) -> Answer<Vec<u8>> {
        let Some(unsynced) = self.unsynced.get(&ino) else {
            let mut buf = vec![0u8; size as usize];
            let n = read_at_most(file, &mut buf, offset)?;
            buf.truncate(n);
            return Ok(buf);
        };
        let end = (offset + size as u64).min(unsynced.size);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut at = offset;
        while at < end {
            let number = at / PAGE;
            let within = (at - number * PAGE) as usize;
            let n = (PAGE as usize - within).min((end - at) as usize);
            match unsynced.pages.get(&number) {
                Some(page) => out.extend_from_slice(&page[within..within + n]),
                None => out.extend_from_slice(
                    &disk_page(file, number, unsynced.size)?[within..within + n],
                ),
            }
            at += n as u64;
        }
        Ok(out)
    }

    /// Carries the unsynced writes of `ino` to the disk and fsyncs it there.
    fn sync(&mut self, ino: u64, file: &File) -> Answer<()> {
        if let Some(unsynced) = self.unsynced.remove(&ino) {
            for (number, page) in &unsynced.pages {
                let start = number * PAGE;
                if start >= unsynced.size {
                    continue;
                }
                let len = (unsynced.size - start).min(PAGE) as usize;
                file.write_all_at(&page[..len], start).map_err(io)?;
            }
            file.set_len(unsynced.size).map_err(io)?;
        }
        file.sync_all().map_err(io)
    }

    /// A truncation (or extension) is durable at once; unsynced pages past the new end go.
    fn set_size(&mut self, ino: u64, file: &File, size: u64) -> Answer<()> {
        file.set_len(size).map_err(io)?;
        if let Some(unsynced) = self.unsynced.get_mut(&ino) {
            unsynced.size = size;
            unsynced.pages.retain(|number, _| number * PAGE < size);
            if let Some(last) = unsynced.pages.get_mut(&(size / PAGE)) {
                last[(size % PAGE) as usize..].fill(0);
            }
        }
        Ok(())
    }

    fn open_on_disk(&self, relative: &Path) -> Answer<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.on_disk(relative))
            .map_err(io)
    }
}

/// Page `number` of `file` as on the disk, zero past its end (or past `size`).
fn disk_page(file: &File, number: u64, size: u64) -> Answer<Box<[u8]>> {
    let mut page = vec![0u8; PAGE as usize].into_boxed_slice();
    let start = number * PAGE;
    if start < size {
        let want = (size - start).min(PAGE) as usize;
        read_at_most(file, &mut page[..want], start)?;
    }
    Ok(page)
}

fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> Answer<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    Ok(done)
}

/// The FUSE side: each callback locks the state, does its work and replies.
struct Filesystem {
    state: Arc<Mutex<State>>,
}

impl Filesystem {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

fn reply_entry(reply: ReplyEntry, answer: Answer<FileAttr>) {
    match answer {
        Ok(attr) => reply.entry(&NO_CACHE, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn reply_empty(reply: ReplyEmpty, answer: Answer<()>) {
    match answer {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl fuser::Filesystem for Filesystem {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut state = self.state();
        let answer = state.child(parent, name).and_then(|p| state.attr(&p));
        reply_entry(reply, answer);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let mut state = self.state();
        match state.path(ino).cloned().and_then(|p| state.attr(&p)) {
            Ok(attr) => reply.attr(&NO_CACHE, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut state = self.state();
        let answer = (|| {
            let relative = state.path(ino)?.clone();
            if let Some(mode) = mode {
                fs::set_permissions(state.on_disk(&relative), fs::Permissions::from_mode(mode))
                    .map_err(io)?;
            }
            if let Some(size) = size {
                let file = match fh {
                    Some(fh) => state.file(fh)?,
                    None => Arc::new(state.open_on_disk(&relative)?),
                };
                state.set_size(ino.0, &file, size)?;
            }
            state.attr(&relative)
        })();
        match answer {
            Ok(attr) => reply.attr(&NO_CACHE, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut state = self.state();
        let answer = (|| {
            let relative = state.child(parent, name)?;
            let path = state.on_disk(&relative);
            fs::create_dir(&path).map_err(io)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(mode & !umask)).map_err(io)?;
            state.attr(&relative)
        })();
        reply_entry(reply, answer);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let answer = self.state().remove(parent, name, |p| fs::remove_file(p));
        reply_empty(reply, answer);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let answer = self.state().remove(parent, name, |p| fs::remove_dir(p));
        reply_empty(reply, answer);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        // RENAME_NOREPLACE and RENAME_EXCHANGE are not modelled.
        if !flags.is_empty() {
            return reply.error(Errno::EINVAL);
        }
        let mut state = self.state();
        let answer = (|| {
            let from = state.child(parent, name)?;
            let to = state.child(newparent, newname)?;
            if from == to {
                return Ok(());
            }
            fs::rename(state.on_disk(&from), state.on_disk(&to)).map_err(io)?;
            // The replaced file is gone; the moved one (and, for a directory, everything
            // under it) keeps its inodes under the new path.
            state.forget_path(&to);
            let moved: Vec<(PathBuf, u64)> = state
                .inodes
                .iter()
                .filter(|(path, _)| path.starts_with(&from))
                .map(|(path, ino)| (path.clone(), *ino))
                .collect();
            for (old, ino) in moved {
                let under = old.strip_prefix(&from).expect("under from");
                // (`join` of an empty path would add a trailing slash.)
                let new = if under.as_os_str().is_empty() {
                    to.clone()
                } else {
                    to.join(under)
                };
                state.inodes.remove(&old);
                state.inodes.insert(new.clone(), ino);
                state.paths.insert(ino, new);
            }
            Ok(())
        })();
        reply_empty(reply, answer);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut state = self.state();
        let answer = (|| {
            let relative = state.path(ino)?.clone();
            let file = state.open_on_disk(&relative)?;
            if flags.0 & libc::O_TRUNC != 0 {
                state.set_size(ino.0, &file, 0)?;
            }
            Ok(state.add_handle(file))
        })();
        match answer {
            Ok(fh) => reply.opened(fh, FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut state = self.state();
        let answer = (|| {
            let relative = state.child(parent, name)?;
            let mut options = OpenOptions::new();
            options.read(true).write(true).mode(mode & !umask);
            if flags & libc::O_EXCL != 0 {
                options.create_new(true);
            } else {
                options.create(true);
            }
            let file = options.open(state.on_disk(&relative)).map_err(io)?;
            let ino = state.inode(&relative);
            if flags & libc::O_TRUNC != 0 {
                state.set_size(ino, &file, 0)?;
            }
            let attr = state.attr(&relative)?;
            Ok((attr, state.add_handle(file)))
        })();
        match answer {
            Ok((attr, fh)) => reply.created(
                &NO_CACHE,
                &attr,
                Generation(0),
                fh,
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let state = self.state();
        match state
            .file(fh)
            .and_then(|file| state.read(ino.0, &file, offset, size))
        {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut state = self.state();
        match state
            .file(fh)
            .and_then(|file| state.write(ino.0, &file, offset, data))
        {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        // close() is no fsync: unsynced writes stay unsynced.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.state().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state();
        let answer = state.file(fh).and_then(|file| state.sync(ino.0, &file));
        reply_empty(reply, answer);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut state = self.state();
        let answer = (|| {
            let relative = state.path(ino)?.clone();
            let mut entries = vec![
                (ino.0, FileType::Directory, ".".into()),
                (ino.0, FileType::Directory, "..".into()),
            ];
            let mut listed: Vec<_> = fs::read_dir(state.on_disk(&relative))
                .map_err(io)?
                .filter_map(Result::ok)
                .collect();
            listed.sort_by_key(|e| e.file_name());
            for entry in listed {
                let kind = match entry.file_type() {
                    Ok(t) if t.is_dir() => FileType::Directory,
                    Ok(t) if t.is_symlink() => FileType::Symlink,
                    _ => FileType::RegularFile,
                };
                let child = state.inode(&relative.join(entry.file_name()));
                entries.push((child, kind, entry.file_name()));
            }
            Ok(entries)
        })();
        match answer {
            Ok(entries) => {
                for (i, (child, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
                    if reply.add(INodeNo(*child), i as u64 + 1, *kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Directory changes are durable at once in this model (see the module docs).
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let disk = self.state().disk.clone();
        match nix_statvfs(&disk) {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                s.f_namemax as u32,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        // Preallocation that keeps the size (RocksDB's) changes nothing a reader can see;
        // holes and zeroed ranges are not modelled (RocksDB ignores their failure).
        if mode == libc::FALLOC_FL_KEEP_SIZE {
            return reply.ok();
        }
        if mode != 0 {
            return reply.error(Errno::EOPNOTSUPP);
        }
        let mut state = self.state();
        let answer = (|| {
            let file = state.file(fh)?;
            let size = state
                .unsynced
                .get(&ino.0)
                .map_or(file.metadata().map_err(io)?.len(), |u| u.size);
            if offset + length > size {
                state.set_size(ino.0, &file, offset + length)?;
            }
            Ok(())
        })();
        reply_empty(reply, answer);
    }
}

fn nix_statvfs(path: &Path) -> Answer<libc::statvfs> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let mut out = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a valid C string and `out` is a valid place for the answer.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), out.as_mut_ptr()) };
    if rc != 0 {
        return Err(io(std::io::Error::last_os_error()));
    }
    // SAFETY: statvfs succeeded, so it filled `out`.
    Ok(unsafe { out.assume_init() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Mounts a lazy filesystem in a temporary directory (FUSE is part of the test set-up:
    /// scripts/setup.sh installs it).
    fn mounted() -> (tempfile::TempDir, LazyFs, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let mountpoint = dir.path().join("mnt");
        let fs = LazyFs::mount(&dir.path().join("disk"), &mountpoint)
            .unwrap_or_else(|e| panic!("{e:#}"));
        (dir, fs, mountpoint)
    }

    #[test]
    fn a_crash_keeps_what_was_fsynced_and_loses_the_rest() {
        let (_dir, lazy, mnt) = mounted();
        let path = mnt.join("wal");
        let mut file = File::create(&path).unwrap();
        file.write_all(b"synced.").unwrap();
        file.sync_data().unwrap();
        file.write_all(b" unsynced").unwrap();
        assert_eq!(
            fs::read(&path).unwrap(),
            b"synced. unsynced",
            "readers see unsynced data"
        );
        drop(file);
        let lost = lazy.lose_unsynced();
        assert_eq!(lost.files, 1);
        assert_eq!(fs::read(&path).unwrap(), b"synced.");

        // A file never fsynced keeps its name (directories are durable) but no data.
        fs::write(mnt.join("fresh"), vec![7u8; 10_000]).unwrap();
        fs::create_dir(mnt.join("dir")).unwrap();
        fs::rename(mnt.join("fresh"), mnt.join("dir/renamed")).unwrap();
        assert_eq!(fs::read(mnt.join("dir/renamed")).unwrap().len(), 10_000);
        lazy.lose_unsynced();
        assert_eq!(fs::read(mnt.join("dir/renamed")).unwrap().len(), 0);
        assert!(!mnt.join("fresh").exists());
    }

    #[test]
    fn overwrites_across_pages_and_truncation_read_back_as_written() {
        let (_dir, lazy, mnt) = mounted();
        let path = mnt.join("data");
        let mut expected = vec![1u8; 3 * PAGE as usize + 100];
        fs::write(&path, &expected).unwrap();
        File::open(&path).unwrap().sync_all().unwrap();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        let patch = vec![9u8; PAGE as usize + 10];
        file.write_all_at(&patch, PAGE - 5).unwrap();
        expected[PAGE as usize - 5..2 * PAGE as usize + 5].copy_from_slice(&patch);
        assert_eq!(fs::read(&path).unwrap(), expected);
        file.set_len(PAGE + 1).unwrap();
        file.write_all_at(b"x", 2 * PAGE).unwrap();
        let mut after = expected[..PAGE as usize + 1].to_vec();
        after.resize(2 * PAGE as usize, 0);
        after.push(b'x');
        assert_eq!(
            fs::read(&path).unwrap(),
            after,
            "the truncated tail reads as zeros"
        );
        file.sync_data().unwrap();
        lazy.lose_unsynced();
        assert_eq!(fs::read(&path).unwrap(), after, "fsynced, so kept");
    }
}
