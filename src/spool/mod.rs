//! The queue: a maildir-style spool directory.
//!
//! Layout under `spool`:
//! - `tmp/`     files being written; never read by delivery; stale ones are removed.
//! - `msg/ID`   the message (Received header + data, CRLF lines); immutable once renamed.
//! - `env/ID`   the envelope (sender, recipients and their delivery state); replaced
//!   atomically (write tmp → fsync → rename → fsync dir) on every state change.
//! - `corrupt/` envelopes that could not be parsed, kept for the administrator.
//! - `maildrop/` (1733) where any local user's `sendmail` leaves mail; see [`maildrop`].
//!
//! Invariants: a message is visible to delivery exactly when `env/ID` exists, and
//! `env/ID` is only renamed into place after `msg/ID` is durable, so a crash at any
//! moment leaves either a complete message or nothing visible. `250` is only sent after
//! [`Incoming::commit`] returns, which is after every fsync (file and directory).
//! The spool itself is 0711 (others may only reach `maildrop/` by name); `tmp/`, `msg/`,
//! `env/` and `corrupt/` are 0700, files 0600.
//!
//! Files are made durable with `fdatasync` (data and the metadata needed to read it back,
//! such as the size; not the timestamps), directories with `fsync`.
//!
//! Commit order (each step only after the previous one succeeded):
//! 1. flush and fsync `tmp/ID.msg`;
//! 2. write and fsync `tmp/ID.env` (`O_EXCL`, 0600);
//! 3. rename `tmp/ID.msg` → `msg/ID`, fsync `msg/`;
//! 4. rename `tmp/ID.env` → `env/ID`, fsync `env/`.
//!
//! `msg/` is fsynced before the envelope is renamed, so no crash can leave a durable
//! `env/ID` whose `msg/ID` was lost. On any error the steps already done are undone
//! (`env/ID` first) before the error is returned. The steps can be made to fail in tests
//! (chasquid's safeio style), which is how this order is tested.
//!
//! Queue IDs are reserved by creating `tmp/ID.msg` with `O_CREAT|O_EXCL|O_NOFOLLOW`, and
//! an ID that already names a file in `msg/` or `env/` is skipped, so two processes (the
//! daemon and `sendmail`) never share one. A crash leaves only files in `tmp/`, which
//! [`Spool::clean_tmp`] removes, or (between steps 3 and 4) an unreferenced `msg/ID`,
//! which delivery never sees.

pub mod envelope;
pub mod id;
pub mod listing;
pub mod maildrop;

pub use envelope::{Envelope, Recipient, Status};
pub use id::QueueId;

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// The subdirectories of a spool, all created by [`Spool::open`].
const SUBDIRS: [&str; 4] = ["tmp", "msg", "env", "corrupt"];
/// Buffer in front of the message file: DATA arrives in small socket-sized pieces, and a
/// write(2) per piece would cost more than the fsync at the end.
const WRITE_BUFFER: usize = 64 * 1024;
/// Attempts to find a free queue ID (or envelope temp name) before giving up. A clash
/// needs two processes whose pids agree in their low 12 bits writing in the same
/// microsecond, so running out means something else is wrong (e.g. a full inode table).
const MAX_NAME_TRIES: u32 = 64;

/// Per-process sequence for queue IDs and temporary envelope names.
static SEQ: AtomicU32 = AtomicU32::new(0);

/// The 20-bit `seq` part of a queue ID: the pid's low 12 bits, then 8 bits of a
/// per-process counter. Two processes differ in the pid bits, two IDs of one process made
/// in the same microsecond differ in the counter; `O_EXCL` settles what is left.
fn next_seq() -> u32 {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    ((std::process::id() & 0xFFF) << 8) | (n & 0xFF)
}

/// Held while a delivery pass works on a message; dropping it releases the lock.
pub struct MessageLock {
    _file: File,
}

/// A spool failure, mapped to a reply at one edge: `NoSpace` → `452 4.3.1`,
/// anything else → `451 4.3.0`.
#[derive(Debug)]
pub enum SpoolError {
    /// ENOSPC or EDQUOT.
    NoSpace,
    Io(io::Error),
}

impl From<io::Error> for SpoolError {
    fn from(e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => SpoolError::NoSpace,
            _ => SpoolError::Io(e),
        }
    }
}

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpoolError::NoSpace => f.write_str("no space left on spool device"),
            SpoolError::Io(e) => f.write_str(&crate::time::io_reason(e)),
        }
    }
}

/// An open spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
}

impl Spool {
    /// Open the spool, creating it and its subdirectories (0700) when missing.
    pub fn open(root: &Path) -> io::Result<Spool> {
        match fs::metadata(root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(root)?;
                // Only the spool itself: parents created on the way keep the umask's mode.
                fs::set_permissions(root, fs::Permissions::from_mode(0o700))?;
            }
            Err(e) => return Err(e),
        }
        for sub in SUBDIRS {
            let path = root.join(sub);
            match DirBuilder::new().mode(0o700).create(&path) {
                // The umask could have removed bits from 0700; make it exact.
                Ok(()) => fs::set_permissions(&path, fs::Permissions::from_mode(0o700))?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if !fs::metadata(&path)?.is_dir() {
                        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        // Where local users drop mail (`sendmail` without privileges).
        maildrop::prepare(root)?;
        Ok(Spool {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Start a new message: a fresh unique queue ID and a file in `tmp/`
    /// (`O_CREAT|O_EXCL|O_NOFOLLOW`, 0600).
    pub fn begin(&self, arrival_unix: u64) -> Result<Incoming, SpoolError> {
        // The ID carries the given arrival second (so IDs sort with the `arrival` the
        // caller records, fake clocks included) and the current sub-second microseconds.
        let micros = arrival_unix
            .saturating_mul(1_000_000)
            .saturating_add(crate::time::unix_micros() % 1_000_000);
        for _ in 0..MAX_NAME_TRIES {
            let id = QueueId::new(micros, next_seq());
            let tmp_path = self.tmp_msg_path(&id);
            let file = match create_exclusive(&tmp_path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e.into()),
            };
            // tmp/ID.msg is now ours; the ID must not name a queued message either.
            let used = self.id_in_use(&id);
            if !matches!(used, Ok(false)) {
                drop(file);
                let _ = fs::remove_file(&tmp_path);
                match used {
                    Ok(_) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(Incoming {
                id,
                file: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
                tmp_path,
                spool: self.clone(),
            });
        }
        Err(SpoolError::Io(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no free queue ID",
        )))
    }

    /// Every queued envelope, oldest first. Envelopes that cannot be read or parsed are
    /// moved to `corrupt/` and logged, never returned and never fatal.
    pub fn list(&self) -> io::Result<Vec<Envelope>> {
        let mut envelopes = Vec::new();
        for entry in fs::read_dir(self.root.join("env"))? {
            let entry = entry?;
            // Anything not named like a queue ID is not ours (an editor's backup file,
            // say): leave it alone rather than guess.
            let Some(id) = entry.file_name().to_str().and_then(QueueId::parse) else {
                continue;
            };
            match self.load(&id) {
                Ok(env) => envelopes.push(env),
                Err(Unusable::Gone) => {}
                Err(Unusable::Busy(e)) => {
                    log::warn!(
                        "{id}: cannot read envelope now: {}",
                        crate::time::io_reason(&e)
                    )
                }
                Err(Unusable::Corrupt(reason)) => self.quarantine(&id, &reason),
            }
        }
        envelopes.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(envelopes)
    }

    /// Read one envelope.
    pub fn read(&self, id: &QueueId) -> io::Result<Envelope> {
        let bytes = fs::read(self.env_path(id))?;
        decode_named(&bytes, id)
            .map_err(|reason| io::Error::new(io::ErrorKind::InvalidData, reason))
    }

    /// Remove a message (envelope first, so it stops being visible, then the data).
    /// `Ok(false)` when no such message exists.
    pub fn remove(&self, id: &QueueId) -> io::Result<bool> {
        match fs::remove_file(self.env_path(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
        match fs::remove_file(self.message_path(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // A removal that a crash undoes would deliver the message a second time.
        sync_dir(&self.root.join("env"))?;
        Ok(true)
    }

    /// Take the delivery lock of a message: an exclusive `flock` on `msg/ID`, which is
    /// never replaced (unlike `env/ID`), so every process locks the same inode. The lock
    /// dies with the process, so a crashed pass never leaves a message stuck.
    /// `Ok(None)`: another pass holds it. `NotFound`: the message is gone.
    pub fn lock(&self, id: &QueueId) -> io::Result<Option<MessageLock>> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.message_path(id))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(MessageLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// The message file of a queued message: `msg/ID`.
    pub fn message_path(&self, id: &QueueId) -> PathBuf {
        self.root.join("msg").join(id.as_str())
    }

    /// Atomically replace `env/ID` with `env` (temp file in `tmp/` → fsync → rename →
    /// fsync `env/`): delivery records per-recipient state with it. A message that is no
    /// longer queued (removed by `queue -d`) is not brought back: `NotFound`.
    pub fn write_envelope(&self, env: &Envelope) -> Result<(), SpoolError> {
        let final_path = self.env_path(&env.id);
        if !exists(&final_path)? {
            return Err(SpoolError::Io(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: not in the queue", env.id),
            )));
        }
        let (tmp_path, mut file) = self.create_envelope_tmp(&env.id)?;
        let result = file
            .write_all(&envelope::encode(env))
            .and_then(|()| file.sync_data())
            .and_then(|()| fs::rename(&tmp_path, &final_path));
        drop(file);
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp_path);
            return Err(e.into());
        }
        sync_dir(&self.root.join("env"))?;
        Ok(())
    }

    /// Remove files in `tmp/` last modified more than `older_than_secs` ago: what a
    /// crash left behind. Returns how many were removed. A message being received has
    /// its file in `tmp/` too, and its mtime only moves when the write buffer is
    /// flushed, so `older_than_secs` must be well above the longest SMTP session
    /// (hours, as Postfix's 18h for its incoming queue); were it removed anyway, the
    /// commit would fail and the client would get a 4xx, losing nothing.
    pub fn clean_tmp(&self, older_than_secs: u64) -> io::Result<usize> {
        let now = crate::time::unix_now();
        let mut removed = 0;
        for entry in fs::read_dir(self.root.join("tmp"))? {
            let entry = entry?;
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                continue;
            }
            let mtime = u64::try_from(meta.mtime()).unwrap_or(0);
            if now.saturating_sub(mtime) <= older_than_secs {
                continue;
            }
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// Remove `msg/ID` files that no `env/ID` refers to and that were last modified more
    /// than `older_than_secs` ago: what a crash between commit steps 3 and 4 left. (A
    /// fresh one may be a commit between those steps, or a removal between its two
    /// unlinks.) Returns how many were removed.
    pub fn clean_orphans(&self, older_than_secs: u64) -> io::Result<usize> {
        let now = crate::time::unix_now();
        let mut removed = 0;
        for entry in fs::read_dir(self.root.join("msg"))? {
            let entry = entry?;
            let Some(id) = entry.file_name().to_str().and_then(QueueId::parse) else {
                continue;
            };
            if exists(&self.env_path(&id))? {
                continue;
            }
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            let mtime = u64::try_from(meta.mtime()).unwrap_or(0);
            if meta.is_dir() || now.saturating_sub(mtime) <= older_than_secs {
                continue;
            }
            match fs::remove_file(entry.path()) {
                Ok(()) => {
                    log::info!("{id}: removed msg/{id}: no envelope (left by a crash)");
                    removed += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    fn env_path(&self, id: &QueueId) -> PathBuf {
        self.root.join("env").join(id.as_str())
    }

    fn tmp_msg_path(&self, id: &QueueId) -> PathBuf {
        self.root.join("tmp").join(format!("{id}.msg"))
    }

    fn id_in_use(&self, id: &QueueId) -> io::Result<bool> {
        Ok(exists(&self.message_path(id))? || exists(&self.env_path(id))?)
    }

    /// A fresh `tmp/ID.env.PID.N` for [`Spool::write_envelope`]; the pid keeps two
    /// processes apart, `O_EXCL` does the rest.
    fn create_envelope_tmp(&self, id: &QueueId) -> io::Result<(PathBuf, File)> {
        for _ in 0..MAX_NAME_TRIES {
            let n = SEQ.fetch_add(1, Ordering::Relaxed);
            let path = self
                .root
                .join("tmp")
                .join(format!("{id}.env.{}.{n}", std::process::id()));
            match create_exclusive(&path) {
                Ok(file) => return Ok((path, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no free temporary envelope name",
        ))
    }

    /// One listed envelope, checked: parses, names itself, and has its message file.
    fn load(&self, id: &QueueId) -> Result<Envelope, Unusable> {
        let bytes = match fs::read(self.env_path(id)) {
            Ok(bytes) => bytes,
            // Removed since read_dir (delivered, or `queue -d`).
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Unusable::Gone),
            Err(e) if is_transient(&e) => return Err(Unusable::Busy(e)),
            Err(e) => return Err(Unusable::Corrupt(crate::time::io_reason(&e))),
        };
        let env = decode_named(&bytes, id).map_err(Unusable::Corrupt)?;
        match self.message_path(id).symlink_metadata() {
            Ok(m) if m.is_file() => Ok(env),
            Ok(_) => Err(Unusable::Corrupt("msg/ file is not a regular file".into())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // `remove` unlinks env/ID before msg/ID: if the envelope is gone too,
                // this was a removal racing with us, not damage.
                match exists(&self.env_path(id)) {
                    Ok(false) => Err(Unusable::Gone),
                    _ => Err(Unusable::Corrupt("message file msg/ID is missing".into())),
                }
            }
            Err(e) if is_transient(&e) => Err(Unusable::Busy(e)),
            Err(e) => Err(Unusable::Corrupt(crate::time::io_reason(&e))),
        }
    }

    /// Move a bad envelope (and its message, if any) to `corrupt/ID.env` and
    /// `corrupt/ID.msg`, out of delivery's way but kept for the administrator.
    fn quarantine(&self, id: &QueueId, reason: &str) {
        let corrupt = self.root.join("corrupt");
        match fs::rename(self.env_path(id), corrupt.join(format!("{id}.env"))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => {
                log::error!(
                    "{id}: corrupt envelope ({reason}) could not be moved to corrupt/: {}",
                    crate::time::io_reason(&e)
                );
                return;
            }
        }
        if let Err(e) = fs::rename(self.message_path(id), corrupt.join(format!("{id}.msg"))) {
            if e.kind() != io::ErrorKind::NotFound {
                log::error!(
                    "{id}: message file could not be moved to corrupt/: {}",
                    crate::time::io_reason(&e)
                );
            }
        }
        log::warn!("{id}: corrupt envelope moved to corrupt/: {reason}");
    }
}

/// Why a listed envelope is not returned.
enum Unusable {
    /// Removed while we looked: nothing to do.
    Gone,
    /// A passing condition (out of file descriptors, memory): try again next pass.
    Busy(io::Error),
    /// Damaged: move it to `corrupt/`.
    Corrupt(String),
}

/// Errors that say nothing about the file itself, so must not send it to `corrupt/`.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EAGAIN | libc::EINTR)
    )
}

/// Decode an envelope and check that it names the file it was read from.
fn decode_named(bytes: &[u8], id: &QueueId) -> Result<Envelope, String> {
    let env = envelope::decode(bytes)?;
    if env.id != *id {
        return Err(format!("id line {} does not match the file name", env.id));
    }
    Ok(env)
}

/// `O_CREAT|O_EXCL|O_NOFOLLOW`, 0600: never reuse or follow what someone else put there.
fn create_exclusive(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Make a directory's entries (renames, unlinks) durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Whether a name exists (without following a symlink); errors other than "no such
/// file" are errors, not `false`.
fn exists(path: &Path) -> io::Result<bool> {
    match path.symlink_metadata() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// A message being received. Dropping it without `commit` removes the temporary file.
#[derive(Debug)]
pub struct Incoming {
    id: QueueId,
    /// `None` once `commit` has taken it over; `Drop` only cleans up while `Some`.
    file: Option<BufWriter<File>>,
    tmp_path: PathBuf,
    spool: Spool,
}

/// The steps of [`Incoming::commit`], named so a test can make any one of them fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    FlushMessage,
    SyncMessage,
    WriteEnvelope,
    SyncEnvelope,
    RenameMessage,
    SyncMessageDir,
    RenameEnvelope,
    SyncEnvelopeDir,
}

/// What a commit has done so far, so a failure can undo exactly that.
#[derive(Default)]
struct Progress {
    envelope_tmp_created: bool,
    message_renamed: bool,
    envelope_renamed: bool,
}

impl Incoming {
    pub fn id(&self) -> &QueueId {
        &self.id
    }

    /// Append message bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), SpoolError> {
        match self.file.as_mut() {
            Some(file) => file.write_all(bytes).map_err(SpoolError::from),
            None => Err(SpoolError::Io(io::Error::other(
                "message already committed",
            ))),
        }
    }

    /// Make the message durable and visible: fsync the data, write and fsync the
    /// envelope, rename both into place, fsync the directories. Only after `Ok` may the
    /// server answer `250`. On error nothing is left visible in the queue.
    pub fn commit(self, envelope: &Envelope) -> Result<QueueId, SpoolError> {
        self.commit_with(envelope, None)
    }

    /// [`Incoming::commit`], with the step `fail.0` failing with errno `fail.1` instead
    /// of running (tests only pass `Some`).
    fn commit_with(
        mut self,
        envelope: &Envelope,
        fail: Option<(Step, i32)>,
    ) -> Result<QueueId, SpoolError> {
        // Taking the file disarms Drop: from here on this function cleans up itself.
        let Some(file) = self.file.take() else {
            return Err(SpoolError::Io(io::Error::other(
                "message already committed",
            )));
        };
        if envelope.id != self.id {
            drop(file);
            let _ = fs::remove_file(&self.tmp_path);
            return Err(SpoolError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("envelope {} given for message {}", envelope.id, self.id),
            )));
        }
        let mut progress = Progress::default();
        match self.commit_steps(file, envelope, fail, &mut progress) {
            Ok(()) => Ok(self.id.clone()),
            Err(e) => {
                self.undo(&progress);
                Err(e.into())
            }
        }
    }

    fn commit_steps(
        &self,
        mut file: BufWriter<File>,
        envelope: &Envelope,
        fail: Option<(Step, i32)>,
        progress: &mut Progress,
    ) -> io::Result<()> {
        let step = |s: Step| match fail {
            Some((f, errno)) if f == s => Err(io::Error::from_raw_os_error(errno)),
            _ => Ok(()),
        };
        let root = &self.spool.root;

        if let Err(e) = step(Step::FlushMessage).and_then(|()| file.flush()) {
            // Discard the buffer rather than let BufWriter's Drop write it again.
            let _ = file.into_parts();
            return Err(e);
        }
        let (file, _) = file.into_parts();
        step(Step::SyncMessage)?;
        file.sync_data()?;
        drop(file);

        let env_tmp = self.envelope_tmp_path();
        step(Step::WriteEnvelope)?;
        let mut env_file = create_exclusive(&env_tmp)?;
        progress.envelope_tmp_created = true;
        env_file.write_all(&envelope::encode(envelope))?;
        step(Step::SyncEnvelope)?;
        env_file.sync_data()?;
        drop(env_file);

        // The message must be durable in msg/ before the envelope can point at it.
        step(Step::RenameMessage)?;
        fs::rename(&self.tmp_path, self.spool.message_path(&self.id))?;
        progress.message_renamed = true;
        step(Step::SyncMessageDir)?;
        sync_dir(&root.join("msg"))?;

        // This rename is the moment the message becomes visible to delivery.
        step(Step::RenameEnvelope)?;
        fs::rename(&env_tmp, self.spool.env_path(&self.id))?;
        progress.envelope_renamed = true;
        step(Step::SyncEnvelopeDir)?;
        sync_dir(&root.join("env"))?;
        Ok(())
    }

    /// Undo a failed commit, envelope first so the message stops being visible before
    /// its data goes. Best effort: the caller reports the original error.
    fn undo(&self, progress: &Progress) {
        if progress.envelope_renamed {
            let _ = fs::remove_file(self.spool.env_path(&self.id));
            let _ = sync_dir(&self.spool.root.join("env"));
        } else if progress.envelope_tmp_created {
            let _ = fs::remove_file(self.envelope_tmp_path());
        }
        if progress.message_renamed {
            let _ = fs::remove_file(self.spool.message_path(&self.id));
        } else {
            let _ = fs::remove_file(&self.tmp_path);
        }
    }

    fn envelope_tmp_path(&self) -> PathBuf {
        self.spool.root.join("tmp").join(format!("{}.env", self.id))
    }

    /// Steps 1 and 2 of the commit for one message of a group: data and envelope
    /// durable in `tmp/`.
    fn prepare_group(&mut self, envelope: &Envelope, progress: &mut Progress) -> io::Result<()> {
        let Some(mut file) = self.file.take() else {
            return Err(io::Error::other("message already committed"));
        };
        if envelope.id != self.id {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("envelope {} given for message {}", envelope.id, self.id),
            ));
        }
        if let Err(e) = file.flush() {
            let _ = file.into_parts();
            return Err(e);
        }
        let (file, _) = file.into_parts();
        file.sync_data()?;
        drop(file);
        let mut env_file = create_exclusive(&self.envelope_tmp_path())?;
        progress.envelope_tmp_created = true;
        env_file.write_all(&envelope::encode(envelope))?;
        env_file.sync_data()
    }
}

/// Group commit: the same steps and order as [`Incoming::commit`] for several messages
/// at once, with one fsync of `msg/` and one of `env/` for the whole group instead of
/// one each per message. Every message's data is durable in `msg/` before any envelope
/// is renamed into `env/`, so the invariants of the module hold for each message. One
/// result per message, in order; a failed message leaves nothing visible.
pub fn commit_group(items: Vec<(Incoming, Envelope)>) -> Vec<Result<QueueId, SpoolError>> {
    struct Item {
        incoming: Incoming,
        progress: Progress,
        error: Option<io::Error>,
    }
    let mut group: Vec<Item> = items
        .into_iter()
        .map(|(mut incoming, envelope)| {
            let mut progress = Progress::default();
            let error = incoming.prepare_group(&envelope, &mut progress).err();
            Item {
                incoming,
                progress,
                error,
            }
        })
        .collect();
    // Step 3: data into msg/, then one fsync of msg/ for all.
    let mut roots: Vec<PathBuf> = Vec::new();
    for it in group.iter_mut().filter(|it| it.error.is_none()) {
        let inc = &it.incoming;
        match fs::rename(&inc.tmp_path, inc.spool.message_path(&inc.id)) {
            Ok(()) => it.progress.message_renamed = true,
            Err(e) => it.error = Some(e),
        }
        if !roots.contains(&inc.spool.root) {
            roots.push(inc.spool.root.clone());
        }
    }
    for root in &roots {
        if let Err(e) = sync_dir(&root.join("msg")) {
            fail_all(
                &mut group.iter_mut().map(|it| &mut it.error).collect::<Vec<_>>(),
                &e,
            );
        }
    }
    // Step 4: envelopes into env/ (the moment each message becomes visible), one fsync.
    for it in group.iter_mut().filter(|it| it.error.is_none()) {
        let inc = &it.incoming;
        match fs::rename(inc.envelope_tmp_path(), inc.spool.env_path(&inc.id)) {
            Ok(()) => it.progress.envelope_renamed = true,
            Err(e) => it.error = Some(e),
        }
    }
    for root in &roots {
        if let Err(e) = sync_dir(&root.join("env")) {
            fail_all(
                &mut group.iter_mut().map(|it| &mut it.error).collect::<Vec<_>>(),
                &e,
            );
        }
    }
    group
        .into_iter()
        .map(|mut it| match it.error.take() {
            None => Ok(it.incoming.id.clone()),
            Some(e) => {
                it.incoming.undo(&it.progress);
                Err(e.into())
            }
        })
        .collect()
}

/// A directory fsync failed: no message of the group may be acknowledged.
fn fail_all(errors: &mut [&mut Option<io::Error>], e: &io::Error) {
    for slot in errors.iter_mut() {
        if slot.is_none() {
            // Keep the errno: ENOSPC must still become 452 4.3.1.
            **slot = Some(match e.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(e.kind(), e.to_string()),
            });
        }
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            // Abandoned (client gone, size limit, RSET): drop the buffered bytes unwritten.
            let _ = file.into_parts();
            let _ = fs::remove_file(&self.tmp_path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    /// A unique spool directory under the system temp dir, removed on drop.
    struct TempSpool {
        dir: PathBuf,
        spool: Spool,
    }

    impl TempSpool {
        fn new(name: &str) -> TempSpool {
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "postling-spool-test-{}-{}-{name}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            let spool = Spool::open(&dir.join("spool")).unwrap();
            TempSpool { dir, spool }
        }

        fn names(&self, sub: &str) -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(self.spool.root().join(sub))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }

        fn assert_empty(&self, context: &str) {
            for sub in ["tmp", "msg", "env"] {
                assert_eq!(self.names(sub), Vec::<String>::new(), "{context}: {sub}/");
            }
        }
    }

    impl Drop for TempSpool {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    fn envelope(id: &QueueId, arrival: u64) -> Envelope {
        Envelope {
            id: id.clone(),
            arrival,
            sender: "alice@example.com".into(),
            recipients: vec![Recipient::new("bob@example.test".into())],
            size: 5,
            eight_bit: false,
            client_ip: None,
            helo: "localhost".into(),
            auth_user: None,
        }
    }

    /// Queue one message with body `hello` through the public API.
    fn queue(spool: &Spool, arrival: u64) -> QueueId {
        let mut incoming = spool.begin(arrival).unwrap();
        incoming.write(b"hel").unwrap();
        incoming.write(b"lo").unwrap();
        let env = envelope(incoming.id(), arrival);
        incoming.commit(&env).unwrap()
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn open_creates_private_directories() {
        let t = TempSpool::new("open");
        let root = t.spool.root();
        // Traversable (not listable) so that local users reach maildrop/ by name.
        assert_eq!(mode(root), 0o711);
        for sub in SUBDIRS {
            assert_eq!(mode(&root.join(sub)), 0o700, "{sub}");
        }
        // Opening again is fine; a file where the spool should be is not.
        Spool::open(root).unwrap();
        let file = t.dir.join("file");
        fs::write(&file, b"").unwrap();
        assert_eq!(
            Spool::open(&file).unwrap_err().raw_os_error(),
            Some(libc::ENOTDIR)
        );
    }

    #[test]
    fn commit_makes_the_message_visible() {
        let t = TempSpool::new("commit");
        let id = queue(&t.spool, 1_796_396_783);
        assert_eq!(t.names("tmp"), Vec::<String>::new());
        assert_eq!(t.names("env"), vec![id.to_string()]);
        assert_eq!(fs::read(t.spool.message_path(&id)).unwrap(), b"hello");
        assert_eq!(mode(&t.spool.message_path(&id)), 0o600);
        assert_eq!(mode(&t.spool.env_path(&id)), 0o600);
        assert_eq!(t.spool.read(&id).unwrap(), envelope(&id, 1_796_396_783));
        assert_eq!(t.spool.list().unwrap(), vec![envelope(&id, 1_796_396_783)]);

        assert!(t.spool.remove(&id).unwrap());
        assert!(!t.spool.remove(&id).unwrap());
        t.assert_empty("after remove");
        assert_eq!(t.spool.list().unwrap(), vec![]);
    }

    #[test]
    fn ids_are_unique_and_sort_by_arrival() {
        let t = TempSpool::new("ids");
        let mut ids = Vec::new();
        let mut pending = Vec::new();
        for _ in 0..300 {
            let incoming = t.spool.begin(1_000).unwrap();
            ids.push(incoming.id().clone());
            pending.push(incoming);
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
        assert_eq!(t.names("tmp").len(), 300);
        drop(pending);
        t.assert_empty("after dropping uncommitted messages");

        let later = queue(&t.spool, 2_000);
        let earlier = queue(&t.spool, 1_000);
        let listed: Vec<QueueId> = t.spool.list().unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(listed, vec![earlier, later]);
    }

    #[test]
    fn a_failed_commit_leaves_nothing_visible() {
        const STEPS: [Step; 8] = [
            Step::FlushMessage,
            Step::SyncMessage,
            Step::WriteEnvelope,
            Step::SyncEnvelope,
            Step::RenameMessage,
            Step::SyncMessageDir,
            Step::RenameEnvelope,
            Step::SyncEnvelopeDir,
        ];
        let t = TempSpool::new("fail");
        for step in STEPS {
            for (errno, no_space) in [(libc::EIO, false), (libc::ENOSPC, true)] {
                let mut incoming = t.spool.begin(1_000).unwrap();
                incoming.write(b"hello").unwrap();
                let env = envelope(incoming.id(), 1_000);
                match incoming.commit_with(&env, Some((step, errno))) {
                    Ok(_) => panic!("{step:?}: commit succeeded"),
                    Err(SpoolError::NoSpace) => assert!(no_space, "{step:?}"),
                    Err(SpoolError::Io(e)) => {
                        assert!(!no_space, "{step:?}");
                        assert_eq!(e.raw_os_error(), Some(errno), "{step:?}")
                    }
                }
                t.assert_empty(&format!("{step:?}"));
                assert_eq!(t.spool.list().unwrap(), vec![], "{step:?}");
            }
        }
        // And the same spool still takes mail afterwards.
        let id = queue(&t.spool, 1_000);
        assert_eq!(t.names("env"), vec![id.to_string()]);
    }

    #[test]
    fn commit_refuses_an_envelope_for_another_message() {
        let t = TempSpool::new("mismatch");
        let incoming = t.spool.begin(1_000).unwrap();
        let env = envelope(&QueueId::new(1, 1), 1_000);
        assert!(matches!(incoming.commit(&env), Err(SpoolError::Io(_))));
        t.assert_empty("mismatch");
    }

    #[test]
    fn write_envelope_replaces_atomically() {
        let t = TempSpool::new("rewrite");
        let id = queue(&t.spool, 1_000);
        let mut env = t.spool.read(&id).unwrap();
        env.recipients[0].status = Status::Deferred;
        env.recipients[0].attempts = 1;
        env.recipients[0].last_reply = Some("451 4.7.1 later".into());
        env.recipients[0].next_attempt = Some(1_060);
        t.spool.write_envelope(&env).unwrap();
        assert_eq!(t.spool.read(&id).unwrap(), env);
        assert_eq!(t.names("tmp"), Vec::<String>::new());
        assert_eq!(mode(&t.spool.env_path(&id)), 0o600);

        // A removed message is not brought back.
        t.spool.remove(&id).unwrap();
        match t.spool.write_envelope(&env) {
            Err(SpoolError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
            other => panic!("{other:?}"),
        }
        t.assert_empty("after write_envelope of a removed message");
    }

    #[test]
    fn list_moves_corrupt_envelopes_aside() {
        let t = TempSpool::new("corrupt");
        let good = queue(&t.spool, 1_000);
        let garbled = queue(&t.spool, 1_001);
        let no_message = queue(&t.spool, 1_002);
        let misnamed = queue(&t.spool, 1_003);
        fs::write(t.spool.env_path(&garbled), b"postling-envelope 1\nid x").unwrap();
        fs::remove_file(t.spool.message_path(&no_message)).unwrap();
        let other = envelope(&QueueId::new(5, 5), 1_003);
        fs::write(t.spool.env_path(&misnamed), envelope::encode(&other)).unwrap();
        fs::write(t.spool.root().join("env").join("README"), b"not ours").unwrap();

        let listed: Vec<QueueId> = t.spool.list().unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(listed, vec![good.clone()]);
        assert_eq!(t.names("env"), vec![good.to_string(), "README".to_string()]);
        assert_eq!(t.names("msg"), vec![good.to_string()]);
        let mut want = vec![
            format!("{garbled}.env"),
            format!("{garbled}.msg"),
            format!("{no_message}.env"),
            format!("{misnamed}.env"),
            format!("{misnamed}.msg"),
        ];
        want.sort();
        assert_eq!(t.names("corrupt"), want);
        assert!(t.spool.read(&garbled).is_err());
    }

    #[test]
    fn clean_tmp_removes_only_stale_files() {
        let t = TempSpool::new("clean");
        let live = t.spool.begin(1_000).unwrap();
        let stale = t.spool.root().join("tmp").join("0000000000001000AB.msg");
        let file = File::create(&stale).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(7200))
            .unwrap();
        drop(file);
        assert_eq!(t.spool.clean_tmp(3600).unwrap(), 1);
        assert_eq!(t.names("tmp"), vec![format!("{}.msg", live.id())]);
        drop(live);
        t.assert_empty("after clean_tmp");
    }

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let t = TempSpool::new("lock");
        let id = queue(&t.spool, 1_000);
        let first = t.spool.lock(&id).unwrap().expect("free");
        assert!(
            t.spool.lock(&id).unwrap().is_none(),
            "second lock must fail"
        );
        drop(first);
        assert!(t.spool.lock(&id).unwrap().is_some());
        t.spool.remove(&id).unwrap();
        assert_eq!(
            t.spool.lock(&id).err().map(|e| e.kind()),
            Some(io::ErrorKind::NotFound)
        );
    }

    #[test]
    fn group_commit_makes_each_message_durable_or_nothing() {
        let t = TempSpool::new("group");
        let mut items = Vec::new();
        for n in 0..3 {
            let mut inc = t.spool.begin(1_000 + n).unwrap();
            inc.write(format!("message {n}").as_bytes()).unwrap();
            let mut env = envelope(inc.id(), 1_000 + n);
            if n == 1 {
                // A mismatched envelope fails this message alone.
                env.id = QueueId::new(1, 1);
            }
            items.push((inc, env));
        }
        let results = commit_group(items);
        assert!(results[0].is_ok() && results[1].is_err() && results[2].is_ok());
        let listed = t.spool.list().unwrap();
        assert_eq!(listed.len(), 2);
        for (env, want) in listed.iter().zip(["message 0", "message 2"]) {
            assert_eq!(
                fs::read_to_string(t.spool.message_path(&env.id)).unwrap(),
                want
            );
        }
        // Nothing of the failed one is left, not even in tmp/.
        assert_eq!(t.names("tmp"), Vec::<String>::new());
        assert_eq!(t.names("msg").len(), 2);
    }
}
