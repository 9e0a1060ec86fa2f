//! mTLS on the admin listener: a client with a certificate from the configured CA is served; a
//! client without one, or with one from another CA, fails the handshake and never reaches an
//! operator endpoint. Certificates are generated per test with rcgen.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::{Running, campaign_path};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Ca = CertifiedIssuer<'static, KeyPair>;

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

/// A leaf certificate from `ca` for `names`, for a server or a client; (cert PEM, key PEM).
fn leaf(ca: &Ca, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params");
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, ca).expect("signed");
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.to_str().expect("utf-8").to_string()
}

/// A node whose admin listener requires client certificates from `ca` (unsigned requests, so
/// TLS is the only barrier under test, unless `keys` names a keys file); the admin address.
fn spawn_tls_node(dir: &Path, ca: &Ca, keys: Option<&str>) -> (Running, SocketAddr) {
    let (cert, key) = leaf(ca, &["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let (cert, key, ca_file) = (
        write(dir, "server.pem", &cert),
        write(dir, "server.key", &key),
        write(dir, "ca.pem", &ca.pem()),
    );
    let config = campaign_path();
    let data = dir.join("data");
    let signing: &[&str] = match keys {
        Some(file) => &["--operator-keys", file],
        None => &["--admin-unsigned"],
    };
    let mut node = Running::spawn(
        &[
            &["serve"],
            signing,
            &[
                "--rehearsal",
                "--no-profiles",
                "--config",
                config.to_str().expect("utf-8"),
                "--data",
                data.to_str().expect("utf-8"),
                "--addr",
                "127.0.0.1:0",
                "--admin-addr",
                "127.0.0.1:0",
                "--admin-tls-cert",
                &cert,
                "--admin-tls-key",
                &key,
                "--admin-client-ca",
                &ca_file,
            ],
        ]
        .concat(),
    );
    node.wait_for_url("api listening");
    let mut line = String::new();
    while !line.contains("admin listening on https://") {
        line.clear();
        let n = std::io::BufRead::read_line(&mut node.stdout, &mut line).expect("stdout");
        assert!(n > 0, "the node exited before listening");
    }
    let addr = line.trim().rsplit("https://").next().expect("an address").parse().expect("addr");
    (node, addr)
}

/// GET /admin/v1/delivery over TLS trusting `server_ca`, presenting `client` if any; the
/// answer's first line, or the error that stopped it.
async fn get(addr: SocketAddr, server_ca: &Ca, client: Option<(String, String)>) -> String {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server_ca.der().clone()).expect("root");
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).expect("cert")];
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
            builder.with_client_auth_cert(chain, key).expect("client auth")
        }
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
    let mut tls = match connector.connect(name, tcp).await {
        Ok(tls) => tls,
        Err(e) => return format!("handshake failed: {e}"),
    };
    let request = "GET /admin/v1/delivery HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if let Err(e) = tls.write_all(request.as_bytes()).await {
        return format!("write failed: {e}");
    }
    let mut answer = Vec::new();
    match tls.read_to_end(&mut answer).await {
        Ok(_) => String::from_utf8_lossy(&answer).lines().next().unwrap_or("").to_string(),
        Err(e) => format!("read failed: {e}"),
    }
}

#[tokio::test]
async fn a_client_with_a_certificate_from_the_ca_reaches_the_operator_endpoints() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = ca("hongbao test CA");
    let (_node, addr) = spawn_tls_node(dir.path(), &ca, None);
    let client = leaf(&ca, &["operator"], ExtendedKeyUsagePurpose::ClientAuth);
    let answer = get(addr, &ca, Some(client)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_client_without_a_certificate_never_reaches_an_operator_endpoint() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = ca("hongbao test CA");
    let (_node, addr) = spawn_tls_node(dir.path(), &ca, None);
    let answer = get(addr, &ca, None).await;
    assert!(!answer.starts_with("HTTP/"), "answered without a client certificate: {answer}");
}

#[tokio::test]
async fn a_client_with_a_certificate_from_another_ca_never_reaches_an_operator_endpoint() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = ca("hongbao test CA");
    let (_node, addr) = spawn_tls_node(dir.path(), &ca, None);
    let other = leaf(&self::ca("another CA"), &["operator"], ExtendedKeyUsagePurpose::ClientAuth);
    let answer = get(addr, &ca, Some(other)).await;
    assert!(!answer.starts_with("HTTP/"), "answered another CA's client: {answer}");
}

/// The CLI's signed commands reach an mTLS admin address with the operator's certificate.
#[tokio::test]
async fn the_cli_pauses_a_game_over_mtls_with_a_signed_request() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = ca("hongbao test CA");
    let keys = support::write_keys_file(dir.path(), &[support::test_operator_key()]);
    let (_node, addr) = spawn_tls_node(dir.path(), &ca, Some(&keys));
    let (cert, key) = leaf(&ca, &["operator"], ExtendedKeyUsagePurpose::ClientAuth);
    let (cert, key) = (write(dir.path(), "op.pem", &cert), write(dir.path(), "op.key", &key));
    let ca_file = dir.path().join("ca.pem");
    let admin = format!("https://{addr}");
    let tls =
        ["--tls-cert", &cert, "--tls-key", &key, "--tls-ca", ca_file.to_str().expect("utf-8")];
    let with = |args: &[&str]| -> Vec<String> {
        args.iter()
            .chain(&["--key-file", keys.as_str()])
            .chain(&tls)
            .map(|a| a.to_string())
            .collect()
    };
    let run =
        |args: Vec<String>| support::run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    run(with(&["delivery", "pause", "--admin", &admin, "--game", "lantern-heroes"]));
    let status: serde_json::Value =
        serde_json::from_str(&run(with(&["delivery", "status", "--admin", &admin, "--json"])))
            .expect("JSON");
    let games = status["games"].as_array().expect("games");
    let lantern = games.iter().find(|g| g["game"] == "lantern-heroes").expect("the game");
    assert_eq!(lantern["paused"], true, "{status}");
}
