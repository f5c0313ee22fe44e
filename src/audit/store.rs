//! Where finished audit objects go. Every write is create-if-absent, so a
//! retried upload can never overwrite another batch, and re-uploading a batch
//! after a crash finds it already stored.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    /// The key already exists: written by an earlier attempt of this same batch.
    AlreadyExists,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("local audit directory: {0}")]
    Local(#[from] std::io::Error),
    #[error("S3: {0}")]
    S3(String),
}

pub enum Store {
    Local(LocalStore),
    S3(super::s3::S3Store),
}

impl Store {
    /// Stores the file at `staged` (complete and fsynced) under `key`. The
    /// file is streamed, never read into memory, and may end up linked as the
    /// object itself: the caller must not write to it again.
    pub async fn put_file_if_absent(
        &self,
        key: &str,
        staged: &Path,
    ) -> Result<PutOutcome, StoreError> {
        match self {
            Store::Local(local) => {
                let local = local.clone();
                let key = key.to_owned();
                let staged = staged.to_owned();
                tokio::task::spawn_blocking(move || local.put_file_if_absent(&key, &staged))
                    .await
                    .map_err(|e| StoreError::Local(io::Error::other(e)))?
            }
            Store::S3(s3) => s3.put_file_if_absent(key, staged).await,
        }
    }

    /// Checks at start-up that objects can be written (bucket exists,
    /// credentials accepted): a misconfiguration is reported at once.
    pub async fn check(&self) -> Result<(), StoreError> {
        match self {
            Store::Local(local) => std::fs::create_dir_all(&local.root).map_err(StoreError::Local),
            Store::S3(s3) => s3.check().await,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Store::Local(local) => format!("directory {}", local.root.display()),
            Store::S3(s3) => s3.describe(),
        }
    }
}

/// A directory with the bucket's layout.
#[derive(Clone)]
pub struct LocalStore {
    pub root: PathBuf,
}

impl LocalStore {
    fn put_file_if_absent(&self, key: &str, staged: &Path) -> Result<PutOutcome, StoreError> {
        let path = self.root.join(key);
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir)?;
        // A hard link fails if the target exists: an atomic create-if-absent,
        // and readers never see a half-written object. Linking the staged
        // file itself writes nothing more; across file systems it is copied
        // next to the target first.
        let outcome = match link_if_absent(staged, &path) {
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                let temp = dir.join(format!(".tmp-{}", uuid::Uuid::now_v7().simple()));
                let copied = std::fs::copy(staged, &temp)
                    .and_then(|_| std::fs::File::open(&temp)?.sync_all())
                    .and_then(|()| link_if_absent(&temp, &path));
                let _ = std::fs::remove_file(&temp);
                copied?
            }
            linked => linked?,
        };
        std::fs::File::open(dir)?.sync_all()?;
        Ok(outcome)
    }
}

fn link_if_absent(from: &Path, to: &Path) -> io::Result<PutOutcome> {
    match std::fs::hard_link(from, to) {
        Ok(()) => Ok(PutOutcome::Created),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(PutOutcome::AlreadyExists),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_puts_are_create_if_absent() {
        let dir = tempfile::tempdir().unwrap();
        let staging = tempfile::tempdir().unwrap();
        let store = LocalStore {
            root: dir.path().to_owned(),
        };
        let staged = |name: &str, body: &[u8]| {
            let path = staging.path().join(name);
            std::fs::write(&path, body).unwrap();
            path
        };
        let key = "v1/dt=2026-11-26/hour=04/gw-1-abc-0.jsonl.gz";
        assert_eq!(
            store
                .put_file_if_absent(key, &staged("a", b"first"))
                .unwrap(),
            PutOutcome::Created
        );
        assert_eq!(
            store
                .put_file_if_absent(key, &staged("b", b"second"))
                .unwrap(),
            PutOutcome::AlreadyExists
        );
        // The staged file may go once stored: the object stays.
        std::fs::remove_file(staging.path().join("a")).unwrap();
        assert_eq!(std::fs::read(dir.path().join(key)).unwrap(), b"first");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("v1/dt=2026-11-26/hour=04"))
            .unwrap()
            .collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
    }

    #[test]
    fn a_staged_file_on_another_file_system_is_copied_then_linked() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        // tmpfs is a file system of its own on most Linux machines.
        let Ok(staging) = tempfile::tempdir_in("/dev/shm") else {
            eprintln!("skipped: no /dev/shm");
            return;
        };
        let device = |p: &Path| std::fs::metadata(p).unwrap().dev();
        if device(dir.path()) == device(staging.path()) {
            eprintln!("skipped: /dev/shm is on the same file system as the temp dir");
            return;
        }
        let store = LocalStore {
            root: dir.path().to_owned(),
        };
        let staged = staging.path().join("object");
        std::fs::write(&staged, b"body").unwrap();
        let key = "v1/dt=2026-11-26/hour=04/gw-1-abc-0.jsonl.gz";
        assert_eq!(
            store.put_file_if_absent(key, &staged).unwrap(),
            PutOutcome::Created
        );
        assert_eq!(
            store.put_file_if_absent(key, &staged).unwrap(),
            PutOutcome::AlreadyExists
        );
        assert_eq!(std::fs::read(dir.path().join(key)).unwrap(), b"body");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("v1/dt=2026-11-26/hour=04"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("gw-1-abc-0.jsonl.gz")]);
    }
}
