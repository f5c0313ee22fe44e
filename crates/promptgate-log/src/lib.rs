//! The audit log's format, shared by the gateway that writes it and
//! `promptgate analyze` that reads it: the UTC dates of its `dt=`
//! partitions (`time`) and the S3 client both connect with (`s3`).

pub mod s3;
pub mod time;
