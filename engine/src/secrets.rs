//! Secrets: random generation, lookup hashes and the server key.
//!
//! Every secret paird hands out or accepts (pairing codes, installation credentials, operator
//! tokens, organization keys) is at least 128 bits from the OS random source. The database keeps
//! only a SHA-256 hash of each, which is what lookups go by; a hash of a high-entropy secret needs
//! no salt or slow hashing, and keeps the pairing hot path cheap. Hashes are domain-separated so
//! that a code's hash can never match a token's.
//!
//! Reusable codes must be shown again to their organization's admins, so their secret is also
//! stored encrypted (XChaCha20-Poly1305) with the server key, bound to the code's id.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use data_encoding::{BASE32_NOPAD, HEXLOWER_PERMISSIVE};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Fills an array from the OS random source.
///
/// # Panics
/// If the operating system cannot supply random bytes, which on Linux happens only before the
/// kernel's pool is initialised at boot. Handing out a guessable secret instead would be worse.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if let Err(error) = getrandom::fill(&mut bytes) {
        panic!("the OS random source failed: {error}");
    }
    bytes
}

/// What a hash is of; part of the hashed input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    PairingCode,
    Credential,
    Token,
}

impl SecretKind {
    fn domain(self) -> &'static [u8] {
        match self {
            SecretKind::PairingCode => b"paird/pairing-code/v1\0",
            SecretKind::Credential => b"paird/credential/v1\0",
            SecretKind::Token => b"paird/token/v1\0",
        }
    }
}

/// SHA-256 of a secret, the only form in which the database holds it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretHash(pub [u8; 32]);

impl SecretHash {
    pub fn of(kind: SecretKind, secret: &[u8]) -> SecretHash {
        let mut hasher = Sha256::new();
        hasher.update(kind.domain());
        hasher.update(secret);
        SecretHash(hasher.finalize().into())
    }

    /// Constant-time comparison, for credential checks.
    pub fn matches(&self, other: &SecretHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretHash({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

/// The hash of a pairing code, from its canonical text (upper case, as issued).
pub fn code_hash(canonical: &str) -> SecretHash {
    SecretHash::of(SecretKind::PairingCode, canonical.as_bytes())
}

/// The hash of an installation credential (its raw bytes).
pub fn credential_hash(credential: &[u8]) -> SecretHash {
    SecretHash::of(SecretKind::Credential, credential)
}

/// The hash of a bearer token (operator token or organization key).
pub fn token_hash(token: &str) -> SecretHash {
    SecretHash::of(SecretKind::Token, token.trim().as_bytes())
}

/// A pairing code the engine issued: 160 bits from the OS random source as 32 upper-case base32
/// characters (the form the device protocol's QR payload carries). Its `Debug` shows only the
/// first characters, so that a code does not end up in a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct PairingCode(String);

impl PairingCode {
    /// Random bytes in a code.
    pub const BYTES: usize = 20;

    /// The canonical text: what devices present and what is hashed for lookups.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PairingCode({}…)", self.0.get(..4).unwrap_or_default())
    }
}

/// A new pairing code from the OS random source.
pub fn new_pairing_code() -> PairingCode {
    let bytes: [u8; PairingCode::BYTES] = random_bytes();
    PairingCode(BASE32_NOPAD.encode(&bytes))
}

/// Prefix of operator tokens.
pub const OPERATOR_TOKEN_PREFIX: &str = "paird_op_";
/// Prefix of organization keys.
pub const ORG_KEY_PREFIX: &str = "paird_key_";

/// A new bearer token with the given prefix: 160 random bits in lower-case base32.
pub fn new_token(prefix: &str) -> String {
    let secret: [u8; 20] = random_bytes();
    format!(
        "{prefix}{}",
        BASE32_NOPAD.encode(&secret).to_ascii_lowercase()
    )
}

/// Why a server key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerKeyError {
    #[error("a server key is 64 hexadecimal characters (32 bytes)")]
    Format,
}

/// The 256-bit server key that encrypts reusable codes (and stored idempotent replies) at rest.
#[derive(Clone)]
pub struct ServerKey([u8; 32]);

impl ServerKey {
    pub fn generate() -> ServerKey {
        ServerKey(random_bytes())
    }

    pub fn from_hex(text: &str) -> Result<ServerKey, ServerKeyError> {
        let bytes = HEXLOWER_PERMISSIVE
            .decode(text.trim().as_bytes())
            .map_err(|_| ServerKeyError::Format)?;
        Ok(ServerKey(
            bytes.try_into().map_err(|_| ServerKeyError::Format)?,
        ))
    }

    pub fn to_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.0)
    }
}

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerKey(..)")
    }
}

/// The stored ciphertext could not be opened: wrong server key, or tampered data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot decrypt: the server key does not match the one this data was written with")]
pub struct DecryptError;

/// Authenticated encryption with the server key.
#[derive(Clone)]
pub struct SecretCipher {
    aead: XChaCha20Poly1305,
}

impl fmt::Debug for SecretCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretCipher(..)")
    }
}

const NONCE_LEN: usize = 24;

impl SecretCipher {
    pub fn new(key: &ServerKey) -> SecretCipher {
        SecretCipher {
            aead: XChaCha20Poly1305::new((&key.0).into()),
        }
    }

    /// Encrypts `plaintext`, bound to `context` (for example the row's id): the ciphertext
    /// opens only with the same context. Output: a random 24-byte nonce, then the ciphertext.
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = random_bytes();
        let payload = Payload {
            msg: plaintext,
            aad: context,
        };
        // Encryption into a Vec fails only if the plaintext exceeds the cipher's limit (256 GiB).
        let sealed = self
            .aead
            .encrypt(XNonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, DecryptError> {
        if sealed.len() < NONCE_LEN {
            return Err(DecryptError);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.aead
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context,
                },
            )
            .map_err(|_| DecryptError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_domain_separated() {
        let secret = b"same bytes";
        assert_ne!(
            SecretHash::of(SecretKind::PairingCode, secret),
            SecretHash::of(SecretKind::Token, secret)
        );
        assert!(
            SecretHash::of(SecretKind::Credential, secret)
                .matches(&SecretHash::of(SecretKind::Credential, secret))
        );
    }

    #[test]
    fn sealed_secrets_open_only_with_the_same_key_and_context() {
        let key = ServerKey::generate();
        let cipher = SecretCipher::new(&key);
        let sealed = cipher.seal(b"row-1", b"CODE");
        assert_eq!(cipher.open(b"row-1", &sealed), Ok(b"CODE".to_vec()));
        assert_eq!(cipher.open(b"row-2", &sealed), Err(DecryptError));
        let other = SecretCipher::new(&ServerKey::generate());
        assert_eq!(other.open(b"row-1", &sealed), Err(DecryptError));
        assert!(!sealed.windows(4).any(|w| w == b"CODE"));
    }

    #[test]
    fn server_key_hex_round_trip() {
        let key = ServerKey::generate();
        let again = ServerKey::from_hex(&key.to_hex()).expect("valid");
        assert_eq!(again.0, key.0);
        assert_eq!(
            ServerKey::from_hex("abc").map(|_| ()),
            Err(ServerKeyError::Format)
        );
    }

    #[test]
    fn pairing_codes_are_32_base32_characters_and_do_not_print() {
        let code = new_pairing_code();
        assert_eq!(code.as_str().len(), 32);
        assert!(
            code.as_str()
                .bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
        );
        assert_ne!(code, new_pairing_code());
        assert!(!format!("{code:?}").contains(code.as_str()));
    }

    #[test]
    fn tokens_have_their_prefix_and_enough_entropy() {
        let token = new_token(ORG_KEY_PREFIX);
        assert!(token.starts_with(ORG_KEY_PREFIX));
        assert_eq!(token.len(), ORG_KEY_PREFIX.len() + 32);
        assert_ne!(token, new_token(ORG_KEY_PREFIX));
    }
}
