//! The operator's side of signed admin requests: which key to sign with (`--key-file`, or the
//! keys file's text in `HONGBAO_OPERATOR_KEYS`), and a request signed with it.

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

/// A request to `url` signed by `key` now, with a fresh random nonce; `body` is sent as JSON.
pub fn signed(
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
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs();
    let mut nonce = [0u8; 16];
    rand::rngs::StdRng::from_os_rng().fill_bytes(&mut nonce);
    let headers = hongbao_auth::sign_headers(
        key,
        method.as_str(),
        parsed.path(),
        parsed.query().unwrap_or(""),
        &bytes,
        now_s,
        &hex_encode(&nonce),
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
