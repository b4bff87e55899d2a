//! Every output file (`.npy`, `.png`, `.json`, `.html`) is written through [`write_with`]: into
//! a temporary file beside the destination, then renamed over it. A rename within one folder is
//! atomic on POSIX file systems, so a reader (or a second run writing the same folder) sees the
//! old file or the whole new one, never half of it, and a failed write (a full disk) leaves no
//! truncated file behind. A destination that is not a regular file (`/dev/stdout`, a FIFO) is
//! written in place, and a symbolic link's target is replaced, not the link.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically.
pub fn write_bytes(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    write_with(path, |w| w.write_all(bytes))
}

/// Writes `path` atomically: `fill` writes the contents into a buffered temporary file in the
/// same folder, which is then flushed, synced and renamed to `path`. Any failure is an
/// [`ErrorKind::Output`](crate::error::ErrorKind::Output) error naming `path` and the reason,
/// and removes the temporary file.
pub fn write_with(
    path: impl AsRef<Path>,
    fill: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    let path = path.as_ref();
    let fail = |e: std::io::Error| Error::output(format!("cannot write {}: {e}", path.display()));
    match std::fs::metadata(path) {
        // A device or a pipe (`-o /dev/stdout`, a FIFO): written in place, since renaming over
        // it would replace the device node rather than write to it.
        Ok(m) if !m.is_file() && !m.is_dir() => {
            let mut w = BufWriter::new(OpenOptions::new().write(true).open(path).map_err(fail)?);
            return fill(&mut w).and_then(|()| w.flush()).map_err(fail);
        }
        // A symbolic link to a file: the file it names is replaced, the link kept.
        Ok(_) if path.is_symlink() => {
            let target = std::fs::canonicalize(path).map_err(fail)?;
            return write_with(target, fill).map_err(|e| e.context(path.display()));
        }
        _ => {}
    }
    let (tmp, file) = temp_beside(path).map_err(fail)?;
    let mut w = BufWriter::new(file);
    let written = fill(&mut w)
        .and_then(|()| w.flush())
        // The data must be on disk before the rename makes it visible under the final name, or
        // a crash could leave a complete-looking name over missing data.
        .and_then(|()| w.get_ref().sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        drop(w);
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    Ok(())
}

/// A new file `.NAME.PID-N.tmp` in `path`'s folder: hidden, unique to this process and call, and
/// on the same file system as `path` so that the rename cannot cross devices.
fn temp_beside(path: &Path) -> std::io::Result<(PathBuf, File)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(
            ".{}.{}-{n}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        // `create_new`: a stale temporary file of an earlier process with the same id is never
        // written through; the next number is tried instead.
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("netlens-atomic-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let d = dir("replace");
        let p = d.join("a.json");
        write_bytes(&p, b"first").unwrap();
        write_bytes(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap()).collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_removes_the_temporary() {
        let d = dir("fail");
        let p = d.join("a.npy");
        write_bytes(&p, b"old").unwrap();
        let e = write_with(&p, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Output);
        assert!(e.message.contains("a.npy") && e.message.contains("disk full"));
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_folder_is_an_output_error_naming_the_path() {
        let p = dir("missing").join("no/such/dir/x.png");
        let e = write_bytes(&p, b"x").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Output);
        assert!(e.message.contains("no/such/dir/x.png"), "{}", e.message);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_device_is_written_in_place() {
        // Renaming over /dev/null would replace the device; writing to it must succeed and
        // leave it a device.
        write_bytes("/dev/null", b"x").unwrap();
        assert!(!std::fs::metadata("/dev/null").unwrap().is_file());
        let e = write_bytes("/dev/full", b"x").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Output);
        assert!(e.message.contains("/dev/full"), "{}", e.message);
    }

    #[cfg(unix)]
    #[test]
    fn a_link_keeps_pointing_at_the_replaced_file() {
        let d = dir("link");
        std::fs::write(d.join("real.json"), b"old").unwrap();
        std::os::unix::fs::symlink(d.join("real.json"), d.join("link.json")).unwrap();
        write_bytes(d.join("link.json"), b"new").unwrap();
        assert!(d.join("link.json").is_symlink());
        assert_eq!(std::fs::read(d.join("real.json")).unwrap(), b"new");
    }

    #[test]
    fn a_bare_file_name_is_written_in_the_current_folder() {
        let p = PathBuf::from(format!("netlens-atomic-{}.txt", std::process::id()));
        write_bytes(&p, b"x").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"x");
        std::fs::remove_file(&p).unwrap();
    }
}
