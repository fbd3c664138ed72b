//! Model files sealed at rest with AES-256-GCM, in independently authenticated chunks (the STREAM
//! construction), so a file of any size is encrypted and checked with one chunk of memory.
//!
//! Layout:
//!
//! ```text
//! header  = "YMSEAL01" | chunk_size: u32 LE | nonce_prefix: 7 random bytes | 0x00 | key_id: 8 bytes  (28 bytes)
//! chunk i = AES-256-GCM(plaintext[i * chunk_size ..][.. chunk_size],
//!                       nonce = nonce_prefix | i: u32 BE | 1 if last else 0,
//!                       aad   = header | sha256 hex of the whole plaintext) | 16-byte tag
//! ```
//!
//! `key_id` is the first 8 bytes of sha256("yunmo model key id\0" | key): it names the key a file needs
//! (so a wrong key is reported as such, and files can be re-sealed under a new key) without revealing it.
//!
//! Binding the header and the plaintext digest (the file's name in the store) into every chunk means a
//! changed header, a reordered, dropped or appended chunk, a truncation at a chunk boundary, or a file moved
//! under another name all fail to open. After decryption the plaintext's sha256 is checked against the name
//! as well, so a reader gets exactly the bytes that were uploaded or an error.

use std::io::{self, Read, Write};
use std::path::Path;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

/// First bytes of a sealed file.
pub const MAGIC: &[u8; 8] = b"YMSEAL01";
/// Plaintext bytes per chunk in files this version writes.
pub const CHUNK_SIZE: u32 = 1 << 20;
const HEADER_LEN: usize = 28;
/// Bytes of a key's id.
const KEY_ID_LEN: usize = 8;
const TAG_LEN: usize = 16;
const PREFIX_LEN: usize = 7;
/// Largest chunk a reader accepts (bounds the buffer a crafted header can ask for).
const MAX_CHUNK_SIZE: u32 = 64 << 20;

/// The AES-256 key model files are sealed with.
pub struct EncryptionKey {
    key: LessSafeKey,
    id: [u8; KEY_ID_LEN],
}

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptionKey(<redacted>)")
    }
}

impl EncryptionKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> EncryptionKey {
        let key = UnboundKey::new(&AES_256_GCM, bytes).expect("AES-256-GCM takes a 32-byte key. This is a bug.");
        let digest = Sha256::new().chain_update(b"yunmo model key id\0").chain_update(bytes).finalize();
        let id = digest[..KEY_ID_LEN].try_into().expect("8 bytes");
        EncryptionKey { key: LessSafeKey::new(key), id }
    }

    /// The key's id, in hex: safe to log, and written in the header of every file it seals.
    pub fn id(&self) -> String {
        hex::encode(self.id)
    }

    /// Reads a key file: 64 hex digits (as `openssl rand -hex 32` writes, surrounding whitespace ignored) or
    /// exactly 32 raw bytes.
    pub fn from_file(path: &Path) -> Result<EncryptionKey, String> {
        let content = std::fs::read(path).map_err(|error| format!("cannot read the encryption key file {}: {error}", path.display()))?;
        warn_if_readable_by_others(path);
        if let Ok(bytes) = <[u8; 32]>::try_from(content.as_slice())
            && !looks_like_hex(&content)
        {
            return Ok(EncryptionKey::from_bytes(&bytes));
        }
        let text = String::from_utf8_lossy(&content);
        let text = text.trim();
        let mut bytes = [0u8; 32];
        match hex::decode_to_slice(text, &mut bytes) {
            Ok(()) => Ok(EncryptionKey::from_bytes(&bytes)),
            Err(_) => Err(format!(
                "the encryption key file {} must hold 64 hex digits (make one with `openssl rand -hex 32`) or exactly 32 raw bytes; \
                 it holds {} bytes",
                path.display(),
                content.len()
            )),
        }
    }
}

fn looks_like_hex(content: &[u8]) -> bool {
    content.iter().all(|byte| byte.is_ascii_hexdigit() || byte.is_ascii_whitespace())
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(metadata) = std::fs::metadata(path)
        && metadata.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(file = %path.display(), mode = format!("{:o}", metadata.permissions().mode() & 0o777),
            "The encryption key file can be read by other users; chmod 600 it.");
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// Whether `head` (a file's first bytes) starts a sealed file.
pub fn is_sealed(head: &[u8]) -> bool {
    head.starts_with(MAGIC)
}

/// Bytes to read from a file's start for [`is_sealed`] and [`sealed_key_id`].
pub const HEAD_LEN: usize = HEADER_LEN;

/// The id (hex) of the key that sealed the file starting with `head`, if it is a whole sealed header.
pub fn sealed_key_id(head: &[u8]) -> Option<String> {
    (is_sealed(head) && head.len() >= HEADER_LEN).then(|| hex::encode(&head[HEADER_LEN - KEY_ID_LEN..HEADER_LEN]))
}

/// Encrypts `size` bytes from `plain`, whose sha256 is `sha256`, into `out`.
pub fn seal(key: &EncryptionKey, plain: &mut impl Read, size: u64, sha256: &str, out: &mut impl Write) -> io::Result<()> {
    seal_with_chunk(key, plain, size, sha256, out, CHUNK_SIZE)
}

fn seal_with_chunk(
    key: &EncryptionKey,
    plain: &mut impl Read,
    size: u64,
    sha256: &str,
    out: &mut impl Write,
    chunk: u32,
) -> io::Result<()> {
    let mut prefix = [0u8; PREFIX_LEN];
    SystemRandom::new().fill(&mut prefix).map_err(|_| io::Error::other("the system random source failed"))?;
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&chunk.to_le_bytes());
    header[12..12 + PREFIX_LEN].copy_from_slice(&prefix);
    header[HEADER_LEN - KEY_ID_LEN..].copy_from_slice(&key.id);
    out.write_all(&header)?;
    let aad = aad(&header, sha256);
    let chunks = size.div_ceil(u64::from(chunk)).max(1);
    let mut buffer = Vec::with_capacity(chunk as usize + TAG_LEN);
    for index in 0..chunks {
        let last = index + 1 == chunks;
        let len = if last { size - index * u64::from(chunk) } else { u64::from(chunk) };
        buffer.clear();
        buffer.resize(len as usize, 0);
        plain.read_exact(&mut buffer)?;
        let nonce = nonce(&prefix, chunk_index(index)?, last);
        key.key
            .seal_in_place_append_tag(nonce, Aad::from(aad.as_slice()), &mut buffer)
            .map_err(|_| io::Error::other("AES-GCM sealing failed"))?;
        out.write_all(&buffer)?;
    }
    let mut rest = [0u8; 1];
    if plain.read(&mut rest)? != 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("the file grew past {size} bytes while it was encrypted")));
    }
    Ok(())
}

/// Decrypts the sealed file `sealed` (`sealed_len` bytes) named `sha256` into `out`, and checks that the
/// plaintext's digest is `sha256`. On error, `out` holds a prefix of the plaintext that must be discarded.
pub fn open(key: &EncryptionKey, sealed: &mut impl Read, sealed_len: u64, sha256: &str, out: &mut impl Write) -> io::Result<()> {
    let refused = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the stored model file {sha256} {what}: it was encrypted with another key, or it was altered"),
        )
    };
    let mut header = [0u8; HEADER_LEN];
    sealed.read_exact(&mut header).map_err(|_| refused("is too short to be an encrypted file"))?;
    if !is_sealed(&header) {
        return Err(refused("is not an encrypted file"));
    }
    if header[HEADER_LEN - KEY_ID_LEN..] != key.id {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the stored model file {sha256} was encrypted with key {}, not with the configured key {}: set \
                 storage.encryption_key_file to that key, or list it in storage.previous_encryption_key_files to re-encrypt",
                hex::encode(&header[HEADER_LEN - KEY_ID_LEN..]),
                key.id()
            ),
        ));
    }
    let chunk = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if chunk == 0 || chunk > MAX_CHUNK_SIZE {
        return Err(refused(&format!("has a chunk size of {chunk} bytes, outside 1..={MAX_CHUNK_SIZE}")));
    }
    let prefix: [u8; PREFIX_LEN] = header[12..12 + PREFIX_LEN].try_into().expect("7 bytes");
    let aad = aad(&header, sha256);
    let sealed_chunk = u64::from(chunk) + TAG_LEN as u64;
    let mut remaining = sealed_len.checked_sub(HEADER_LEN as u64).ok_or_else(|| refused("is truncated"))?;
    let mut hasher = Sha256::new();
    let mut buffer = Vec::with_capacity(sealed_chunk as usize);
    let mut index = 0u64;
    loop {
        let len = remaining.min(sealed_chunk);
        if len < TAG_LEN as u64 {
            return Err(refused("is truncated"));
        }
        let last = remaining == len;
        buffer.clear();
        buffer.resize(len as usize, 0);
        sealed.read_exact(&mut buffer)?;
        let nonce = nonce(&prefix, chunk_index(index)?, last);
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(aad.as_slice()), &mut buffer)
            .map_err(|_| refused(&format!("does not decrypt (chunk {index})")))?;
        hasher.update(&*plain);
        out.write_all(plain)?;
        remaining -= len;
        index += 1;
        if last {
            break;
        }
    }
    let actual = hex::encode(hasher.finalize());
    if actual != sha256 {
        return Err(refused(&format!("decrypts to content with sha256 {actual}")));
    }
    Ok(())
}

fn aad(header: &[u8; HEADER_LEN], sha256: &str) -> Vec<u8> {
    [header.as_slice(), sha256.as_bytes()].concat()
}

fn chunk_index(index: u64) -> io::Result<u32> {
    u32::try_from(index).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a sealed file has at most 2^32 chunks"))
}

fn nonce(prefix: &[u8; PREFIX_LEN], index: u32, last: bool) -> Nonce {
    let mut bytes = [0u8; NONCE_LEN];
    bytes[..PREFIX_LEN].copy_from_slice(prefix);
    bytes[PREFIX_LEN..PREFIX_LEN + 4].copy_from_slice(&index.to_be_bytes());
    bytes[NONCE_LEN - 1] = u8::from(last);
    Nonce::assume_unique_for_key(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    fn sealed(key: &EncryptionKey, data: &[u8], chunk: u32) -> Vec<u8> {
        let mut out = Vec::new();
        seal_with_chunk(key, &mut &data[..], data.len() as u64, &digest(data), &mut out, chunk).unwrap();
        out
    }

    fn opened(key: &EncryptionKey, file: &[u8], sha: &str) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        open(key, &mut &file[..], file.len() as u64, sha, &mut out).map(|()| out)
    }

    #[test]
    fn round_trips_at_every_chunk_boundary() {
        let key = EncryptionKey::from_bytes(&[7; 32]);
        let data: Vec<u8> = (0..100u32).map(|i| (i * 31 % 251) as u8).collect();
        for len in [0, 1, 15, 16, 17, 32, 33, 100] {
            let plain = &data[..len];
            let file = sealed(&key, plain, 16);
            assert_eq!(file.len(), HEADER_LEN + len + len.div_ceil(16).max(1) * TAG_LEN, "length {len}");
            assert_eq!(opened(&key, &file, &digest(plain)).unwrap(), plain, "length {len}");
        }
    }

    #[test]
    fn the_plaintext_does_not_appear_and_two_seals_differ() {
        let key = EncryptionKey::from_bytes(&[1; 32]);
        let plain = b"proprietary weights proprietary weights proprietary weights".repeat(10);
        let (one, two) = (sealed(&key, &plain, 64), sealed(&key, &plain, 64));
        assert!(!one.windows(11).any(|w| w == b"proprietary"));
        assert_ne!(one, two, "each file has its own random nonce prefix");
    }

    #[test]
    fn any_change_is_refused() {
        let key = EncryptionKey::from_bytes(&[3; 32]);
        let plain: Vec<u8> = (0..40u8).collect();
        let sha = digest(&plain);
        let file = sealed(&key, &plain, 16); // chunks of 16, 16 and 8 bytes
        for position in 0..file.len() {
            let mut altered = file.clone();
            altered[position] ^= 0x01;
            assert!(opened(&key, &altered, &sha).is_err(), "a flipped bit at byte {position} was accepted");
        }
        let chunk = 16 + TAG_LEN;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated at a chunk boundary", file[..HEADER_LEN + 2 * chunk].to_vec()),
            ("truncated inside a chunk", file[..file.len() - 3].to_vec()),
            ("header only", file[..HEADER_LEN].to_vec()),
            ("chunk appended", [file.as_slice(), &file[HEADER_LEN..HEADER_LEN + chunk]].concat()),
            (
                "chunks swapped",
                [
                    &file[..HEADER_LEN],
                    &file[HEADER_LEN + chunk..HEADER_LEN + 2 * chunk],
                    &file[HEADER_LEN..HEADER_LEN + chunk],
                    &file[HEADER_LEN + 2 * chunk..],
                ]
                .concat(),
            ),
        ];
        for (what, altered) in cases {
            assert!(opened(&key, &altered, &sha).is_err(), "{what} was accepted");
        }
        let other = EncryptionKey::from_bytes(&[4; 32]);
        let error = opened(&other, &file, &sha).unwrap_err();
        assert!(
            error.to_string().contains(&format!("encrypted with key {}, not with the configured key {}", key.id(), other.id())),
            "{error}"
        );
        assert_eq!(sealed_key_id(&file), Some(key.id()));
        // A key id rewritten to the other key's still fails: the header is authenticated.
        let mut relabelled = file.clone();
        relabelled[HEADER_LEN - KEY_ID_LEN..HEADER_LEN].copy_from_slice(&other.id);
        assert!(opened(&other, &relabelled, &sha).is_err());
        assert!(opened(&key, &file, &digest(b"other")).is_err(), "a file under another name was accepted");
    }

    #[test]
    fn key_files_hold_hex_or_raw_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let hex_file = dir.path().join("hex");
        std::fs::write(&hex_file, format!("{}\n", "ab".repeat(32))).unwrap();
        let raw_file = dir.path().join("raw");
        std::fs::write(&raw_file, [0xab; 32]).unwrap();
        let plain = b"same key either way";
        let file = sealed(&EncryptionKey::from_file(&hex_file).unwrap(), plain, 8);
        assert_eq!(opened(&EncryptionKey::from_file(&raw_file).unwrap(), &file, &digest(plain)).unwrap(), plain);
        let short = dir.path().join("short");
        std::fs::write(&short, "abcd").unwrap();
        let error = EncryptionKey::from_file(&short).unwrap_err();
        assert!(error.contains("64 hex digits") && error.contains("holds 4 bytes"), "{error}");
        assert!(EncryptionKey::from_file(&dir.path().join("missing")).unwrap_err().contains("cannot read"));
    }
}
