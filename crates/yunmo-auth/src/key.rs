//! API keys: `ym_<id>_<secret>`, where the id is visible (it names the key in lists, logs and usage) and
//! the secret is 256 random bits. Only the sha256 of the whole key is stored; a presented key is looked up
//! by its id and its hash compared in constant time.

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every key starts with this.
pub const PREFIX: &str = "ym_";

/// Shortest secret accepted (a generated one has 43 characters).
pub const MIN_SECRET_CHARS: usize = 32;

/// A freshly made key: shown once, then only its hash is kept.
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    /// Visible id.
    pub id: String,
    /// The whole key (`ym_<id>_<secret>`).
    pub key: String,
    /// Hex sha256 of the whole key.
    pub hash: String,
}

/// Makes a new key from the operating system's random source.
pub fn generate() -> GeneratedKey {
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    getrandom::fill(&mut id).expect("the OS random source failed");
    getrandom::fill(&mut secret).expect("the OS random source failed");
    let id = hex::encode(id);
    let key = format!("{PREFIX}{id}_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret));
    let hash = hash(&key);
    GeneratedKey { id, key, hash }
}

/// The id of a well-formed key: `ym_`, 4 to 32 lowercase letters or digits, `_`, and a secret of at least
/// [`MIN_SECRET_CHARS`] URL-safe characters.
pub fn key_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = (4..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let secret_ok = secret.len() >= MIN_SECRET_CHARS && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then_some(id)
}

/// Hex sha256 of a key.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Whether `key` hashes to `stored` (hex), compared in constant time.
pub fn verify(key: &str, stored: &str) -> bool {
    let presented = Sha256::digest(key.as_bytes());
    match hex::decode(stored) {
        Ok(stored) if stored.len() == presented.len() => presented[..].ct_eq(&stored[..]).into(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_verify_and_differ() {
        let a = generate();
        let b = generate();
        assert_ne!(a.key, b.key);
        assert!(a.key.starts_with("ym_"));
        assert_eq!(key_id(&a.key), Some(a.id.as_str()));
        assert!(verify(&a.key, &a.hash));
        assert!(!verify(&b.key, &a.hash));
        assert!(!verify(&a.key, "not hex"));
    }

    #[test]
    fn malformed_keys_have_no_id() {
        for key in [
            "",
            "ym_",
            "ym_abcd",
            "ym_abcd_short",
            "xx_abcd_0123456789012345678901234567890123",
            "ym_AB!D_0123456789012345678901234567890123",
        ] {
            assert_eq!(key_id(key), None, "{key}");
        }
        assert_eq!(key_id("ym_boot_0123456789abcdef0123456789abcdef"), Some("boot"));
    }
}
