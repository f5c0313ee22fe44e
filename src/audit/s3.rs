//! The S3 store (aws-sdk-s3): placeholder until the S3 client lands.

use super::config::StoreConfig;
use super::store::{PutOutcome, StoreError};

pub struct S3Store {
    description: String,
}

impl S3Store {
    pub async fn connect(config: &StoreConfig) -> S3Store {
        S3Store {
            description: format!("{config:?}"),
        }
    }

    pub async fn put_if_absent(
        &self,
        _key: &str,
        _body: Vec<u8>,
    ) -> Result<PutOutcome, StoreError> {
        Err(StoreError::S3("the S3 sink is not built yet".into()))
    }

    pub async fn check(&self) -> Result<(), StoreError> {
        Err(StoreError::S3("the S3 sink is not built yet".into()))
    }

    pub fn describe(&self) -> String {
        self.description.clone()
    }
}
