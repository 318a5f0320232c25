//! Device identity: bearer tokens, the device directory (SQLite or MySQL/MariaDB via sqlx),
//! and a short-lived in-memory cache in front of it.
//!
//! A device is registered once (`vigil device register`), bound to one patient and optionally
//! to a sample rate and channel list. Registration returns a [`DeviceToken`] that is shown
//! once; only its SHA-256 is stored.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use lru::LruCache;
use rand::RngCore;
use sha2::{Digest, Sha256};
use vigil_db::{on_pool, DbError, DbPool};

/// Prefix of every device token, so secret scanners and humans recognise one.
pub const TOKEN_PREFIX: &str = "vigil_dt_";

/// A device bearer token. Only ever printed once, at registration.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceToken(String);

impl std::fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceToken(<redacted>)")
    }
}

impl DeviceToken {
    /// 32 bytes from the OS-seeded CSPRNG, base64url without padding, with [`TOKEN_PREFIX`].
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        ))
    }

    /// Wraps a token presented by a client.
    pub fn from_presented(token: &str) -> Self {
        Self(token.to_owned())
    }

    /// The secret, for printing once or sending as `Authorization: Bearer`.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the directory stores and looks up.
    ///
    /// A single fast SHA-256 is the right hash here, unlike for passwords: the token carries
    /// 256 bits of randomness, so a stolen hash cannot be brute-forced whatever the hash's
    /// speed, and a slow KDF (argon2, bcrypt) would only make every request expensive. Lookup
    /// is by hash, so comparing hashes in the database leaks nothing useful about the token.
    pub fn sha256(&self) -> TokenHash {
        TokenHash(hex::encode(Sha256::digest(self.0.as_bytes())))
    }
}

/// Lowercase hex SHA-256 of a [`DeviceToken`] (64 chars).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(String);

impl TokenHash {
    /// The hex digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A device as the directory knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredDevice {
    /// Device id (`device_id` in records).
    pub device_id: String,
    /// The one patient this device may send data for.
    pub patient_id: String,
    /// Registered EEG sampling rate; records with another rate are refused.
    pub sample_rate_hz: Option<f64>,
    /// Registered EEG channel labels in order; records with others are refused.
    pub channels: Option<Vec<String>>,
}

/// What `vigil device register` provides.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDevice {
    /// Device id.
    pub device_id: String,
    /// Patient the device is bound to.
    pub patient_id: String,
    /// Optional sampling rate to enforce.
    pub sample_rate_hz: Option<f64>,
    /// Optional channel labels to enforce.
    pub channels: Option<Vec<String>>,
}

/// Device directory failures.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The URL is neither `sqlite://` nor `mysql://`.
    #[error("unsupported device database URL {0:?}: use sqlite://path or mysql://host/db")]
    BadUrl(String),
    /// `register` for a device id that already exists.
    #[error("device {0:?} is already registered (revoke it or pick another id)")]
    DeviceExists(String),
    /// `revoke` for a device id with no active registration.
    #[error("no active device {0:?}")]
    UnknownDevice(String),
    /// A registration field is out of range.
    #[error("invalid registration: {0}")]
    InvalidRegistration(String),
    /// Database error.
    #[error("device database: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the schema failed.
    #[error("device database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored channel list is not a JSON list of strings.
    #[error("device {device_id:?} has a corrupt channel list: {reason}")]
    CorruptRow {
        /// Device.
        device_id: String,
        /// Parser message.
        reason: String,
    },
}

impl From<DbError> for DirectoryError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::BadUrl(url) => DirectoryError::BadUrl(url),
            DbError::Database(e) => DirectoryError::Database(e),
            DbError::Migrate(e) => DirectoryError::Migrate(e),
        }
    }
}

/// Where devices and their token hashes live.
#[async_trait]
pub trait DeviceDirectory: Send + Sync + 'static {
    /// Registers a device and returns its token (shown once; only the hash is stored).
    async fn register(&self, device: &NewDevice) -> Result<DeviceToken, DirectoryError>;
    /// Revokes the device's token; false if no active device has that id.
    async fn revoke(&self, device_id: &str) -> Result<bool, DirectoryError>;
    /// The active (not revoked) device holding the token with this hash.
    async fn authenticate(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<RegisteredDevice>, DirectoryError>;
}

#[derive(sqlx::FromRow)]
struct DeviceRow {
    device_id: String,
    patient_id: String,
    sample_rate_hz: Option<f64>,
    channels: Option<String>,
}

impl DeviceRow {
    fn into_device(self) -> Result<RegisteredDevice, DirectoryError> {
        let channels = match self.channels {
            None => None,
            Some(text) => Some(serde_json::from_str::<Vec<String>>(&text).map_err(|e| {
                DirectoryError::CorruptRow {
                    device_id: self.device_id.clone(),
                    reason: e.to_string(),
                }
            })?),
        };
        Ok(RegisteredDevice {
            device_id: self.device_id,
            patient_id: self.patient_id,
            sample_rate_hz: self.sample_rate_hz,
            channels,
        })
    }
}

/// [`DeviceDirectory`] on SQLite or MySQL/MariaDB, chosen by URL.
#[derive(Debug, Clone)]
pub struct SqlDeviceDirectory {
    pool: DbPool,
}

impl SqlDeviceDirectory {
    /// Connects to `sqlite://...` or `mysql://...` and applies the schema if it is missing
    /// (the `devices` table is defined once, in `vigil-db`'s migrations).
    pub async fn connect(url: &str) -> Result<Self, DirectoryError> {
        let directory = Self {
            pool: DbPool::connect(url).await?,
        };
        directory.migrate().await?;
        Ok(directory)
    }

    /// Applies the schema (idempotent).
    pub async fn migrate(&self) -> Result<(), DirectoryError> {
        Ok(self.pool.migrate().await?)
    }

    /// Closes the pool.
    pub async fn close(&self) {
        on_pool!(&self.pool, |p| p.close().await);
    }
}

fn check_registration(device: &NewDevice) -> Result<(), DirectoryError> {
    let ident_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    };
    if !ident_ok(&device.device_id) || !ident_ok(&device.patient_id) {
        return Err(DirectoryError::InvalidRegistration(
            "device_id and patient_id must be 1..=64 chars of A-Z a-z 0-9 . _ : -".to_owned(),
        ));
    }
    if let Some(rate) = device.sample_rate_hz {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(DirectoryError::InvalidRegistration(format!(
                "sample rate {rate} Hz must be positive"
            )));
        }
    }
    if let Some(channels) = &device.channels {
        if channels.is_empty() || channels.iter().any(|c| c.is_empty() || c.len() > 64) {
            return Err(DirectoryError::InvalidRegistration(
                "channels must be a non-empty list of 1..=64-byte labels".to_owned(),
            ));
        }
    }
    Ok(())
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[async_trait]
impl DeviceDirectory for SqlDeviceDirectory {
    async fn register(&self, device: &NewDevice) -> Result<DeviceToken, DirectoryError> {
        check_registration(device)?;
        let token = DeviceToken::generate();
        let hash = token.sha256();
        let channels = match &device.channels {
            Some(c) => Some(
                serde_json::to_string(c)
                    .map_err(|e| DirectoryError::InvalidRegistration(format!("channels: {e}")))?,
            ),
            None => None,
        };
        let now = vigil_core::time::now_ns();
        let sql = "INSERT INTO devices \
            (device_id, patient_id, token_sha256, sample_rate_hz, channels, created_at, revoked_at) \
            VALUES (?, ?, ?, ?, ?, ?, NULL)";
        let result = on_pool!(&self.pool, |p| sqlx::query(sql)
            .bind(&device.device_id)
            .bind(&device.patient_id)
            .bind(hash.as_str())
            .bind(device.sample_rate_hz)
            .bind(channels.as_deref())
            .bind(now)
            .execute(p)
            .await
            .map(|_| ()));
        match result {
            Ok(()) => Ok(token),
            Err(err) if is_unique_violation(&err) => {
                Err(DirectoryError::DeviceExists(device.device_id.clone()))
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn revoke(&self, device_id: &str) -> Result<bool, DirectoryError> {
        let sql = "UPDATE devices SET revoked_at = ? WHERE device_id = ? AND revoked_at IS NULL";
        let now = vigil_core::time::now_ns();
        let rows = on_pool!(&self.pool, |p| sqlx::query(sql)
            .bind(now)
            .bind(device_id)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(rows > 0)
    }

    async fn authenticate(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<RegisteredDevice>, DirectoryError> {
        let sql = "SELECT device_id, patient_id, sample_rate_hz, channels FROM devices \
            WHERE token_sha256 = ? AND revoked_at IS NULL";
        let row: Option<DeviceRow> = on_pool!(&self.pool, |p| sqlx::query_as(sql)
            .bind(hash.as_str())
            .fetch_optional(p)
            .await)?;
        row.map(DeviceRow::into_device).transpose()
    }
}

/// An in-memory cache in front of a [`DeviceDirectory`], so a device streaming many records a
/// second costs one database lookup per TTL, not one per record.
///
/// Both hits and misses are cached for `ttl`: a revoked token therefore keeps working for at
/// most `ttl` after `vigil device revoke` (5 s by default, `ingest.auth_cache_ttl_ms`). The
/// cache is bounded (least recently used entries are dropped).
pub struct CachedDirectory {
    inner: Arc<dyn DeviceDirectory>,
    ttl: Duration,
    cache: Mutex<LruCache<TokenHash, (Instant, Option<RegisteredDevice>)>>,
}

impl CachedDirectory {
    /// Wraps `inner`, caching up to `capacity` tokens for `ttl`.
    pub fn new(inner: Arc<dyn DeviceDirectory>, ttl: Duration, capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            inner,
            ttl,
            cache: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// The active device holding `token`, from the cache when fresh.
    pub async fn authenticate(
        &self,
        token: &DeviceToken,
    ) -> Result<Option<RegisteredDevice>, DirectoryError> {
        let hash = token.sha256();
        {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, device)) = cache.get(&hash) {
                if at.elapsed() < self.ttl {
                    return Ok(device.clone());
                }
            }
        }
        let device = self.inner.authenticate(&hash).await?;
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(hash, (Instant::now(), device.clone()));
        Ok(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_hashed_to_64_hex() {
        let a = DeviceToken::generate();
        let b = DeviceToken::generate();
        assert_ne!(a, b);
        assert!(a.expose().starts_with(TOKEN_PREFIX));
        assert_eq!(a.expose().len(), TOKEN_PREFIX.len() + 43);
        let hash = a.sha256();
        assert_eq!(hash.as_str().len(), 64);
        assert!(hash.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(hash, DeviceToken::from_presented(a.expose()).sha256());
        assert!(
            !format!("{a:?}").contains(a.expose()),
            "Debug must not leak"
        );
    }
}
