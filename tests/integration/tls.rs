//! TLS on the client and admin listeners, with certificates made here by
//! rcgen: a CA, server certificates, client certificates. Every connection
//! is a real handshake on a loopback port.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::support::{self, CLIENT_KEY, TestGateway, standard_config};
use promptgate::simulator::{SimConfig, Simulator};

/// A CA that signs server and client certificates.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM and as rustls wants them.
struct Issued {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "promptgate test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate with this CN and these SANs (DNS names, or URIs when
    /// they contain "://").
    fn issue(&self, common_name: &str, names: &[&str]) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.subject_alt_names = names
            .iter()
            .map(|name| {
                if name.contains("://") {
                    rcgen::SanType::URI(name.to_string().try_into().unwrap())
                } else if let Ok(ip) = name.parse() {
                    rcgen::SanType::IpAddress(ip)
                } else {
                    rcgen::SanType::DnsName(name.to_string().try_into().unwrap())
                }
            })
            .collect();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }
}

impl Issued {
    fn write(&self, cert: &Path, key: &Path) {
        std::fs::write(cert, &self.cert_pem).unwrap();
        std::fs::write(key, &self.key_pem).unwrap();
    }
}

/// The gateway with `[server.tls]` and `[admin.tls]` from files in `files`
/// (the server certificate, its key, the CA as `ca.pem`), watched every 20 ms.
struct TlsGateway {
    gateway: TestGateway,
    ca: Ca,
    server_cert: Issued,
    files: PathBuf,
    _sim: Simulator,
}

/// `mutual`: `Some(required)` verifies client certificates against the CA,
/// maps `svc-a.example` to client `svc-a` (which has no key), `svc-b.example`
/// to `svc-b` (no key, allowed only `other-*` models) and a SPIFFE id to
/// `test-app` (which also has `CLIENT_KEY`).
async fn start(mutual: Option<bool>) -> TlsGateway {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let ca = Ca::new();
    let server_cert = ca.issue("promptgate", &["localhost", "127.0.0.1"]);
    // The files must exist before validation: a directory of their own,
    // named by absolute path.
    let files = tempfile::tempdir().unwrap().keep();
    server_cert.write(&files.join("tls.crt"), &files.join("tls.key"));
    std::fs::write(files.join("ca.pem"), ca.pem()).unwrap();
    let mut config = standard_config(&sim).replace("[server]\n", "[server]\nconfig_poll_ms = 20\n");
    let mut server_tls = String::new();
    if let Some(required) = mutual {
        config = config.replace(
            "id = \"test-app\"\n",
            "id = \"test-app\"\ncertificate_names = [\"spiffe://example.org/ns/prod/sa/test-app\"]\n",
        ) + "\n[[auth.clients]]\nid = \"svc-a\"\ncertificate_names = [\"svc-a.example\"]\n\
            \n[[auth.clients]]\nid = \"svc-b\"\ncertificate_names = [\"svc-b.example\"]\n\
            [auth.clients.allow]\nmodels = [\"other-*\"]\n";
        server_tls = format!(
            "client_ca_file = \"{}\"\nrequire_client_cert = {required}\n",
            files.join("ca.pem").display()
        );
    }
    let config = format!(
        "{config}\n[server.tls]\ncert_file = \"{dir}/tls.crt\"\nkey_file = \"{dir}/tls.key\"\n{server_tls}\n[admin.tls]\ncert_file = \"{dir}/tls.crt\"\nkey_file = \"{dir}/tls.key\"\n",
        dir = files.display(),
    );
    TlsGateway {
        gateway: TestGateway::start(&config).await,
        ca,
        server_cert,
        files,
        _sim: sim,
    }
}

impl TlsGateway {
    /// A modern-TLS connection to the client listener presenting `cert`.
    async fn connect_as(&self, cert: &Issued) -> Connection {
        connect(
            self.gateway.addr,
            client_config(&self.ca, MODERN, Some(cert)),
        )
        .await
        .unwrap()
    }
}

impl Drop for TlsGateway {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.files);
    }
}

fn client_config(
    ca: &Ca,
    versions: &[&'static rustls::SupportedProtocolVersion],
    identity: Option<&Issued>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.issuer.der().clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(issued) => builder
            .with_client_auth_cert(
                vec![issued.der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(issued.key_der.clone())),
            )
            .unwrap(),
    };
    Arc::new(config)
}

/// A TLS connection: the certificate the server presented, the protocol
/// negotiated, and an HTTP/1.1 sender on it.
struct Connection {
    server_cert: CertificateDer<'static>,
    version: rustls::ProtocolVersion,
    sender: SendRequest<Full<Bytes>>,
}

async fn connect(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<Connection, std::io::Error> {
    let tcp = TcpStream::connect(addr).await?;
    let stream = TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    let (_, session) = stream.get_ref();
    let server_cert = session.peer_certificates().unwrap()[0].clone();
    let version = session.protocol_version().unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    Ok(Connection {
        server_cert,
        version,
        sender,
    })
}

/// Over an established connection, a request that the server answers only
/// after a TLS handshake with a client certificate it accepted.
async fn get(
    connection: &mut Connection,
    path: &str,
    key: Option<&str>,
) -> (StatusCode, serde_json::Value) {
    let mut request = Request::get(path).header("host", "localhost");
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    connection.sender.ready().await.unwrap();
    let response = connection
        .sender
        .send_request(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

const MODERN: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

#[tokio::test]
async fn tls_1_2_and_1_3_serve_the_api_and_the_admin_listener() {
    let tls = start(None).await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut connection = connect(tls.gateway.addr, client_config(&tls.ca, &[version], None))
            .await
            .unwrap();
        assert_eq!(connection.version, version.version);
        assert_eq!(connection.server_cert, tls.server_cert.der);
        let (status, body) = get(&mut connection, "/v1/models", Some(CLIENT_KEY)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            body["data"].as_array().is_some_and(|d| !d.is_empty()),
            "{body}"
        );
    }
    let mut admin = connect(tls.gateway.admin_addr, client_config(&tls.ca, MODERN, None))
        .await
        .unwrap();
    let (status, body) = get(&mut admin, "/healthz", None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
}

#[tokio::test]
async fn plain_http_to_the_tls_port_fails_without_disturbing_the_listener() {
    let tls = start(None).await;
    let client = support::client();
    let result = client
        .request(
            Request::get(tls.gateway.url("/v1/models"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    assert!(result.is_err(), "plain HTTP got an answer: {result:?}");
    let mut connection = connect(tls.gateway.addr, client_config(&tls.ca, MODERN, None))
        .await
        .unwrap();
    let (status, _) = get(&mut connection, "/v1/models", Some(CLIENT_KEY)).await;
    assert_eq!(status, StatusCode::OK);
}

/// Waits until a new connection is served `expected`.
async fn wait_for_certificate(tls: &TlsGateway, expected: &CertificateDer<'static>, what: &str) {
    support::wait::eventually(what, Duration::from_secs(10), async || {
        let connection = connect(tls.gateway.addr, client_config(&tls.ca, MODERN, None))
            .await
            .ok()?;
        (connection.server_cert == *expected).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_rewritten_certificate_is_served_to_new_connections_and_a_bad_one_is_kept_out() {
    let tls = start(None).await;
    let dir = tls.files.clone();
    let mut before = connect(tls.gateway.addr, client_config(&tls.ca, MODERN, None))
        .await
        .unwrap();
    let rotated = tls.ca.issue("promptgate rotated", &["localhost"]);
    rotated.write(&dir.join("tls.crt"), &dir.join("tls.key"));
    wait_for_certificate(
        &tls,
        &rotated.der,
        "the rewritten certificate on a new connection",
    )
    .await;
    // The connection made before the rotation still serves.
    let (status, _) = get(&mut before, "/v1/models", Some(CLIENT_KEY)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(before.server_cert, tls.server_cert.der);

    // A key that does not fit: the rotated certificate stays, and it is counted.
    let other = tls.ca.issue("mismatch", &["localhost"]);
    std::fs::write(dir.join("tls.key"), &other.key_pem).unwrap();
    let failed = support::wait::eventually(
        "a failed certificate reload counted",
        Duration::from_secs(10),
        async || {
            let scraped = admin_metrics(&tls).await;
            Some(scraped).filter(|text| {
                text.contains(r#"promptgate_tls_certificate_reloads_total{listener="client",outcome="failed"} 1"#)
            })
        },
    )
    .await;
    assert!(
        failed.contains(r#"{listener="client",outcome="ok"} 1"#),
        "{failed}"
    );
    let connection = connect(tls.gateway.addr, client_config(&tls.ca, MODERN, None))
        .await
        .unwrap();
    assert_eq!(connection.server_cert, rotated.der);
}

/// `/metrics` of the TLS admin listener.
async fn admin_metrics(tls: &TlsGateway) -> String {
    let mut admin = connect(tls.gateway.admin_addr, client_config(&tls.ca, MODERN, None))
        .await
        .unwrap();
    let response = admin
        .sender
        .send_request(
            Request::get("/metrics")
                .header("host", "localhost")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

#[cfg(unix)]
#[tokio::test]
async fn a_kubernetes_secret_symlink_swap_is_followed() {
    // The layout kubelet writes: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>/.
    let tls = start(None).await;
    let dir = tls.files.clone();
    let mount = dir.join("secret");
    let first = mount.join("..2026_01");
    std::fs::create_dir_all(&first).unwrap();
    tls.server_cert
        .write(&first.join("tls.crt"), &first.join("tls.key"));
    std::os::unix::fs::symlink("..2026_01", mount.join("..data")).unwrap();
    for file in ["tls.crt", "tls.key"] {
        std::os::unix::fs::symlink(format!("..data/{file}"), mount.join(file)).unwrap();
    }
    // Point the gateway's files at the mount (a restart-free rewrite of its
    // own files would also do; the swap below is what this test is about).
    std::fs::remove_file(dir.join("tls.crt")).unwrap();
    std::fs::remove_file(dir.join("tls.key")).unwrap();
    std::os::unix::fs::symlink(mount.join("tls.crt"), dir.join("tls.crt")).unwrap();
    std::os::unix::fs::symlink(mount.join("tls.key"), dir.join("tls.key")).unwrap();

    let second = mount.join("..2026_02");
    std::fs::create_dir_all(&second).unwrap();
    let rotated = tls.ca.issue("promptgate from the secret", &["localhost"]);
    rotated.write(&second.join("tls.crt"), &second.join("tls.key"));
    // Atomic swap: a new symlink renamed over `..data`.
    std::os::unix::fs::symlink("..2026_02", mount.join("..data_tmp")).unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    wait_for_certificate(&tls, &rotated.der, "the swapped-in secret's certificate").await;
}

async fn chat(connection: &mut Connection, key: Option<&str>) -> (StatusCode, serde_json::Value) {
    let mut request = Request::post("/v1/chat/completions")
        .header("host", "localhost")
        .header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let body = r#"{"model":"demo-1","messages":[{"role":"user","content":"hi"}]}"#;
    connection.sender.ready().await.unwrap();
    let response = connection
        .sender
        .send_request(request.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

#[tokio::test]
async fn a_mapped_client_certificate_is_that_client_without_a_key() {
    let tls = start(Some(false)).await;
    let by_dns = tls.ca.issue("some host", &["svc-a.example"]);
    let by_uri = tls
        .ca
        .issue("workload", &["spiffe://example.org/ns/prod/sa/test-app"]);
    let by_cn = tls.ca.issue("svc-a.example", &[]);
    let unmapped = tls.ca.issue("stranger", &["stranger.example"]);

    let mut svc_a = tls.connect_as(&by_dns).await;
    let (status, body) = chat(&mut svc_a, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut by_cn = tls.connect_as(&by_cn).await;
    assert_eq!(chat(&mut by_cn, None).await.0, StatusCode::OK);
    let mut test_app = tls.connect_as(&by_uri).await;
    assert_eq!(chat(&mut test_app, None).await.0, StatusCode::OK);
    // Its own key agrees with the certificate; another client's does not.
    assert_eq!(
        chat(&mut test_app, Some(CLIENT_KEY)).await.0,
        StatusCode::OK
    );
    let (status, body) = chat(&mut svc_a, Some(CLIENT_KEY)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error"]["message"].is_string(),
        "OpenAI error shape: {body}"
    );

    // An unmapped certificate without a key is refused as a caller without a key is.
    let mut stranger = tls.connect_as(&unmapped).await;
    let (status, body) = chat(&mut stranger, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error"]["message"].is_string(),
        "OpenAI error shape: {body}"
    );
    // …and with a valid key it is that key's client.
    let mut stranger = tls.connect_as(&unmapped).await;
    assert_eq!(
        chat(&mut stranger, Some(CLIENT_KEY)).await.0,
        StatusCode::OK
    );

    // A certificate's client has that client's allow-list.
    let by_svc_b = tls.ca.issue("svc-b.example", &[]);
    let mut svc_b = tls.connect_as(&by_svc_b).await;
    let (status, body) = chat(&mut svc_b, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["type"], "permission_error", "{body}");
    let metrics = support::metrics::Metrics::parse(&admin_metrics(&tls).await);
    assert_eq!(
        metrics.value(
            "promptgate_auth_failures_total",
            &[("reason", "certificate_mismatch")]
        ),
        1.0
    );

    let clients: Vec<Option<String>> = tls
        .gateway
        .sink
        .wait_for(5)
        .await
        .iter()
        .map(|exchange| exchange.start.client_id.as_deref().map(str::to_owned))
        .collect();
    assert_eq!(
        clients,
        [
            Some("svc-a"),
            Some("svc-a"),
            Some("test-app"),
            Some("test-app"),
            Some("test-app")
        ]
        .map(|c| c.map(str::to_owned))
    );
}

/// Connects and asks for `/v1/models` with the test key: the status, or the
/// error that ended the handshake or the request (with TLS 1.3 the server's
/// refusal of a client certificate arrives after the client's handshake ended).
async fn models(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<StatusCode, String> {
    let mut connection = connect(addr, config).await.map_err(|e| format!("{e:?}"))?;
    connection
        .sender
        .ready()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let response = connection
        .sender
        .send_request(
            Request::get("/v1/models")
                .header("host", "localhost")
                .header("authorization", format!("Bearer {CLIENT_KEY}"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(response.status())
}

#[tokio::test]
async fn without_a_client_certificate_the_handshake_is_refused_when_required() {
    let tls = start(Some(true)).await;
    let refused = models(tls.gateway.addr, client_config(&tls.ca, MODERN, None)).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("CertificateRequired")),
        "a client without a certificate: {refused:?}"
    );
    let outsider_ca = Ca::new();
    let foreign = outsider_ca.issue("svc-a.example", &["svc-a.example"]);
    let refused = models(
        tls.gateway.addr,
        client_config(&tls.ca, MODERN, Some(&foreign)),
    )
    .await;
    assert!(
        refused.is_err(),
        "a certificate from another CA: {refused:?}"
    );
    let member = tls
        .ca
        .issue("workload", &["spiffe://example.org/ns/prod/sa/test-app"]);
    let served = models(
        tls.gateway.addr,
        client_config(&tls.ca, MODERN, Some(&member)),
    )
    .await;
    assert_eq!(served, Ok(StatusCode::OK));
}

#[tokio::test]
async fn a_bad_certificate_at_start_up_is_an_error_naming_the_file() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("provider.key"), support::PROVIDER_KEY).unwrap();
    std::fs::write(dir.path().join("tls.crt"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("tls.key"), "not a key").unwrap();
    let config_path = dir.path().join("gateway.toml");
    std::fs::write(
        &config_path,
        format!(
            "{}\n[server.tls]\ncert_file = \"tls.crt\"\nkey_file = \"tls.key\"\n",
            standard_config(&sim).replace("{dir}", &dir.path().display().to_string())
        ),
    )
    .unwrap();
    let error = promptgate::app::App::start(
        config_path,
        promptgate_core::config::LoadOptions {
            listen_override: Some("127.0.0.1:0".parse().unwrap()),
            admin_listen_override: Some("127.0.0.1:0".parse().unwrap()),
        },
        Arc::new(support::RecordingSink::default()),
    )
    .await
    .err()
    .expect("a gateway started with a bad certificate")
    .to_string();
    assert!(
        error.contains(&dir.path().join("tls.crt").display().to_string())
            && error.contains("no certificate"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_trust_a_custom_ca_and_tls_1_1_is_refused() {
    let tls = start(None).await;
    support::pytest::run(
        "sdk_tls",
        "the pinned openai/anthropic/pytest packages",
        vec![
            (
                "PROMPTGATE_TLS_URL",
                format!("https://localhost:{}", tls.gateway.addr.port()),
            ),
            (
                "PROMPTGATE_CA_FILE",
                tls.files.join("ca.pem").display().to_string(),
            ),
            ("PROMPTGATE_CLIENT_KEY", CLIENT_KEY.to_owned()),
        ],
    )
    .await;
}
