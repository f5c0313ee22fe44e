//! Spill files for joins and aggregations bigger than memory: records go to
//! one of `BUCKETS` files chosen by a hash, each bucket is processed on its
//! own later, and a bucket above a fixed budget is split into parts first
//! (`split`, `for_each_part`), so memory does not grow with the log. Used by
//! the feedback join (`join`), the unit-level spill (`units`) and shadow
//! pairing (`pairing`).

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

pub(super) const BUCKETS: usize = 64;

/// One spill file per bucket, written once and read once. Every record starts
/// with the 8-byte hash that chose its bucket.
pub(super) struct Spill {
    /// Records waiting to be appended to each bucket's file. A file is opened
    /// only to append a full buffer, so a spill holds no descriptor between
    /// writes (an analysis by slices has hundreds of spills at once), and a
    /// bucket nothing was written to holds no memory.
    pending: Vec<Vec<u8>>,
    paths: Vec<PathBuf>,
    dir: PathBuf,
    name: String,
    /// A record goes to bucket `(hash / stride) % buckets`: 1 at the top; a
    /// bucket split again (`split`) uses the hash's next digits, the ones
    /// that did not choose the bucket, so its parts are even too.
    stride: u64,
}

/// A bucket's pending records are appended to its file beyond this size.
const PENDING_BYTES: usize = 8 << 10;

impl Spill {
    pub(super) fn create(dir: &Path, name: &str) -> std::io::Result<Spill> {
        Spill::with_buckets(dir, name, BUCKETS, 1)
    }

    fn with_buckets(dir: &Path, name: &str, buckets: usize, stride: u64) -> std::io::Result<Spill> {
        let mut paths = Vec::with_capacity(buckets);
        for bucket in 0..buckets {
            let path = dir.join(format!("{name}-{bucket:02}"));
            // Created empty now: a directory that cannot take them fails
            // here, before the log is read, and every bucket can be read.
            File::create(&path)?;
            paths.push(path);
        }
        Ok(Spill {
            pending: vec![Vec::new(); buckets],
            paths,
            dir: dir.to_path_buf(),
            name: name.to_owned(),
            stride,
        })
    }

    pub(super) fn write(&mut self, hash: u64, record: &[u8]) -> std::io::Result<()> {
        self.write_pieces(hash, &[record])
    }

    /// A record of any length (`stream_framed` reads it back): stored as its
    /// hash, its length and its bytes.
    pub(super) fn write_framed(&mut self, hash: u64, body: &[u8]) -> std::io::Result<()> {
        let length = u32::try_from(body.len())
            .map_err(|_| std::io::Error::other("a spilled record above 4 GiB"))?;
        self.write_pieces(hash, &[&hash.to_le_bytes(), &length.to_le_bytes(), body])
    }

    /// One record, given in pieces so that a framed one needs no copy.
    fn write_pieces(&mut self, hash: u64, pieces: &[&[u8]]) -> std::io::Result<()> {
        let bucket = ((hash / self.stride) % self.paths.len() as u64) as usize;
        let pending = &mut self.pending[bucket];
        if pending.capacity() == 0 {
            // Never more than one record beyond the threshold: no doubling.
            let length: usize = pieces.iter().map(|piece| piece.len()).sum();
            pending.reserve_exact(PENDING_BYTES + length);
        }
        for piece in pieces {
            pending.extend_from_slice(piece);
        }
        if pending.len() >= PENDING_BYTES {
            append(&self.paths[bucket], pending)?;
        }
        Ok(())
    }

    pub(super) fn flush(&mut self) -> std::io::Result<()> {
        for (pending, path) in self.pending.iter_mut().zip(&self.paths) {
            if !pending.is_empty() {
                append(path, pending)?;
            }
            // Spills are read after a flush: the buffers' memory goes (a
            // later write would start a new one).
            *pending = Vec::new();
        }
        Ok(())
    }

    /// How many `N`-byte records `bucket` holds (once flushed).
    pub(super) fn records<const N: usize>(&self, bucket: usize) -> std::io::Result<u64> {
        Ok(std::fs::metadata(&self.paths[bucket])?.len() / N as u64)
    }

    /// How many bytes `bucket` holds (once flushed).
    pub(super) fn bytes(&self, bucket: usize) -> std::io::Result<u64> {
        Ok(std::fs::metadata(&self.paths[bucket])?.len())
    }

    /// `bucket` spread over `parts` files of its own, for a bucket too big to
    /// process in memory at once: the parts are what the top-level buckets
    /// are, one level down. Spills split into the same number of parts agree
    /// on where each hash goes, so a join stays a join part by part. The
    /// files are removed when the split is dropped.
    pub(super) fn split<const N: usize>(
        &self,
        bucket: usize,
        parts: usize,
    ) -> std::io::Result<Spill> {
        self.split_by(bucket, parts, |split| {
            let mut failed = Ok(());
            self.stream::<N>(bucket, |record| {
                if failed.is_ok() {
                    failed = split.write(u64_at(&record, 0), &record);
                }
            })?;
            failed
        })
    }

    /// `split`, of a bucket of framed records (`write_framed`).
    fn split_framed(&self, bucket: usize, parts: usize) -> std::io::Result<Spill> {
        self.split_by(bucket, parts, |split| {
            let mut failed = Ok(());
            self.stream_framed(bucket, |hash, body| {
                if failed.is_ok() {
                    failed = split.write_framed(hash, body);
                }
            })?;
            failed
        })
    }

    /// A split of `bucket` into `parts`, filled by `copy`.
    fn split_by(
        &self,
        bucket: usize,
        parts: usize,
        copy: impl FnOnce(&mut Spill) -> std::io::Result<()>,
    ) -> std::io::Result<Spill> {
        let name = format!("{}-{bucket:02}-of", self.name);
        let stride = self.stride * self.paths.len() as u64;
        let mut split = Spill::with_buckets(&self.dir, &name, parts, stride)?;
        copy(&mut split)?;
        split.flush()?;
        Ok(split)
    }

    /// Calls `each` with every part of `bucket` in turn — the bucket itself,
    /// or, when it holds more than `max_records` records, the parts of its
    /// split — so that each holds at most about `max_records`.
    pub(super) fn for_each_part<const N: usize>(
        &self,
        bucket: usize,
        max_records: u64,
        mut each: impl FnMut(&Spill, usize) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let parts = parts_for(self.records::<N>(bucket)?, max_records);
        if parts == 1 {
            return each(self, bucket);
        }
        let split = self.split::<N>(bucket, parts)?;
        (0..parts).try_for_each(|part| each(&split, part))
    }

    /// `for_each_part` for framed records, each part holding at most about
    /// `max_bytes`.
    pub(super) fn for_each_framed_part(
        &self,
        bucket: usize,
        max_bytes: u64,
        mut each: impl FnMut(&Spill, usize) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let parts = parts_for(self.bytes(bucket)?, max_bytes);
        if parts == 1 {
            return each(self, bucket);
        }
        let split = self.split_framed(bucket, parts)?;
        (0..parts).try_for_each(|part| each(&split, part))
    }

    /// Every byte of one bucket (framed records: `frames`).
    pub(super) fn read_bytes(&self, bucket: usize) -> std::io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        BufReader::new(File::open(&self.paths[bucket])?).read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// The fixed-size records of one bucket.
    pub(super) fn read<const N: usize>(&self, bucket: usize) -> std::io::Result<Vec<[u8; N]>> {
        Ok(self
            .read_bytes(bucket)?
            .chunks_exact(N)
            .filter_map(|chunk| chunk.try_into().ok())
            .collect())
    }

    /// The fixed-size records of one bucket, one at a time: memory holds the
    /// reader's buffer, not the bucket.
    pub(super) fn stream<const N: usize>(
        &self,
        bucket: usize,
        mut on: impl FnMut([u8; N]),
    ) -> std::io::Result<()> {
        let mut reader = BufReader::with_capacity(1 << 16, File::open(&self.paths[bucket])?);
        let mut record = [0u8; N];
        loop {
            match reader.read_exact(&mut record) {
                Ok(()) => on(record),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// The framed records of one bucket (`write_framed`), one at a time:
    /// `on` gets each one's hash and bytes.
    fn stream_framed(&self, bucket: usize, mut on: impl FnMut(u64, &[u8])) -> std::io::Result<()> {
        let mut reader = BufReader::with_capacity(1 << 16, File::open(&self.paths[bucket])?);
        let mut header = [0u8; FRAME_HEADER];
        let mut body = Vec::new();
        loop {
            match reader.read_exact(&mut header) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
            let (hash, length) = frame_header(&header);
            body.resize(length, 0);
            reader.read_exact(&mut body)?;
            on(hash, &body);
        }
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        // A top-level spill's directory goes with it anyway; a split's parts
        // must not pile up beside it while the other buckets are processed.
        for path in &self.paths {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Appends `pending` to the file at `path` and empties it.
fn append(path: &Path, pending: &mut Vec<u8>) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)?
        .write_all(pending)?;
    pending.clear();
    Ok(())
}

/// A framed record's hash and length.
const FRAME_HEADER: usize = 12;

fn frame_header(header: &[u8]) -> (u64, usize) {
    let length = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    (u64_at(header, 0), length as usize)
}

/// The framed records (`write_framed`) of a bucket's bytes (`read_bytes`):
/// each one's hash and bytes, in the order they were written. A record cut
/// short (the spill's file system failed under it) ends the list.
pub(super) fn frames(bytes: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        let header = rest.get(..FRAME_HEADER)?;
        let (hash, length) = frame_header(header);
        let body = rest.get(FRAME_HEADER..FRAME_HEADER + length)?;
        rest = &rest[FRAME_HEADER + length..];
        Some((hash, body))
    })
}

/// Into how many parts to split a bucket of `records` so that each holds at
/// most about `max_records`.
pub(super) fn parts_for(records: u64, max_records: u64) -> usize {
    usize::try_from(records.div_ceil(max_records.max(1)).max(1)).unwrap_or(usize::MAX)
}

pub(super) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

pub(super) fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

#[cfg(test)]
mod tests {
    use xxhash_rust::xxh3::xxh3_64;

    use super::*;

    #[test]
    fn a_split_puts_each_record_in_one_part_by_the_digits_above_the_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let mut spill = Spill::create(dir.path(), "t").unwrap();
        for n in 0..10_000u64 {
            let hash = xxh3_64(&n.to_le_bytes());
            let mut record = [0u8; 16];
            record[..8].copy_from_slice(&hash.to_le_bytes());
            record[8..].copy_from_slice(&n.to_le_bytes());
            spill.write(hash, &record).unwrap();
        }
        spill.flush().unwrap();
        let bucket = spill.read::<16>(5).unwrap();
        let split = spill.split::<16>(5, 4).unwrap();
        let mut parts: Vec<[u8; 16]> = Vec::new();
        for part in 0..4 {
            let records = split.read::<16>(part).unwrap();
            assert!(
                records.len() > bucket.len() / 8,
                "parts are even: {}",
                records.len()
            );
            for record in &records {
                assert_eq!(u64_at(record, 0) / BUCKETS as u64 % 4, part as u64);
            }
            parts.extend(records);
        }
        let mut whole = bucket.clone();
        whole.sort_unstable();
        parts.sort_unstable();
        assert_eq!(parts, whole);
        let paths = split.paths.clone();
        drop(split);
        assert!(
            paths.iter().all(|path| !path.exists()),
            "a split's files go with it"
        );
    }
}
