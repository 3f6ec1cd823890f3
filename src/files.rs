//! Output files and run directories: where a result will land is checked before any work
//! (a destination that exists must be a regular file; its directory must exist and be
//! writable), results are written to a fresh temporary file beside the destination (unique
//! name, created exclusively, never through a link) and renamed over it only when complete,
//! and a run directory is held with an advisory lock that dies with its process.
//!
//! Errors name paths, never command-line flags: the CLI adds those.

use crate::error::input_error;
use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Where writing `path` lands: symbolic links are followed to their target, and the result is
/// an absolute path whose directory exists. Refused (input errors): a destination that exists
/// and is not a regular file, a dangling link, a missing directory, and a directory that
/// cannot be written to (tested by creating and removing a temporary file in it). A standard
/// stream's name ([`standard_stream`]) is accepted as it is: it is written to, not replaced.
pub fn destination(path: &Path) -> Result<PathBuf> {
    if path.as_os_str().is_empty() {
        return Err(input_error("the output path is empty"));
    }
    if standard_stream(path).is_some() {
        return Ok(path.to_path_buf());
    }
    let resolved = match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            let target = if meta.file_type().is_symlink() {
                std::fs::canonicalize(path).map_err(|_| {
                    input_error(format!(
                        "{} is a symbolic link to nothing (dangling)",
                        path.display()
                    ))
                })?
            } else {
                std::fs::canonicalize(path)
                    .map_err(|e| input_error(format!("cannot resolve {}: {e}", path.display())))?
            };
            let meta = std::fs::metadata(&target)
                .map_err(|e| input_error(format!("cannot read {}: {e}", target.display())))?;
            if !meta.is_file() {
                return Err(input_error(format!(
                    "{} exists and is not a regular file ({}); refusing to replace it",
                    path.display(),
                    kind(&meta)
                )));
            }
            target
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let name = path
                .file_name()
                .ok_or_else(|| input_error(format!("{} does not name a file", path.display())))?;
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let dir = std::fs::canonicalize(parent).map_err(|_| {
                input_error(format!("directory {} does not exist", parent.display()))
            })?;
            if !dir.is_dir() {
                return Err(input_error(format!(
                    "{} is not a directory",
                    parent.display()
                )));
            }
            dir.join(name)
        }
        Err(e) => {
            return Err(input_error(format!(
                "cannot access {}: {e}",
                path.display()
            )))
        }
    };
    let dir = parent_dir(&resolved);
    temporary_in(dir).map_err(|e| {
        input_error(format!(
            "cannot write {}: directory {} is not writable ({e})",
            path.display(),
            dir.display()
        ))
    })?;
    Ok(resolved)
}

/// Standard output or standard error, named as a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandardStream {
    Stdout,
    Stderr,
}

/// The standard stream `path` names: `/dev/stdout`, `/dev/stderr`, `/dev/fd/1`, `/dev/fd/2`,
/// `/proc/self/fd/1` or `/proc/self/fd/2`. Such a path is what the user asks to write to
/// (a pipe, a terminal, a file the shell opened): it is written to through the open stream,
/// never refused as a link to a pipe nor replaced by a rename.
pub fn standard_stream(path: &Path) -> Option<StandardStream> {
    match path.to_str()? {
        "/dev/stdout" | "/dev/fd/1" | "/proc/self/fd/1" => Some(StandardStream::Stdout),
        "/dev/stderr" | "/dev/fd/2" | "/proc/self/fd/2" => Some(StandardStream::Stderr),
        _ => None,
    }
}

impl StandardStream {
    /// The stream as a file of its own (a duplicate of its descriptor), after whatever the
    /// process's own buffered handle holds has been flushed.
    fn file(self, path: &Path) -> std::io::Result<File> {
        #[cfg(unix)]
        {
            use std::os::fd::AsFd;
            let _ = path; // opened by name only where there are no descriptors to duplicate
            let fd = match self {
                StandardStream::Stdout => {
                    let stdout = std::io::stdout();
                    stdout.lock().flush()?;
                    stdout.as_fd().try_clone_to_owned()?
                }
                StandardStream::Stderr => std::io::stderr().as_fd().try_clone_to_owned()?,
            };
            Ok(File::from(fd))
        }
        #[cfg(not(unix))]
        {
            let _ = self;
            OpenOptions::new().write(true).open(path)
        }
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a named pipe";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "not a file"
}

/// A new, uniquely named temporary file in `dir`, created exclusively (it never opens an
/// existing file or follows a link), readable as a normal new file would be (mode 0666 less
/// the umask, not tempfile's 0600). Removed when dropped unless persisted.
fn temporary_in(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".gliznet-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir)
}

/// True when `a` and `b` are the same file: the same device and inode when both exist (hard
/// links and symbolic links included), the same resolved path otherwise.
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    if let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        use std::os::unix::fs::MetadataExt;
        return ma.dev() == mb.dev() && ma.ino() == mb.ino();
    }
    let resolve = |p: &Path| {
        std::fs::canonicalize(p).ok().or_else(|| {
            let dir = std::fs::canonicalize(parent_dir(p)).ok()?;
            Some(dir.join(p.file_name()?))
        })
    };
    match (resolve(a), resolve(b)) {
        (Some(ra), Some(rb)) => ra == rb,
        _ => a == b,
    }
}

/// Writes `path` atomically through an open file: `write` fills a fresh temporary file beside
/// the destination (see [`destination`] for what is refused), which is flushed to disk and then
/// renamed over it. On any error the temporary file is removed and the destination is left as
/// it was.
pub fn write_atomically(path: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    if let Some(stream) = standard_stream(path) {
        // Written as it comes: a stream cannot be replaced whole.
        let mut file = stream
            .file(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        write(&mut file).with_context(|| format!("cannot write {}", path.display()))?;
        return file
            .flush()
            .with_context(|| format!("cannot write {}", path.display()));
    }
    let target = destination(path)?;
    let mut tmp = temporary_in(parent_dir(&target))
        .with_context(|| format!("cannot create a temporary file beside {}", path.display()))?;
    write(tmp.as_file_mut()).with_context(|| format!("cannot write {}", path.display()))?;
    tmp.as_file_mut()
        .flush()
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(&target)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot move {} into place", path.display()))?;
    Ok(())
}

/// [`write_atomically`] for writers that take a path: `write` gets the temporary file's path
/// (the file exists, empty, created by us under a unique name).
pub fn write_atomically_at(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let target = destination(path)?;
    let tmp = temporary_in(parent_dir(&target))
        .with_context(|| format!("cannot create a temporary file beside {}", path.display()))?;
    write(tmp.path()).with_context(|| format!("cannot write {}", path.display()))?;
    File::open(tmp.path())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(&target)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot move {} into place", path.display()))?;
    Ok(())
}

/// The lock file of a run directory.
pub const LOCK_FILE: &str = ".gliznet.lock";

/// An exclusive advisory lock on a directory (`flock` on its lock file), released when dropped
/// or when the process ends, however it ends: a killed process leaves no lock behind. The
/// holder's process id is written into the lock file, so a refusal can say who holds it.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// The directory is locked by another process.
#[derive(Debug)]
pub struct Locked {
    pub dir: PathBuf,
    /// The holder's process id, as it wrote it into the lock file.
    pub pid: Option<u32>,
}

impl std::fmt::Display for Locked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is in use by another gliznet process",
            self.dir.display()
        )?;
        match self.pid {
            Some(pid) => write!(f, " (pid {pid})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for Locked {}

impl DirLock {
    /// Takes the lock on `dir` (which must exist) without waiting. When another process holds
    /// it, the error is an input error saying so (see [`Locked`]).
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| {
                input_error(format!(
                    "cannot create the lock file {}: {e}",
                    path.display()
                ))
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let locked = Locked {
                    dir: dir.to_path_buf(),
                    pid: text.trim().parse().ok(),
                };
                return Err(input_error(locked.to_string()));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.flush())
            .with_context(|| format!("cannot write the lock file {}", path.display()))?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_refuses_what_is_not_a_regular_file() {
        let dir = tempfile::TempDir::new().unwrap();
        let err = destination(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a regular file (a directory)"), "{err}");
        let err = destination(&dir.path().join("missing/out.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
        #[cfg(unix)]
        {
            let link = dir.path().join("dangling");
            std::os::unix::fs::symlink(dir.path().join("nothing"), &link).unwrap();
            let err = destination(&link).unwrap_err().to_string();
            assert!(err.contains("dangling"), "{err}");
            let target = dir.path().join("target.json");
            std::fs::write(&target, "old").unwrap();
            let link = dir.path().join("link.json");
            std::os::unix::fs::symlink(&target, &link).unwrap();
            write_atomically(&link, |f| Ok(f.write_all(b"new")?)).unwrap();
            assert!(std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink());
            assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
            assert!(same_file(&link, &target));
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
    }

    #[test]
    fn failed_write_leaves_the_destination_and_no_debris() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::write(&path, "old").unwrap();
        let err = write_atomically(&path, |f| {
            f.write_all(b"partial")?;
            anyhow::bail!("disk full")
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("disk full"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            write_atomically(&path, |f| Ok(f.write_all(b"new")?)).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_ne!(mode & 0o044, 0, "mode {mode:o}: not 0600");
        }
    }

    /// Issue 35, defect 13: the names of the standard streams are written to, not refused as
    /// links to pipes; other paths under /dev and /proc are not streams.
    #[test]
    fn standard_streams_are_destinations_written_in_place() {
        for (name, stream) in [
            ("/dev/stdout", StandardStream::Stdout),
            ("/dev/fd/1", StandardStream::Stdout),
            ("/proc/self/fd/1", StandardStream::Stdout),
            ("/dev/stderr", StandardStream::Stderr),
            ("/dev/fd/2", StandardStream::Stderr),
            ("/proc/self/fd/2", StandardStream::Stderr),
        ] {
            assert_eq!(standard_stream(Path::new(name)), Some(stream), "{name}");
            assert_eq!(destination(Path::new(name)).unwrap(), Path::new(name));
        }
        for name in [
            "/dev/null",
            "/dev/fd/3",
            "/dev/stdin",
            "stdout",
            "/dev/stdout/x",
        ] {
            assert_eq!(standard_stream(Path::new(name)), None, "{name}");
        }
        // Written through the stream (stderr, which the test harness does not capture).
        write_atomically(Path::new("/dev/stderr"), |f| Ok(f.write_all(b"")?)).unwrap();
    }

    #[test]
    fn a_lock_is_exclusive_names_its_holder_and_dies_with_it() {
        let dir = tempfile::TempDir::new().unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        // flock locks belong to the open file description: a second open conflicts even in
        // the same process.
        let err = DirLock::acquire(dir.path()).unwrap_err();
        assert!(crate::error::is_input_error(&err));
        let pid = format!("(pid {})", std::process::id());
        assert!(err.to_string().contains(&pid), "{err}");
        drop(lock);
        DirLock::acquire(dir.path()).unwrap();
    }
}
