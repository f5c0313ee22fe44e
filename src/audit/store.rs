//! Where finished audit objects go. Every write is create-if-absent, so a
//! retried upload can never overwrite another batch, and re-uploading a batch
//! after a crash finds it already stored.

use std::path::PathBuf;

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
    pub async fn put_if_absent(&self, key: &str, body: Vec<u8>) -> Result<PutOutcome, StoreError> {
        match self {
            Store::Local(local) => {
                let local = local.clone();
                let key = key.to_owned();
                tokio::task::spawn_blocking(move || local.put_if_absent(&key, &body))
                    .await
                    .map_err(|e| StoreError::Local(std::io::Error::other(e)))?
            }
            Store::S3(s3) => s3.put_if_absent(key, body).await,
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
    fn put_if_absent(&self, key: &str, body: &[u8]) -> Result<PutOutcome, StoreError> {
        use std::io::Write;
        let path = self.root.join(key);
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir)?;
        let temp = dir.join(format!(".tmp-{}", uuid::Uuid::now_v7().simple()));
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(body)?;
        file.sync_all()?;
        // A hard link fails if the target exists: an atomic create-if-absent,
        // and readers never see a half-written object.
        let outcome = match std::fs::hard_link(&temp, &path) {
            Ok(()) => PutOutcome::Created,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => PutOutcome::AlreadyExists,
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                return Err(e.into());
            }
        };
        std::fs::remove_file(&temp)?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_puts_are_create_if_absent() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore {
            root: dir.path().to_owned(),
        };
        let key = "v1/dt=2026-11-26/hour=04/gw-1-abc-0.jsonl.gz";
        assert_eq!(
            store.put_if_absent(key, b"first").unwrap(),
            PutOutcome::Created
        );
        assert_eq!(
            store.put_if_absent(key, b"second").unwrap(),
            PutOutcome::AlreadyExists
        );
        assert_eq!(std::fs::read(dir.path().join(key)).unwrap(), b"first");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("v1/dt=2026-11-26/hour=04"))
            .unwrap()
            .collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
    }
}
