//! The on-disk answer cache: an answer is stored under a hash of the request
//! exactly as rendered (body, endpoint, the route's providers, the repeat),
//! so re-running an unchanged variant asks no provider, and any change to a
//! prompt, a parameter or a model asks again.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::call::Answer;
use promptgate_core::dialect::Endpoint;

/// Bumped when the stored answer's shape or the key's recipe changes.
const FORMAT: &str = "promptgate.eval.cache.v1";

pub struct AnswerCache {
    dir: PathBuf,
}

/// The hash an answer is stored under (hex SHA-256).
pub fn key(endpoint: Endpoint, providers: &[&str], body: &[u8], repeat: u32) -> String {
    let mut hasher = Sha256::new();
    for part in [FORMAT.as_bytes(), endpoint.label().as_bytes()] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    for provider in providers {
        hasher.update((provider.len() as u64).to_le_bytes());
        hasher.update(provider.as_bytes());
    }
    hasher.update(repeat.to_le_bytes());
    hasher.update((body.len() as u64).to_le_bytes());
    hasher.update(body);
    hex::encode(hasher.finalize())
}

impl AnswerCache {
    pub fn new(dir: &Path) -> AnswerCache {
        AnswerCache {
            dir: dir.to_owned(),
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir
            .join(&key[..2.min(key.len())])
            .join(format!("{key}.json"))
    }

    /// The stored answer; a missing or unreadable entry is a miss.
    pub fn get(&self, key: &str) -> Option<Answer> {
        let bytes = std::fs::read(self.path(key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Stores an answer: written beside its place and renamed, so a reader
    /// never sees half an entry. A failure only costs a later call.
    pub fn put(&self, key: &str, answer: &Answer) -> std::io::Result<()> {
        let path = self.path(key);
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        std::fs::create_dir_all(parent)?;
        let temporary = parent.join(format!(".{key}.{}.tmp", std::process::id()));
        std::fs::write(&temporary, serde_json::to_vec(answer)?)?;
        std::fs::rename(&temporary, &path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_depends_on_everything_that_changes_the_answer() {
        let base = key(Endpoint::ChatCompletions, &["demo"], b"{}", 0);
        assert_eq!(base, key(Endpoint::ChatCompletions, &["demo"], b"{}", 0));
        for other in [
            key(Endpoint::Messages, &["demo"], b"{}", 0),
            key(Endpoint::ChatCompletions, &["other"], b"{}", 0),
            key(Endpoint::ChatCompletions, &["demo"], b"{ }", 0),
            key(Endpoint::ChatCompletions, &["demo"], b"{}", 1),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn an_answer_comes_back_as_stored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = AnswerCache::new(dir.path());
        let answer = Answer {
            text: "hello".into(),
            input_tokens: Some(3),
            output_tokens: None,
            latency_ms: 1.5,
        };
        assert_eq!(cache.get("abcd"), None);
        cache.put("abcd", &answer).expect("stored");
        assert_eq!(cache.get("abcd"), Some(answer));
    }
}
