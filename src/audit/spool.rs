//! The write-ahead spool: records are appended to a segment file as checksummed
//! frames and fsynced in group commits; a full segment is sealed (renamed into
//! `sealed/`) and waits there until every object built from it is stored.
//! Nothing is deleted before the store acknowledged it.
//!
//! Frame: `u32 LE payload length | u32 LE CRC-32 of the payload | payload`,
//! where the payload is one JSON record without its newline.
//!
//! Layout: `<spool>/open/<segment>.wal` (being written; after a crash it is
//! recovered at start-up), `<spool>/sealed/<segment>.wal`,
//! `<spool>/quarantine/` (bytes that failed their checksum, kept for forensics).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

const FRAME_HEADER: usize = 8;
/// A length above this is corruption, not a record.
const MAX_FRAME: usize = 256 << 20;

pub struct SpoolDirs {
    pub open: PathBuf,
    pub sealed: PathBuf,
    pub quarantine: PathBuf,
}

impl SpoolDirs {
    pub fn create(root: &Path) -> io::Result<SpoolDirs> {
        let dirs = SpoolDirs {
            open: root.join("open"),
            sealed: root.join("sealed"),
            quarantine: root.join("quarantine"),
        };
        for dir in [&dirs.open, &dirs.sealed, &dirs.quarantine] {
            fs::create_dir_all(dir)?;
        }
        Ok(dirs)
    }
}

/// Takes the spool's lock file: two processes sharing a spool would recover
/// (and upload) each other's open segments.
pub fn lock(root: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join("LOCK"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(io::Error::other(
            "another promptgate process uses this spool directory; give each replica its own spool_dir",
        )),
        Err(fs::TryLockError::Error(error)) => Err(error),
    }
}

/// Segment files in a directory, oldest first (names are UUIDv7: time-ordered).
pub fn segments_in(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    Ok(files)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

pub struct Segment {
    pub name: String,
    path: PathBuf,
    file: BufWriter<File>,
    pub records: u64,
    pub bytes: u64,
    pub opened: Instant,
    unsynced: bool,
}

impl Segment {
    pub fn create(dirs: &SpoolDirs) -> io::Result<Segment> {
        let name = uuid::Uuid::now_v7().simple().to_string();
        let path = dirs.open.join(format!("{name}.wal"));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        sync_dir(&dirs.open)?;
        Ok(Segment {
            name,
            path,
            file: BufWriter::with_capacity(256 << 10, file),
            records: 0,
            bytes: 0,
            opened: Instant::now(),
            unsynced: false,
        })
    }

    pub fn append(&mut self, payload: &[u8]) -> io::Result<()> {
        let len = u32::try_from(payload.len()).map_err(|_| io::Error::other("record too large"))?;
        self.file.write_all(&len.to_le_bytes())?;
        self.file
            .write_all(&crc32fast::hash(payload).to_le_bytes())?;
        self.file.write_all(payload)?;
        self.records += 1;
        self.bytes += (FRAME_HEADER + payload.len()) as u64;
        self.unsynced = true;
        Ok(())
    }

    /// Hands buffered frames to the OS (no fsync): they then survive the
    /// process being killed, though not the machine losing power.
    pub fn write_through(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    /// Writes buffered frames and fsyncs them. Returns whether anything was synced.
    pub fn sync(&mut self) -> io::Result<bool> {
        if !self.unsynced {
            return Ok(false);
        }
        self.file.flush()?;
        self.file.get_ref().sync_data()?;
        self.unsynced = false;
        Ok(true)
    }

    /// Syncs and moves the segment to `sealed/`.
    pub fn seal(mut self, dirs: &SpoolDirs) -> io::Result<PathBuf> {
        self.sync()?;
        let sealed = dirs.sealed.join(format!("{}.wal", self.name));
        fs::rename(&self.path, &sealed)?;
        sync_dir(&dirs.sealed)?;
        sync_dir(&dirs.open)?;
        Ok(sealed)
    }
}

/// The frames of a segment file, and where it stopped being valid.
pub struct ReadSegment {
    pub payloads: Vec<Vec<u8>>,
    /// Byte offset of the first invalid frame (a torn write or corruption).
    pub valid_len: u64,
    pub total_len: u64,
}

impl ReadSegment {
    pub fn is_intact(&self) -> bool {
        self.valid_len == self.total_len
    }
}

pub fn read_segment(path: &Path) -> io::Result<ReadSegment> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let mut payloads = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= FRAME_HEADER {
        let len =
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        let start = at + FRAME_HEADER;
        if len > MAX_FRAME || bytes.len() - start < len {
            break;
        }
        let payload = &bytes[start..start + len];
        if crc32fast::hash(payload) != crc {
            break;
        }
        payloads.push(payload.to_vec());
        at = start + len;
    }
    Ok(ReadSegment {
        payloads,
        valid_len: at as u64,
        total_len: bytes.len() as u64,
    })
}

/// Moves the invalid tail of a segment to `quarantine/` and truncates the
/// segment to its valid frames.
pub fn quarantine_tail(path: &Path, read: &ReadSegment, dirs: &SpoolDirs) -> io::Result<PathBuf> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target = dirs
        .quarantine
        .join(format!("{name}-at-{}.bad", read.valid_len));
    let mut out = File::create(&target)?;
    out.write_all(&bytes[read.valid_len as usize..])?;
    out.sync_all()?;
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(read.valid_len)?;
    file.sync_all()?;
    Ok(target)
}

/// Start-up recovery: segments left open by a crash are checked, their torn
/// tail quarantined, and sealed. Returns the number of records recovered.
pub fn recover_open_segments(dirs: &SpoolDirs) -> io::Result<u64> {
    let mut recovered = 0;
    for path in segments_in(&dirs.open)? {
        let read = read_segment(&path)?;
        if !read.is_intact() {
            let target = quarantine_tail(&path, &read, dirs)?;
            tracing::warn!(
                segment = %path.display(),
                good_records = read.payloads.len(),
                bad_bytes = read.total_len - read.valid_len,
                quarantined = %target.display(),
                "audit spool segment had a torn or corrupt tail: the good part will be uploaded, the rest is quarantined"
            );
        }
        recovered += read.payloads.len() as u64;
        if read.payloads.is_empty() {
            fs::remove_file(&path)?;
            continue;
        }
        let sealed = dirs.sealed.join(path.file_name().unwrap_or_default());
        fs::rename(&path, &sealed)?;
    }
    sync_dir(&dirs.sealed)?;
    Ok(recovered)
}

/// Bytes currently held by the spool (open and sealed segments).
pub fn spool_bytes(dirs: &SpoolDirs) -> u64 {
    [&dirs.open, &dirs.sealed]
        .iter()
        .filter_map(|d| fs::read_dir(d).ok())
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_segment(dirs: &SpoolDirs, records: &[&str]) -> PathBuf {
        let mut segment = Segment::create(dirs).unwrap();
        for r in records {
            segment.append(r.as_bytes()).unwrap();
        }
        segment.sync().unwrap();
        dirs.open.join(format!("{}.wal", segment.name))
    }

    #[test]
    fn frames_round_trip_and_seal() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = SpoolDirs::create(dir.path()).unwrap();
        let mut segment = Segment::create(&dirs).unwrap();
        segment.append(b"{\"a\":1}").unwrap();
        segment.append(b"{\"b\":2}").unwrap();
        assert_eq!(segment.records, 2);
        let sealed = segment.seal(&dirs).unwrap();
        let read = read_segment(&sealed).unwrap();
        assert!(read.is_intact());
        assert_eq!(
            read.payloads,
            vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]
        );
        assert!(segments_in(&dirs.open).unwrap().is_empty());
    }

    #[test]
    fn a_segment_cut_anywhere_keeps_every_whole_frame() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = SpoolDirs::create(dir.path()).unwrap();
        let path = write_segment(&dirs, &["first", "second record", "third"]);
        let full = fs::read(&path).unwrap();
        let frame_ends = [8 + 5, 8 + 5 + 8 + 13, full.len()];
        for cut in 0..=full.len() {
            fs::write(&path, &full[..cut]).unwrap();
            let read = read_segment(&path).unwrap();
            let whole = frame_ends.iter().filter(|&&end| end <= cut).count();
            assert_eq!(read.payloads.len(), whole, "cut at {cut}");
            assert_eq!(
                read.is_intact(),
                frame_ends.contains(&cut) || cut == 0,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_flipped_bit_is_detected_and_recovery_quarantines_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = SpoolDirs::create(dir.path()).unwrap();
        let path = write_segment(&dirs, &["one", "two", "three"]);
        let mut bytes = fs::read(&path).unwrap();
        let second_payload = 8 + 3 + 8;
        bytes[second_payload] ^= 0x20; // "two" → "Two": CRC mismatch
        fs::write(&path, &bytes).unwrap();
        assert_eq!(recover_open_segments(&dirs).unwrap(), 1);
        let sealed = segments_in(&dirs.sealed).unwrap();
        assert_eq!(sealed.len(), 1);
        let read = read_segment(&sealed[0]).unwrap();
        assert!(read.is_intact());
        assert_eq!(read.payloads, vec![b"one".to_vec()]);
        let quarantined: Vec<_> = fs::read_dir(&dirs.quarantine).unwrap().collect();
        assert_eq!(quarantined.len(), 1);
        let bad = fs::read(quarantined[0].as_ref().unwrap().path()).unwrap();
        assert_eq!(bad.len(), bytes.len() - (8 + 3));
    }
}
