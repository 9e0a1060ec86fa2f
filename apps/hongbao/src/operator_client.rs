//! The operator's side of signed admin requests: which key to sign with (`--key-file`, or the
//! keys file's text in `HONGBAO_OPERATOR_KEYS`), a request signed with it, sent over plain HTTP
//! or, to an `https://` admin address, over mTLS with the operator's client certificate.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use hongbao_auth::{KeyRing, OperatorKey};
use rand::{RngCore, SeedableRng};

/// The environment variable that may hold a keys file's text (for `serve` and the CLI alike).
pub const KEYS_ENV: &str = "HONGBAO_OPERATOR_KEYS";

#[derive(Args, Clone, Debug, Default)]
pub struct KeyArgs {
    /// The operator keys file (TOML, docs/SECURITY.md) holding the key to sign with [default:
    /// the text of $HONGBAO_OPERATOR_KEYS].
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Which key of the file signs (needed when it holds more than one).
    #[arg(long)]
    pub key_id: Option<String>,
    /// For an `https://` admin address (mTLS): this operator's client certificate (PEM).
    #[arg(long, requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The CA (PEM) the node's certificate must chain to.
    #[arg(long, requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
}

/// Reads a keys file, or the environment's keys when no file is named; `None` when neither.
/// Errors name the file, never a secret.
pub fn load_ring(file: Option<&std::path::Path>) -> Result<Option<KeyRing>> {
    let (text, source) = match file {
        Some(path) => (
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?,
            path.display().to_string(),
        ),
        None => match std::env::var(KEYS_ENV) {
            Ok(text) => (text, format!("${KEYS_ENV}")),
            Err(_) => return Ok(None),
        },
    };
    let ring =
        KeyRing::parse(&text).with_context(|| format!("read the operator keys in {source}"))?;
    Ok(Some(ring))
}

impl KeyArgs {
    /// The key to sign with.
    pub fn key(&self) -> Result<OperatorKey> {
        let Some(ring) = load_ring(self.key_file.as_deref())? else {
            bail!("no operator key: give --key-file FILE (or the file's text in ${KEYS_ENV})");
        };
        match &self.key_id {
            Some(id) => ring.get(id).cloned().with_context(|| format!("no key `{id}` in the keys")),
            None if ring.len() == 1 => Ok(ring.keys().next().cloned().expect("one key")),
            None => bail!("the keys hold {} keys: say which signs with --key-id", ring.len()),
        }
    }
}

/// Largest admin answer read, in bytes.
const ANSWER_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Sends `method url` with `body` (JSON) signed by the key of `args`; the answer's status and
/// JSON body. `https://` goes over mTLS with --tls-cert/--tls-key/--tls-ca.
pub async fn call(
    args: &KeyArgs,
    method: reqwest::Method,
    url: &str,
    body: Option<&serde_json::Value>,
) -> Result<(u16, serde_json::Value)> {
    let key = args.key()?;
    if !url.starts_with("https://") {
        let request = signed(&reqwest::Client::new(), &key, method, url, body)?;
        let response = request.send().await.context("reach the node's admin address")?;
        let status = response.status().as_u16();
        return Ok((status, response.json().await.context("read the answer")?));
    }
    let (Some(cert), Some(tls_key), Some(ca)) = (&args.tls_cert, &args.tls_key, &args.tls_ca)
    else {
        bail!("{url} is https: give --tls-cert, --tls-key and --tls-ca (mTLS)");
    };
    let connector = crate::admin_tls::connector(cert, tls_key, ca)?;
    let parsed = reqwest::Url::parse(url).with_context(|| format!("`{url}` is not a URL"))?;
    let host = parsed.host_str().context("no host in the admin URL")?.to_string();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let bytes = match body {
        Some(value) => serde_json::to_vec(value).context("encode the body")?,
        None => Vec::new(),
    };
    let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .with_context(|| format!("connect to {host}:{port}"))?;
    let name = rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
        .context("the admin host is not a valid TLS server name")?;
    let tls = connector.connect(name, tcp).await.context("TLS handshake with the admin address")?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .context("HTTP over TLS")?;
    let driver = tokio::spawn(conn);
    let path_and_query = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_string(),
    };
    let mut request = hyper::Request::builder()
        .method(method.as_str())
        .uri(&path_and_query)
        .header("host", format!("{host}:{port}"));
    let headers = hongbao_auth::sign_headers(
        &key,
        method.as_str(),
        parsed.path(),
        parsed.query().unwrap_or(""),
        &bytes,
        now_s()?,
        &new_nonce(),
    );
    for (name, value) in headers {
        request = request.header(name, value);
    }
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(http_body_util::Full::new(hyper::body::Bytes::from(bytes)))
        .context("build the request")?;
    let response = sender.send_request(request).await.context("send the request")?;
    let status = response.status().as_u16();
    let limited = http_body_util::Limited::new(response.into_body(), ANSWER_MAX_BYTES);
    let collected = http_body_util::BodyExt::collect(limited)
        .await
        .map_err(|e| anyhow::anyhow!("read the answer: {e}"))?;
    driver.abort();
    Ok((status, serde_json::from_slice(&collected.to_bytes()).context("a JSON answer")?))
}

fn now_s() -> Result<u64> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs())
}

/// 128 random bits in hex: never repeats in practice.
fn new_nonce() -> String {
    let mut nonce = [0u8; 16];
    rand::rngs::StdRng::from_os_rng().fill_bytes(&mut nonce);
    hex_encode(&nonce)
}

/// A request to `url` signed by `key` now, with a fresh random nonce; `body` is sent as JSON.
fn signed(
    client: &reqwest::Client,
    key: &OperatorKey,
    method: reqwest::Method,
    url: &str,
    body: Option<&serde_json::Value>,
) -> Result<reqwest::RequestBuilder> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("`{url}` is not a URL"))?;
    let bytes = match body {
        Some(value) => serde_json::to_vec(value).context("encode the body")?,
        None => Vec::new(),
    };
    let headers = hongbao_auth::sign_headers(
        key,
        method.as_str(),
        parsed.path(),
        parsed.query().unwrap_or(""),
        &bytes,
        now_s()?,
        &new_nonce(),
    );
    let mut request = client.request(method, parsed);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    if body.is_some() {
        request = request.header("content-type", "application/json").body(bytes);
    }
    Ok(request)
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
