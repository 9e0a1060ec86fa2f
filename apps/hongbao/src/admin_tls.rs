//! mTLS for the admin listener (`--admin-tls-cert --admin-tls-key --admin-client-ca`): the node
//! presents its certificate and requires a client certificate that chains to the given CA; a
//! client without one, or with one from another CA, fails the handshake and never reaches HTTP.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// Most certificates read from one PEM file (a chain or a CA bundle).
const PEM_CERTS_MAX: usize = 32;

/// The admin listener's TLS acceptor from PEM files.
pub fn acceptor(cert: &Path, key: &Path, client_ca: &Path) -> Result<tokio_rustls::TlsAcceptor> {
    let chain = certificates(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("read a private key from {} (--admin-tls-key)", key.display()))?;
    let mut roots = RootCertStore::empty();
    for ca in certificates(client_ca)? {
        roots.add(ca).with_context(|| {
            format!("use {} as a client CA (--admin-client-ca)", client_ca.display())
        })?;
    }
    // The ring provider, named rather than process-wide: nothing else in the process uses TLS.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("build the client certificate verifier")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .with_context(|| format!("use {} with its key (--admin-tls-cert)", cert.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The CLI's TLS connector for an mTLS admin address: trusts `ca` for the node's certificate and
/// presents `cert` (with `key`).
pub fn connector(cert: &Path, key: &Path, ca: &Path) -> Result<tokio_rustls::TlsConnector> {
    let mut roots = RootCertStore::empty();
    for c in certificates(ca)? {
        roots
            .add(c)
            .with_context(|| format!("use {} as the node's CA (--tls-ca)", ca.display()))?;
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("read a private key from {} (--tls-key)", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_client_auth_cert(certificates(cert)?, key_der)
        .with_context(|| format!("use {} with its key (--tls-cert)", cert.display()))?;
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_file_iter(path)
        .with_context(|| format!("read certificates from {}", path.display()))?
    {
        if certs.len() == PEM_CERTS_MAX {
            bail!("{}: more than {PEM_CERTS_MAX} certificates", path.display());
        }
        certs.push(cert.with_context(|| format!("parse a certificate in {}", path.display()))?);
    }
    if certs.is_empty() {
        bail!("{}: no PEM certificate in it", path.display());
    }
    Ok(certs)
}
