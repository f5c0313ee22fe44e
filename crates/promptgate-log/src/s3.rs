//! The S3 client configuration of the audit log's writer (the gateway's S3
//! store) and of its reader (`promptgate analyze`'s S3 source).

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::Region;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// An S3 client configuration from the standard AWS chain, with the
/// S3-compatible overrides (endpoint, path-style) and `us-east-1` when no
/// region is found; shared by the audit sink and `promptgate analyze`.
pub async fn client_config(
    endpoint: Option<&str>,
    region: Option<&str>,
    force_path_style: bool,
) -> aws_sdk_s3::config::Builder {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    let shared = loader.load().await;
    let mut builder = aws_sdk_s3::config::Builder::from(&shared).force_path_style(force_path_style);
    if shared.region().is_none() {
        builder = builder.region(Region::new("us-east-1"));
    }
    builder
}
