//! Operator keys: id, secret, scopes; a key ring with several active keys for rotation.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use serde::Deserialize;

use crate::KEY_ID_LEN_MAX;

/// Shortest secret accepted, in bytes: HMAC-SHA256's own output size.
pub const SECRET_BYTES_MIN: usize = 32;
/// Longest secret accepted, in bytes (HMAC hashes longer keys down anyway).
pub const SECRET_BYTES_MAX: usize = 256;
/// Most keys a ring holds: rotation needs two or three at once, not hundreds.
pub const KEYS_MAX: usize = 64;

/// What a key may do. A key holds each scope it lists, and no other: `admin` does not imply
/// `operate`, so a key's power is read off its file line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Figures: delivery status, store statistics.
    Read,
    /// Acts on delivery: pause and resume a game.
    Operate,
    /// Changes what is owed: reconciliation (which may requeue orders).
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Operate => "operate",
            Scope::Admin => "admin",
        }
    }
}

/// A key's secret bytes. Its `Debug` never shows them; nothing here displays them.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes, redacted>)", self.0.len())
    }
}

impl Secret {
    /// `hex:…` or `base64:…` (standard alphabet, padded), [`SECRET_BYTES_MIN`] to
    /// [`SECRET_BYTES_MAX`] bytes. Errors never quote the text.
    pub fn from_text(text: &str) -> Result<Secret, KeyError> {
        let bytes = if let Some(h) = text.strip_prefix("hex:") {
            hex::decode(h.trim()).map_err(|_| KeyError::SecretEncoding)?
        } else if let Some(b) = text.strip_prefix("base64:") {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|_| KeyError::SecretEncoding)?
        } else {
            return Err(KeyError::SecretEncoding);
        };
        Secret::from_bytes(bytes)
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Result<Secret, KeyError> {
        if !(SECRET_BYTES_MIN..=SECRET_BYTES_MAX).contains(&bytes.len()) {
            return Err(KeyError::SecretLength(bytes.len()));
        }
        Ok(Secret(bytes))
    }

    /// The `hex:…` form, for writing a generated key into a file the operator owns.
    pub fn to_text(&self) -> String {
        format!("hex:{}", hex::encode(&self.0))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// One operator key.
#[derive(Clone, Debug)]
pub struct OperatorKey {
    pub id: String,
    pub secret: Secret,
    pub scopes: Vec<Scope>,
}

impl OperatorKey {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// Why a keys file or key was refused. Never carries a secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("not a keys file: {0}")]
    Toml(String),
    #[error("a secret is `hex:…` or `base64:…` (the text is not shown)")]
    SecretEncoding,
    #[error("a secret has {0} bytes; {SECRET_BYTES_MIN} to {SECRET_BYTES_MAX} are accepted")]
    SecretLength(usize),
    #[error("key id `{0}`: 1 to {KEY_ID_LEN_MAX} characters of A-Z a-z 0-9 _ . -")]
    BadId(String),
    #[error("key `{0}` appears twice")]
    Duplicate(String),
    #[error("key `{0}` has no scopes")]
    NoScopes(String),
    #[error("no keys")]
    Empty,
    #[error("more than {KEYS_MAX} keys")]
    TooMany,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    keys: Vec<KeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    id: String,
    secret: String,
    scopes: Vec<Scope>,
}

/// The active keys, by id: several at once, so a new key can be handed out before the old one
/// is removed.
#[derive(Clone, Debug, Default)]
pub struct KeyRing {
    keys: BTreeMap<String, OperatorKey>,
}

pub(crate) fn valid_id(id: &str) -> bool {
    (1..=KEY_ID_LEN_MAX).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl KeyRing {
    /// Parses a keys file (TOML, `[[keys]]` with `id`, `secret`, `scopes`; docs/SECURITY.md).
    /// Errors name the key, never its secret.
    pub fn parse(text: &str) -> Result<KeyRing, KeyError> {
        // toml's message quotes the offending line, which may hold a secret: only its position.
        let file: KeysFile = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|s| format!(" at byte {}", s.start)).unwrap_or_default();
            KeyError::Toml(format!("{}{at}", first_line(e.message())))
        })?;
        let mut ring = KeyRing::default();
        for entry in file.keys {
            if entry.scopes.is_empty() {
                return Err(KeyError::NoScopes(entry.id));
            }
            let secret = Secret::from_text(&entry.secret)?;
            ring.insert(OperatorKey { id: entry.id, secret, scopes: entry.scopes })?;
        }
        if ring.keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(ring)
    }

    pub fn insert(&mut self, key: OperatorKey) -> Result<(), KeyError> {
        if !valid_id(&key.id) {
            return Err(KeyError::BadId(key.id));
        }
        if self.keys.len() >= KEYS_MAX {
            return Err(KeyError::TooMany);
        }
        if self.keys.contains_key(&key.id) {
            return Err(KeyError::Duplicate(key.id));
        }
        self.keys.insert(key.id.clone(), key);
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<&OperatorKey> {
        self.keys.get(id)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The keys, ordered by id.
    pub fn keys(&self) -> impl Iterator<Item = &OperatorKey> {
        self.keys.values()
    }

    /// The file form of this ring (secrets included: for a file only its owner can read).
    pub fn to_toml(&self) -> String {
        let mut text = String::new();
        for key in self.keys.values() {
            let scopes: Vec<String> =
                key.scopes.iter().map(|s| format!("\"{}\"", s.as_str())).collect();
            text.push_str(&format!(
                "[[keys]]\nid = \"{}\"\nsecret = \"{}\"\nscopes = [{}]\n\n",
                key.id,
                key.secret.to_text(),
                scopes.join(", ")
            ));
        }
        text
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX32: &str = "hex:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn a_keys_file_with_two_keys_parses_and_round_trips() {
        let text = format!(
            "[[keys]]\nid = \"old\"\nsecret = \"{HEX32}\"\nscopes = [\"read\"]\n\
             [[keys]]\nid = \"new\"\nsecret = \"base64:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n\
             scopes = [\"read\", \"operate\", \"admin\"]\n"
        );
        let ring = KeyRing::parse(&text).expect("parses");
        assert_eq!(ring.len(), 2);
        assert_eq!(
            ring.get("old").map(|k| k.secret.clone()),
            ring.get("new").map(|k| k.secret.clone())
        );
        assert!(ring.get("new").is_some_and(|k| k.has(Scope::Admin)));
        assert!(!ring.get("old").is_some_and(|k| k.has(Scope::Operate)));
        let again = KeyRing::parse(&ring.to_toml()).expect("round trip");
        assert_eq!(again.len(), 2);
    }

    #[test]
    fn errors_and_debug_never_show_the_secret() {
        let secret = "hex:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let short = "[[keys]]\nid = \"a\"\nsecret = \"hex:0011\"\nscopes = [\"read\"]\n";
        assert_eq!(KeyRing::parse(short).unwrap_err(), KeyError::SecretLength(2));
        let unknown = format!("[[keys]]\nid = \"a\"\nsecret = \"{secret}\"\nscope = [\"read\"]\n");
        let error = KeyRing::parse(&unknown).unwrap_err().to_string();
        assert!(!error.contains("00112233"), "{error}");
        let ring = KeyRing::parse(&format!(
            "[[keys]]\nid = \"a\"\nsecret = \"{secret}\"\nscopes = [\"read\"]\n"
        ))
        .expect("parses");
        let debug = format!("{ring:?}");
        assert!(!debug.contains("00112233") && debug.contains("redacted"), "{debug}");
    }

    #[test]
    fn duplicate_ids_bad_ids_missing_scopes_and_empty_files_are_refused() {
        let key = |id: &str, scopes: &str| {
            format!("[[keys]]\nid = \"{id}\"\nsecret = \"{HEX32}\"\nscopes = [{scopes}]\n")
        };
        let twice = format!("{}{}", key("a", "\"read\""), key("a", "\"read\""));
        assert_eq!(KeyRing::parse(&twice).unwrap_err(), KeyError::Duplicate("a".into()));
        assert!(matches!(KeyRing::parse(&key("a b", "\"read\"")), Err(KeyError::BadId(_))));
        assert!(matches!(KeyRing::parse(&key("a", "")), Err(KeyError::NoScopes(_))));
        assert_eq!(KeyRing::parse("keys = []").unwrap_err(), KeyError::Empty);
        assert!(matches!(KeyRing::parse(&key("a", "\"root\"")), Err(KeyError::Toml(_))));
    }
}
