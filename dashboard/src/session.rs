//! Clinician sessions: a signed cookie and a CSRF token tied to it.
//!
//! The cookie value is `v1.<user id>.<expiry, unix s>.<nonce>.<mac>` where `mac` is
//! HMAC-SHA-256 over the rest under `dashboard.session_key`. It carries no secret and no
//! patient data, only who is logged in until when; every request still looks the user up, so
//! a deleted user is locked out at once. The cookie is `HttpOnly` (page scripts cannot read
//! it), `SameSite=Strict` (never sent on cross-site requests) and `Secure` when configured.
//!
//! CSRF: state-changing requests must carry `X-CSRF-Token`, a synchronizer token derived from
//! the session's nonce (HMAC under the same key with another label). The page gets it from
//! `GET /api/session`, which a cross-site page cannot read, and each login has its own.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "vigil_session";
/// Header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A valid session read from a cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Staff user id.
    pub user_id: i64,
    /// Expiry, unix seconds.
    pub expires_s: i64,
    /// Random per login; the CSRF token derives from it.
    pub nonce: String,
}

/// The signing key.
#[derive(Clone)]
pub struct SessionKeys {
    key: Vec<u8>,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(..)")
    }
}

impl SessionKeys {
    /// Keys from the configured secret; an empty secret makes a random per-process key
    /// (returns `true` as the second value so the caller can warn).
    pub fn from_secret(secret: &str) -> (Self, bool) {
        if secret.is_empty() {
            let key: [u8; 32] = rand::random();
            (Self { key: key.to_vec() }, true)
        } else {
            (
                Self {
                    key: secret.as_bytes().to_vec(),
                },
                false,
            )
        }
    }

    fn mac(&self, label: &str, message: &str) -> HmacSha256 {
        // HMAC takes keys of any length; new_from_slice cannot fail for HMAC.
        let mut mac = HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(label.as_bytes());
        mac.update(b"\0");
        mac.update(message.as_bytes());
        mac
    }

    /// A new session for `user_id` valid for `ttl_s` from `now_s`: the cookie value and the
    /// session it encodes.
    pub fn issue(&self, user_id: i64, now_s: i64, ttl_s: u64) -> (String, Session) {
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let expires_s = now_s.saturating_add(i64::try_from(ttl_s).unwrap_or(i64::MAX));
        let body = format!("v1.{user_id}.{expires_s}.{nonce}");
        let tag = URL_SAFE_NO_PAD.encode(self.mac("session", &body).finalize().into_bytes());
        (
            format!("{body}.{tag}"),
            Session {
                user_id,
                expires_s,
                nonce,
            },
        )
    }

    /// The session in a cookie value, if the signature is ours and it has not expired.
    pub fn open(&self, value: &str, now_s: i64) -> Option<Session> {
        let (body, tag) = value.rsplit_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac("session", body).verify_slice(&tag).ok()?;
        let mut parts = body.split('.');
        if parts.next()? != "v1" {
            return None;
        }
        let user_id = parts.next()?.parse().ok()?;
        let expires_s: i64 = parts.next()?.parse().ok()?;
        let nonce = parts.next()?.to_owned();
        if parts.next().is_some() || expires_s <= now_s {
            return None;
        }
        Some(Session {
            user_id,
            expires_s,
            nonce,
        })
    }

    /// The CSRF token of a session.
    pub fn csrf_token(&self, session: &Session) -> String {
        URL_SAFE_NO_PAD.encode(self.mac("csrf", &session.nonce).finalize().into_bytes())
    }

    /// Whether `token` is the session's CSRF token (constant-time comparison).
    pub fn check_csrf(&self, session: &Session, token: &str) -> bool {
        URL_SAFE_NO_PAD
            .decode(token.trim())
            .ok()
            .is_some_and(|tag| self.mac("csrf", &session.nonce).verify_slice(&tag).is_ok())
    }
}

/// `Set-Cookie` value for a session cookie.
pub fn set_cookie(value: &str, max_age_s: u64, secure: bool) -> String {
    format!(
        "{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// `Set-Cookie` value that deletes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    set_cookie("", 0, secure)
}

/// The session cookie's value in a `Cookie` header, if present.
pub fn cookie_value(header: &str) -> Option<&str> {
    header.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == COOKIE_NAME).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_sessions_open_until_they_expire() {
        let (keys, generated) = SessionKeys::from_secret("0123456789abcdef0123456789abcdef");
        assert!(!generated);
        let (cookie, session) = keys.issue(7, 1_000, 60);
        assert_eq!(keys.open(&cookie, 1_000), Some(session.clone()));
        assert_eq!(keys.open(&cookie, 1_059).map(|s| s.user_id), Some(7));
        assert_eq!(keys.open(&cookie, 1_060), None, "expired");
    }

    #[test]
    fn forged_or_foreign_cookies_are_refused() {
        let (keys, _) = SessionKeys::from_secret("0123456789abcdef0123456789abcdef");
        let (other, _) = SessionKeys::from_secret("");
        let (cookie, _) = keys.issue(7, 1_000, 60);
        assert_eq!(other.open(&cookie, 1_000), None, "other key");
        let forged = cookie.replacen("v1.7.", "v1.1.", 1);
        assert_eq!(keys.open(&forged, 1_000), None, "user id changed");
        let extended = cookie.replacen(".1060.", ".9999.", 1);
        assert_eq!(keys.open(&extended, 1_000), None, "expiry changed");
        assert_eq!(keys.open("garbage", 1_000), None);
        assert_eq!(keys.open("", 1_000), None);
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let (keys, _) = SessionKeys::from_secret("0123456789abcdef0123456789abcdef");
        let (_, a) = keys.issue(7, 1_000, 60);
        let (_, b) = keys.issue(7, 1_000, 60);
        let token = keys.csrf_token(&a);
        assert!(keys.check_csrf(&a, &token));
        assert!(
            !keys.check_csrf(&b, &token),
            "another login of the same user"
        );
        assert!(!keys.check_csrf(&a, ""));
        assert!(!keys.check_csrf(&a, "not base64 !"));
    }

    #[test]
    fn cookie_header_parsing() {
        assert_eq!(
            cookie_value("a=1; vigil_session=v1.2.3.4.5; b=2"),
            Some("v1.2.3.4.5")
        );
        assert_eq!(cookie_value("vigil_sessionx=1"), None);
        let set = set_cookie("abc", 60, true);
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        assert!(set.ends_with("; Secure"));
        assert!(!set_cookie("abc", 60, false).contains("Secure"));
    }
}
