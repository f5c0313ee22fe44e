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
//! `<spool>/quarantine/` (bytes that failed their checksum, kept for forensics),
//! `<spool>/staging/` (the uploader's gzip objects of the segment it is
//! uploading; rebuilt on every attempt, so what a crash leaves there is junk).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

const FRAME_HEADER: usize = 8;
/// A length above this is corruption, not a record.
const MAX_FRAME: usize = 256 << 20;

pub struct SpoolDirs {
    pub open: PathBuf,
    pub sealed: PathBuf,
    pub quarantine: PathBuf,
    pub staging: PathBuf,
}

impl SpoolDirs {
    pub fn create(root: &Path) -> io::Result<SpoolDirs> {
        let dirs = SpoolDirs {
            open: root.join("open"),
            sealed: root.join("sealed"),
            quarantine: root.join("quarantine"),
            staging: root.join("staging"),
        };
        for dir in [&dirs.open, &dirs.sealed, &dirs.quarantine, &dirs.staging] {
            fs::create_dir_all(dir)?;
        }
        Ok(dirs)
    }
}

/// Takes the spool's lock file: two processes sharing a spool would recover
/// (and upload) each other's open segments.
///
/// Held through a read-only descriptor (flock needs no write access): a
/// file open for writing for the process's life would keep its volume from
/// being remounted read-only.
pub fn lock(root: &Path) -> io::Result<File> {
    let path = root.join("LOCK");
    drop(
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?,
    );
    let file = File::open(&path)?;
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

/// Appends one frame (header and payload) to `out`.
pub fn frame_into(out: &mut Vec<u8>, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| io::Error::other("record too large"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// The open segment. Frames not yet fsynced stay in memory beside the file
/// until their fsync succeeds: a failed write or fsync (a full or failing
/// disk) hands them back whole (`abandon`) instead of losing them.
pub struct Segment {
    pub name: String,
    path: PathBuf,
    file: File,
    /// Frames appended since the last successful fsync.
    unsynced: Vec<u8>,
    unsynced_records: u64,
    /// How much of `unsynced` the OS already has.
    written: usize,
    /// The file's length as of the last successful fsync.
    synced_len: u64,
    pub records: u64,
    pub bytes: u64,
    pub opened: Instant,
}

impl Segment {
    pub fn create(dirs: &SpoolDirs) -> io::Result<Segment> {
        let name = uuid::Uuid::now_v7().simple().to_string();
        let path = dirs.open.join(format!("{name}.wal"));
        // Readable too: `abandon` may have to read it back.
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let segment = Segment {
            name,
            path,
            file,
            unsynced: Vec::with_capacity(256 << 10),
            unsynced_records: 0,
            written: 0,
            synced_len: 0,
            records: 0,
            bytes: 0,
            opened: Instant::now(),
        };
        if let Err(error) = sync_dir(&dirs.open) {
            let _ = fs::remove_file(&segment.path);
            return Err(error);
        }
        Ok(segment)
    }

    pub fn append(&mut self, payload: &[u8]) -> io::Result<()> {
        let before = self.unsynced.len();
        frame_into(&mut self.unsynced, payload)?;
        self.count(1, self.unsynced.len() - before);
        Ok(())
    }

    /// Appends whole frames (as `frame_into` built them) holding `records` records.
    pub fn append_frames(&mut self, frames: &[u8], records: u64) {
        self.unsynced.extend_from_slice(frames);
        self.count(records, frames.len());
    }

    fn count(&mut self, records: u64, bytes: usize) {
        self.records += records;
        self.unsynced_records += records;
        self.bytes += bytes as u64;
    }

    /// Hands buffered frames to the OS (no fsync): they then survive the
    /// process being killed, though not the machine losing power.
    pub fn write_through(&mut self) -> io::Result<()> {
        if self.written < self.unsynced.len() {
            self.file.write_all(&self.unsynced[self.written..])?;
            self.written = self.unsynced.len();
        }
        Ok(())
    }

    /// Writes buffered frames and fsyncs them. Returns whether anything was synced.
    pub fn sync(&mut self) -> io::Result<bool> {
        if self.unsynced.is_empty() {
            return Ok(false);
        }
        self.write_through()?;
        self.file.sync_data()?;
        // A removed spool directory takes the file's name with it while
        // writes to the open file still succeed: those records would go
        // with the last descriptor. One stat per fsync notices it.
        if !self.path.exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the spool directory vanished",
            ));
        }
        self.synced_len += self.unsynced.len() as u64;
        self.unsynced.clear();
        self.unsynced_records = 0;
        self.written = 0;
        Ok(true)
    }

    /// Syncs and moves the segment to `sealed/`; it is done with once this
    /// succeeds. On failure it is still whole, for `abandon`.
    pub fn seal(&mut self, dirs: &SpoolDirs) -> io::Result<PathBuf> {
        let sealed = dirs.sealed.join(format!("{}.wal", self.name));
        self.sync()?;
        fs::rename(&self.path, &sealed)?;
        sync_dir(&dirs.sealed)?;
        sync_dir(&dirs.open)?;
        Ok(sealed)
    }

    /// Gives up on this segment after a failed write, fsync or seal: the
    /// frames that were not fsynced come back to the caller, the file is cut
    /// to what was fsynced and sealed (or removed when nothing was). If the
    /// file vanished with its directory, what was fsynced is read back through
    /// the still-open file and handed back too, so it can be written again.
    pub fn abandon(self, dirs: &SpoolDirs) -> Abandoned {
        let mut frames = Vec::new();
        let mut records = self.unsynced_records;
        let vanished = !self.path.exists();
        if vanished && self.synced_len > 0 {
            // Bounded by the segment size (`flush_bytes`).
            let mut rescued = vec![0; usize::try_from(self.synced_len).unwrap_or(0)];
            if std::os::unix::fs::FileExt::read_exact_at(&self.file, &mut rescued, 0).is_ok() {
                records += count_frames(&rescued);
                frames = rescued;
            }
        }
        frames.extend_from_slice(&self.unsynced);
        let leftover = Leftover {
            path: self.path,
            synced_len: if vanished { 0 } else { self.synced_len },
        };
        let (leftover, sealed) = match leftover.settle(dirs) {
            Ok(sealed) => (None, sealed),
            Err(_) => (Some(leftover), false),
        };
        Abandoned {
            frames,
            records,
            sealed,
            leftover,
        }
    }
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name)
            .field("records", &self.records)
            .field("synced_len", &self.synced_len)
            .field("unsynced_bytes", &self.unsynced.len())
            .finish_non_exhaustive()
    }
}

/// What `Segment::abandon` hands back.
pub struct Abandoned {
    /// Whole frames to write again.
    pub frames: Vec<u8>,
    pub records: u64,
    /// Whether the fsynced part was sealed for upload.
    pub sealed: bool,
    /// A file that could not be cut and sealed yet (`Leftover::settle` again later).
    pub leftover: Option<Leftover>,
}

/// An abandoned segment file still in `open/`.
pub struct Leftover {
    path: PathBuf,
    synced_len: u64,
}

impl Leftover {
    /// Cuts the file to its fsynced frames and seals it, or removes it when
    /// it holds none. Returns whether a segment was sealed.
    pub fn settle(&self, dirs: &SpoolDirs) -> io::Result<bool> {
        if self.synced_len == 0 {
            return match fs::remove_file(&self.path) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
                _ => Ok(false),
            };
        }
        let file = OpenOptions::new().write(true).open(&self.path)?;
        file.set_len(self.synced_len)?;
        file.sync_all()?;
        let sealed = dirs.sealed.join(self.path.file_name().unwrap_or_default());
        fs::rename(&self.path, &sealed)?;
        sync_dir(&dirs.sealed)?;
        sync_dir(&dirs.open)?;
        Ok(true)
    }
}

/// Whole frames in a buffer built by `frame_into`.
fn count_frames(mut frames: &[u8]) -> u64 {
    let mut count = 0;
    while let Some((header, rest)) = frames.split_first_chunk::<FRAME_HEADER>() {
        let [l0, l1, l2, l3, ..] = *header;
        let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
        if rest.len() < len {
            break;
        }
        frames = &rest[len..];
        count += 1;
    }
    count
}

/// Writes, fsyncs and removes a small file in `open/`: whether the spool's
/// disk takes writes again, without making a segment.
pub fn probe_write(dirs: &SpoolDirs) -> io::Result<()> {
    let path = dirs.open.join("probe.tmp");
    let written = File::create(&path).and_then(|mut file| {
        file.write_all(&[0u8; 4096])?;
        file.sync_data()
    });
    let _ = fs::remove_file(&path);
    written
}

/// Reads a segment's frames one at a time: memory holds one payload, not the
/// segment (a sealed segment is `flush_bytes` long, 64 MiB by default). Reading
/// stops at the first frame that is torn (cut short by a crash) or fails its
/// checksum; nothing after it is trusted, since its boundaries could be wrong.
pub struct Frames {
    reader: io::Take<BufReader<File>>,
    payload: Vec<u8>,
    valid_len: u64,
    total_len: u64,
    done: bool,
}

impl Frames {
    pub fn open(path: &Path) -> io::Result<Frames> {
        let file = File::open(path)?;
        let total_len = file.metadata()?.len();
        Ok(Frames {
            // Bounded by the length seen at open, so every frame is checked
            // against the same end of file.
            reader: BufReader::with_capacity(64 << 10, file).take(total_len),
            payload: Vec::new(),
            valid_len: 0,
            total_len,
            done: false,
        })
    }

    /// The next whole frame's payload whose checksum matches; `None` at the
    /// end of the valid frames (see `valid_len`). An error is an I/O failure,
    /// not a bad frame.
    pub fn next_payload(&mut self) -> io::Result<Option<&[u8]>> {
        if self.done {
            return Ok(None);
        }
        let remaining = self.total_len - self.valid_len;
        if remaining < FRAME_HEADER as u64 {
            self.done = true;
            return Ok(None);
        }
        let mut header = [0u8; FRAME_HEADER];
        self.reader.read_exact(&mut header)?;
        let [l0, l1, l2, l3, c0, c1, c2, c3] = header;
        let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
        let crc = u32::from_le_bytes([c0, c1, c2, c3]);
        if len > MAX_FRAME || remaining - (FRAME_HEADER as u64) < len as u64 {
            self.done = true;
            return Ok(None);
        }
        self.payload.clear();
        self.payload.resize(len, 0);
        self.reader.read_exact(&mut self.payload)?;
        if crc32fast::hash(&self.payload) != crc {
            self.done = true;
            return Ok(None);
        }
        self.valid_len += (FRAME_HEADER + len) as u64;
        Ok(Some(&self.payload))
    }

    /// Byte offset just past the last valid frame read so far; once
    /// `next_payload` returned `None`, where the segment stops being valid.
    pub fn valid_len(&self) -> u64 {
        self.valid_len
    }

    /// The file's length when it was opened.
    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// After `next_payload` returned `None`: whether every byte was a valid frame.
    pub fn is_intact(&self) -> bool {
        self.valid_len == self.total_len
    }
}

/// Moves the invalid tail of a segment (from `valid_len` on) to the
/// quarantine directory and truncates the segment to its valid frames.
/// Repeating it after a crash half-way gives the same result.
pub fn quarantine_tail(path: &Path, valid_len: u64, quarantine: &Path) -> io::Result<PathBuf> {
    let mut segment = OpenOptions::new().read(true).write(true).open(path)?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target = quarantine.join(format!("{name}-at-{valid_len}.bad"));
    let mut out = File::create(&target)?;
    segment.seek(SeekFrom::Start(valid_len))?;
    io::copy(&mut segment, &mut out)?;
    out.sync_all()?;
    segment.set_len(valid_len)?;
    segment.sync_all()?;
    Ok(target)
}

/// Start-up recovery: segments left open by a crash are checked, their torn
/// tail quarantined, and sealed. Returns the number of records recovered.
pub fn recover_open_segments(dirs: &SpoolDirs) -> io::Result<u64> {
    let mut recovered = 0;
    for path in segments_in(&dirs.open)? {
        let mut frames = Frames::open(&path)?;
        let mut records = 0u64;
        while frames.next_payload()?.is_some() {
            records += 1;
        }
        if !frames.is_intact() {
            let target = quarantine_tail(&path, frames.valid_len(), &dirs.quarantine)?;
            tracing::warn!(
                segment = %path.display(),
                good_records = records,
                bad_bytes = frames.total_len() - frames.valid_len(),
                quarantined = %target.display(),
                "audit spool segment had a torn or corrupt tail: the good part will be uploaded, the rest is quarantined"
            );
        }
        recovered += records;
        if records == 0 {
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

    /// Every valid payload, and whether the whole file was valid.
    fn read_all(path: &Path) -> (Vec<Vec<u8>>, bool) {
        let mut frames = Frames::open(path).unwrap();
        let mut payloads = Vec::new();
        while let Some(payload) = frames.next_payload().unwrap() {
            payloads.push(payload.to_vec());
        }
        (payloads, frames.is_intact())
    }

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
        let (payloads, intact) = read_all(&sealed);
        assert!(intact);
        assert_eq!(payloads, vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]);
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
            let (payloads, intact) = read_all(&path);
            let whole = frame_ends.iter().filter(|&&end| end <= cut).count();
            assert_eq!(payloads.len(), whole, "cut at {cut}");
            assert_eq!(
                intact,
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
        let (payloads, intact) = read_all(&sealed[0]);
        assert!(intact);
        assert_eq!(payloads, vec![b"one".to_vec()]);
        let quarantined: Vec<_> = fs::read_dir(&dirs.quarantine).unwrap().collect();
        assert_eq!(quarantined.len(), 1);
        let bad = fs::read(quarantined[0].as_ref().unwrap().path()).unwrap();
        assert_eq!(bad.len(), bytes.len() - (8 + 3));
    }

    #[test]
    fn a_length_past_the_end_or_the_limit_stops_reading() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = SpoolDirs::create(dir.path()).unwrap();
        let path = write_segment(&dirs, &["kept"]);
        let good = fs::read(&path).unwrap();
        for len in [u32::MAX, (MAX_FRAME + 1) as u32, 100] {
            let mut bytes = good.clone();
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(&[0; 4 + 20]);
            fs::write(&path, &bytes).unwrap();
            let mut frames = Frames::open(&path).unwrap();
            assert_eq!(frames.next_payload().unwrap(), Some(&b"kept"[..]));
            assert_eq!(frames.next_payload().unwrap(), None, "length {len}");
            assert_eq!(frames.next_payload().unwrap(), None, "stays at the end");
            assert_eq!(frames.valid_len(), good.len() as u64);
            assert!(!frames.is_intact());
        }
    }
}
