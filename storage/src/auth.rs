//! Credentials: argon2id password hashes for users, and API bearer tokens stored as SHA-256.
//!
//! Passwords are low-entropy secrets, so they get a slow, memory-hard KDF (argon2id with the
//! RustCrypto defaults: 19 MiB, 2 passes, 1 lane, random 16-byte salt). API tokens carry 256
//! random bits, so a single SHA-256 is enough at rest (the same reasoning as device tokens in
//! vigil-ingest) and keeps every request cheap.

use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::StorageError;

/// Prefix of every user API token, so secret scanners and humans recognise one.
pub const USER_TOKEN_PREFIX: &str = "vigil_ut_";

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 10;

/// Hashes `password` with argon2id and a fresh random salt (PHC string format).
pub fn hash_password(password: &str) -> Result<String, StorageError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| StorageError::PasswordHash(e.to_string()))
}

/// True when `password` matches the PHC `hash` (false for a malformed hash).
pub fn verify_password(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of a random password, verified against when the username does not exist so that
/// an unknown user costs the same time as a wrong password.
pub fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let mut bytes = [0u8; 24];
        rand::rng().fill_bytes(&mut bytes);
        hash_password(&hex::encode(bytes)).unwrap_or_default()
    })
}

/// A new API token: 32 random bytes, base64url, with [`USER_TOKEN_PREFIX`].
pub fn new_api_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{USER_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// A new random password for `vigil user add` when the operator gives none: 18 random bytes
/// (144 bits), base64url, so it can be typed and pasted without quoting.
pub fn new_password() -> String {
    let mut bytes = [0u8; 18];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Lowercase hex SHA-256 of a token, as stored in `api_tokens.token_sha256`.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Usernames and patient ids: 1..=64 chars of `A-Z a-z 0-9 . _ : - @`.
pub fn check_identifier(field: &'static str, value: &str) -> Result<(), StorageError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(StorageError::Invalid {
            field,
            reason: format!("{value:?} must be 1..=64 chars of A-Z a-z 0-9 . _ : - @"),
        })
    }
}

/// Passwords: at least [`MIN_PASSWORD_LEN`] characters, at most 1024 bytes.
pub fn check_password(password: &str) -> Result<(), StorageError> {
    if password.chars().count() < MIN_PASSWORD_LEN || password.len() > 1024 {
        return Err(StorageError::Invalid {
            field: "password",
            reason: format!("must be {MIN_PASSWORD_LEN}..=1024 characters"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_are_accepted_and_distinct() {
        let (a, b) = (new_password(), new_password());
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        check_password(&a).expect("a generated password passes the policy");
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn argon2id_hash_verifies_only_the_right_password() {
        let hash = hash_password("correct horse battery").expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password(&hash, "correct horse battery"));
        assert!(!verify_password(&hash, "correct horse battery!"));
        assert!(!verify_password("not a phc string", "x"));
        assert_ne!(hash, hash_password("correct horse battery").expect("hash"));
        assert!(dummy_hash().starts_with("$argon2id$"));
    }

    #[test]
    fn tokens_are_random_and_hash_to_hex() {
        let a = new_api_token();
        assert!(a.starts_with(USER_TOKEN_PREFIX));
        assert_ne!(a, new_api_token());
        assert_eq!(token_sha256(&a).len(), 64);
    }
}
