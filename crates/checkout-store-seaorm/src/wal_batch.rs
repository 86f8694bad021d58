//! SQLite: the ledger's WAL writes, a commit's frames in a few system
//! calls instead of two a frame.
//!
//! SQLite writes every WAL frame as two `pwrite` calls, its 24-byte header
//! and then its page, and a ledger commit at 80 % of the benchmark's peak
//! writes about 30 frames. Those calls were a quarter of the ledger
//! thread's CPU (`perf record`, docs/performance.md), and the ledger
//! thread is the one every order's writes queue for: most of it was the
//! kernel's fixed cost per call and per page-cache page touched, not the
//! copying, and the header writes are almost nothing but that cost.
//!
//! This module registers a VFS that is SQLite's default one except for
//! WAL files: there, writes that follow each other in the file are held in
//! a buffer and written as one call (up to [`MOST_HELD`] bytes, about 31
//! frames of 4 KiB pages). What is held is written
//!
//! - together with the write that carries a *commit frame's* header (the
//!   frame whose header gives the database size, which only the last
//!   frame of a transaction does), and the write right after it (the
//!   commit frame's page) on its own, so that everything a transaction
//!   wrote is in the file before SQLite publishes the transaction in the
//!   WAL index, before the COMMIT returns;
//! - before any write elsewhere in the file, before any other call on the
//!   file (a read, a sync, a truncation, its size, a lock, a file
//!   control, its close), and once [`MOST_HELD`] bytes are held.
//!
//! So nothing is weaker: a committed transaction is in the WAL file, where
//! other connections and crash recovery read it, exactly as without the
//! buffer; what a crash can lose from the buffer is a transaction that has
//! not committed, which recovery would discard anyway. Only the number of
//! calls changes. Only the ledger connection opens the database through
//! it; every other connection uses the default VFS, and file locks and
//! shared memory are the default VFS's own for both.
//!
//! This is the workspace's one module with `unsafe` code: a VFS is a table
//! of C callbacks that SQLite calls with raw pointers.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_int, c_void};
use std::mem::{align_of, size_of};
use std::ptr;
use std::sync::OnceLock;

use rusqlite::ffi;

/// The VFS's name, to open a connection with.
pub(crate) const NAME: &CStr = c"checkout-wal-batch";

/// Bytes held at most before they are written anyway: the most the unix
/// VFS writes in one call (it masks a write's length to 17 bits, so a
/// longer one would be cut short and fail as a full disk). A commit of
/// more frames than fit is written in several calls.
const MOST_HELD: usize = 0x1ffff;

/// A WAL frame header's size; the header's bytes 4–7 are the database
/// size in pages for a commit frame and zero for any other frame
/// (<https://sqlite.org/fileformat2.html#walformat>).
const FRAME_HEADER: usize = 24;

/// Registers the VFS once per process; the error is SQLite's result code
/// when it could not be (the caller then opens with the default VFS).
pub(crate) fn register() -> Result<(), c_int> {
    static REGISTERED: OnceLock<Result<(), c_int>> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        // SAFETY: `sqlite3_vfs_find(NULL)` initialises SQLite and returns
        // the default VFS, which stays registered (and valid) for the
        // process's lifetime.
        let default = unsafe { ffi::sqlite3_vfs_find(ptr::null()) };
        if default.is_null() {
            return Err(ffi::SQLITE_ERROR);
        }
        // SAFETY: `default` is a valid VFS (above); it is only read.
        let mut vfs = unsafe { *default };
        let default_size = usize::try_from(vfs.szOsFile).map_err(|_| ffi::SQLITE_ERROR)?;
        let size = c_int::try_from(REAL_AT + default_size).map_err(|_| ffi::SQLITE_ERROR)?;
        vfs.szOsFile = size;
        vfs.pNext = ptr::null_mut();
        vfs.zName = NAME.as_ptr();
        vfs.pAppData = default.cast::<c_void>();
        vfs.xOpen = Some(open);
        // Every other method is the default VFS's own. They are called
        // with this VFS's pointer; the default (unix) VFS reads its state
        // through that pointer only in `xOpen`, which `open` calls with
        // the default VFS itself.
        let vfs = Box::leak(Box::new(vfs));
        // SAFETY: `vfs` is a complete VFS that lives for the rest of the
        // process (leaked above); registering does not make it the
        // default.
        match unsafe { ffi::sqlite3_vfs_register(vfs, 0) } {
            ffi::SQLITE_OK => Ok(()),
            rc => Err(rc),
        }
    })
}

/// A WAL file opened through this VFS: SQLite's file object (first, so a
/// pointer to it is a pointer to this), the default VFS's file (in the
/// same allocation, at [`REAL_AT`]), and what is held.
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    /// Bytes written but not yet passed on, for the file from `held_at`.
    held: Vec<u8>,
    held_at: i64,
    /// The last write carried a commit frame's header: the next one (its
    /// page) is passed on at once.
    after_commit_header: bool,
}

/// Where the default VFS's file starts in the space SQLite allocates for
/// a file ([`WalFile`], rounded up to the alignment SQLite gives).
const REAL_AT: usize = size_of::<WalFile>().next_multiple_of(align_of::<u64>());

/// `xOpen`: every file but a WAL is the default VFS's file itself; a WAL
/// is wrapped.
unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite calls with this VFS, whose `pAppData` is the default
    // VFS (`register`), and `file` pointing at `szOsFile` zeroed bytes,
    // room for a `WalFile` and the default VFS's file after it.
    unsafe {
        let default = (*vfs).pAppData.cast::<ffi::sqlite3_vfs>();
        let Some(default_open) = (*default).xOpen else {
            return ffi::SQLITE_ERROR;
        };
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            return default_open(default, name, file, flags, out_flags);
        }
        let real = file.cast::<u8>().add(REAL_AT).cast::<ffi::sqlite3_file>();
        let rc = default_open(default, name, real, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            if let Some(close) = real_methods(real).and_then(|m| m.xClose) {
                close(real);
            }
            (*file).pMethods = ptr::null();
            return rc;
        }
        ptr::write(
            file.cast::<WalFile>(),
            WalFile {
                base: ffi::sqlite3_file {
                    pMethods: &WAL_METHODS,
                },
                real,
                held: Vec::new(),
                held_at: 0,
                after_commit_header: false,
            },
        );
        ffi::SQLITE_OK
    }
}

/// The default VFS's methods for `real`, if it has any.
///
/// # Safety
/// `real` points at a file the default VFS opened (or tried to).
unsafe fn real_methods<'a>(real: *mut ffi::sqlite3_file) -> Option<&'a ffi::sqlite3_io_methods> {
    // SAFETY: per the function's contract; a method table, once set,
    // lives as long as the VFS.
    unsafe { (*real).pMethods.as_ref() }
}

/// The WAL file's methods. Version 1: SQLite maps shared memory and
/// memory-maps pages through the database file, never through its WAL.
static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// The `WalFile` behind a file SQLite calls one of [`WAL_METHODS`] on.
///
/// # Safety
/// `file` was set up by [`open`] and not yet closed; SQLite never calls
/// one file's methods from two threads at once.
unsafe fn wal<'a>(file: *mut ffi::sqlite3_file) -> &'a mut WalFile {
    // SAFETY: per the function's contract.
    unsafe { &mut *file.cast::<WalFile>() }
}

impl WalFile {
    fn methods(&self) -> &ffi::sqlite3_io_methods {
        // SAFETY: `real` was opened successfully (`open`), so it has a
        // method table, which lives as long as the default VFS.
        unsafe { &*(*self.real).pMethods }
    }

    /// Passes on what is held, in one write.
    fn flush(&mut self) -> c_int {
        if self.held.is_empty() {
            return ffi::SQLITE_OK;
        }
        let rc = self.pass_on(&self.held, self.held_at);
        // The buffer is kept for the next commit. Written or not, its
        // bytes were writes SQLite asked for; if this failed, SQLite sees
        // the failure and rolls back.
        self.held.clear();
        rc
    }

    /// One write to the default VFS's file.
    fn pass_on(&self, data: &[u8], at: i64) -> c_int {
        let Some(write) = self.methods().xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let Ok(amount) = c_int::try_from(data.len()) else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        #[cfg(test)]
        tests::PASSED_ON.with(|n| n.set(n.get() + 1));
        // SAFETY: `real` is open and `data` is `amount` readable bytes.
        unsafe { write(self.real, data.as_ptr().cast::<c_void>(), amount, at) }
    }

    fn write(&mut self, data: &[u8], at: i64) -> c_int {
        let held_end = self.held_at.saturating_add(self.held.len() as i64);
        if !self.held.is_empty() && (held_end != at || self.held.len() + data.len() > MOST_HELD) {
            let rc = self.flush();
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if data.len() > MOST_HELD {
            // Never a WAL write (a page is at most 64 KiB); passed on as is.
            return self.pass_on(data, at);
        }
        if self.held.is_empty() {
            self.held_at = at;
        }
        self.held.extend_from_slice(data);
        let commit_header = data.len() == FRAME_HEADER && data[4..8] != [0; 4];
        if commit_header || std::mem::take(&mut self.after_commit_header) {
            self.after_commit_header = commit_header;
            return self.flush();
        }
        ffi::SQLITE_OK
    }
}

/// Passes a call on to the default VFS's file, after what is held.
macro_rules! after_flush {
    ($file:ident, $method:ident $(, $arg:expr)*) => {{
        // SAFETY: SQLite calls this on a file `open` set up.
        let wal = unsafe { wal($file) };
        let rc = wal.flush();
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        match wal.methods().$method {
            // SAFETY: the default VFS's own method on its own open file,
            // with the arguments SQLite gave.
            Some(method) => unsafe { method(wal.real $(, $arg)*) },
            None => ffi::SQLITE_IOERR,
        }
    }};
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls this once, on a file `open` set up.
    let wal = unsafe { wal(file) };
    let flushed = wal.flush();
    let closed = match wal.methods().xClose {
        // SAFETY: the default VFS's close on its own open file.
        Some(close) => unsafe { close(wal.real) },
        None => ffi::SQLITE_OK,
    };
    // SAFETY: the `WalFile` `open` wrote is dropped once, here; SQLite
    // frees its memory and calls nothing on it again.
    unsafe { ptr::drop_in_place(file.cast::<WalFile>()) };
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        closed
    }
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    at: ffi::sqlite3_int64,
) -> c_int {
    after_flush!(file, xRead, buf, amount, at)
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    at: ffi::sqlite3_int64,
) -> c_int {
    let Ok(len) = usize::try_from(amount) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    if len == 0 {
        // Nothing to hold, and `buf` need not point anywhere.
        return ffi::SQLITE_OK;
    }
    // SAFETY: SQLite calls this on a file `open` set up, with `amount`
    // readable bytes at `buf`.
    let (wal, data) = unsafe { (wal(file), std::slice::from_raw_parts(buf.cast::<u8>(), len)) };
    wal.write(data, at)
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    after_flush!(file, xTruncate, size)
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    after_flush!(file, xSync, flags)
}

unsafe extern "C" fn file_size(
    file: *mut ffi::sqlite3_file,
    size: *mut ffi::sqlite3_int64,
) -> c_int {
    after_flush!(file, xFileSize, size)
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    after_flush!(file, xLock, level)
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    after_flush!(file, xUnlock, level)
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    after_flush!(file, xCheckReservedLock, out)
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    after_flush!(file, xFileControl, op, arg)
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls this on a file `open` set up.
    let wal = unsafe { wal(file) };
    match wal.methods().xSectorSize {
        // SAFETY: the default VFS's own method on its own open file.
        Some(method) => unsafe { method(wal.real) },
        None => 4096,
    }
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls this on a file `open` set up.
    let wal = unsafe { wal(file) };
    match wal.methods().xDeviceCharacteristics {
        // SAFETY: the default VFS's own method on its own open file.
        Some(method) => unsafe { method(wal.real) },
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use rusqlite::{Connection, OpenFlags};

    use super::*;

    thread_local! {
        /// Writes passed on to the default VFS by this thread's WAL files.
        pub(super) static PASSED_ON: Cell<u64> = const { Cell::new(0) };
    }

    fn batching(path: &std::path::Path) -> Connection {
        register().unwrap();
        let db = Connection::open_with_flags_and_vfs(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            NAME,
        )
        .unwrap();
        db.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA wal_autocheckpoint = 0;",
        )
        .unwrap();
        db
    }

    /// Commits `rows` rows of 1 KiB into `t`, one transaction.
    fn commit_rows(db: &Connection, from: i64, rows: i64) {
        db.execute_batch("BEGIN IMMEDIATE").unwrap();
        for i in from..from + rows {
            db.execute(
                "INSERT INTO t (id, body) VALUES (?1, zeroblob(1000) || ?1)",
                [i],
            )
            .unwrap();
        }
        db.execute_batch("COMMIT").unwrap();
    }

    /// The rows in `t` and what `integrity_check` says of the database.
    fn rows_and_integrity(db: &Connection) -> (i64, String) {
        db.query_row(
            "SELECT (SELECT count(*) FROM t), \
             (SELECT integrity_check FROM pragma_integrity_check)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    /// Frames in the WAL so far.
    fn wal_frames(db: &Connection) -> u64 {
        db.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1))
            .unwrap()
            .unsigned_abs()
    }

    #[test]
    fn a_commit_is_passed_on_in_a_few_writes_not_two_a_frame() {
        let dir = tempfile::tempdir().unwrap();
        let db = batching(&dir.path().join("w.db"));
        db.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
            .unwrap();
        for (from, rows) in [(0, 40), (1_000, 400)] {
            // A checkpoint of the whole WAL, so that the commit starts it
            // over and the WAL's frames afterwards are the commit's.
            wal_frames(&db);
            let writes_before = PASSED_ON.with(Cell::get);
            commit_rows(&db, from, rows);
            let frames = wal_frames(&db);
            let writes = PASSED_ON.with(Cell::get) - writes_before;
            // The frames before the commit frame in as few writes as
            // fit, the commit frame's header with the last of them, and
            // its page; and the WAL's header, synced on its own as the
            // commit starts the WAL over.
            let bytes = frames as usize * (4096 + FRAME_HEADER);
            let most = bytes.div_ceil(MOST_HELD) as u64 + 2;
            assert!(frames > 5, "{rows} rows wrote {frames} frames");
            assert!(
                writes <= most,
                "{frames} frames in {writes} writes, not at most {most}"
            );
        }
    }

    #[test]
    fn a_commit_is_in_the_file_before_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let db = batching(&path);
        db.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
            .unwrap();
        for n in 0..20 {
            commit_rows(&db, n * 50, 50);
        }
        // Another connection, on the default VFS, reads from the WAL
        // while the batching one is still open.
        let reader = Connection::open(&path).unwrap();
        let count: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 1000);
        // A copy of the files as a crash leaves them (no checkpoint, no
        // close) recovers every commit from the WAL.
        let copy = dir.path().join("copy.db");
        std::fs::copy(&path, &copy).unwrap();
        std::fs::copy(dir.path().join("w.db-wal"), dir.path().join("copy.db-wal")).unwrap();
        let recovered = Connection::open(&copy).unwrap();
        assert_eq!(rows_and_integrity(&recovered), (1000, "ok".to_owned()));
    }

    #[test]
    fn rolled_back_and_spilled_pages_and_wal_restarts_leave_a_sound_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let db = batching(&path);
        // A tiny page cache makes a large transaction spill frames into
        // the WAL before its commit.
        db.execute_batch(
            "PRAGMA cache_size = 10; CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)",
        )
        .unwrap();
        let other = Connection::open(&path).unwrap();
        for n in 0..10 {
            commit_rows(&db, n * 200, 200);
            db.execute_batch("BEGIN IMMEDIATE").unwrap();
            for i in 0..300 {
                db.execute(
                    "INSERT INTO t (id, body) VALUES (?1, zeroblob(900))",
                    [100_000 + n * 1000 + i],
                )
                .unwrap();
            }
            db.execute_batch("ROLLBACK").unwrap();
            // Another connection restarts the WAL now and then, so the
            // next commit writes it from the start.
            if n % 3 == 2 {
                let _: (i64, i64, i64) = other
                    .query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .unwrap();
            }
        }
        // Rows updated in place: frames overwritten within a transaction.
        db.execute_batch("BEGIN IMMEDIATE").unwrap();
        for round in 0..3 {
            db.execute(
                "UPDATE t SET body = zeroblob(800 + ?1) WHERE id % 7 = 0",
                [round],
            )
            .unwrap();
        }
        db.execute_batch("COMMIT").unwrap();
        assert_eq!(rows_and_integrity(&other), (2000, "ok".to_owned()));
    }
}
