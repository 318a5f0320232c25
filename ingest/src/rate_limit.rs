//! Per-device token bucket: `rate` requests per second sustained, `burst` at once. Buckets are
//! kept for a bounded number of devices (least recently used forgotten, which only ever
//! refills a bucket early).

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets keyed by device id.
pub struct RateLimiter {
    rate_per_s: f64,
    burst: f64,
    buckets: Mutex<LruCache<String, Bucket>>,
}

impl RateLimiter {
    /// `rate_per_s` sustained (must be > 0), `burst` tokens at most; up to `devices` buckets.
    pub fn new(rate_per_s: f64, burst: u32, devices: usize) -> Self {
        let cap = NonZeroUsize::new(devices).unwrap_or(NonZeroUsize::MIN);
        Self {
            rate_per_s: if rate_per_s.is_finite() && rate_per_s > 0.0 {
                rate_per_s
            } else {
                1.0
            },
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(LruCache::new(cap)),
        }
    }

    /// Takes one token for `device_id` at time `now`; `Err(wait)` when the bucket is empty.
    pub fn check_at(&self, device_id: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.get_or_insert_mut(device_id.to_owned(), || Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate_per_s).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.rate_per_s;
            Err(Duration::from_secs_f64(wait.clamp(0.001, 3600.0)))
        }
    }

    /// Takes one token for `device_id` now.
    pub fn check(&self, device_id: &str) -> Result<(), Duration> {
        self.check_at(device_id, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_sustained_rate_per_device() {
        let limiter = RateLimiter::new(2.0, 3, 10);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at("a", t0).is_ok());
        }
        let wait = limiter.check_at("a", t0).expect_err("burst used up");
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        assert!(
            limiter.check_at("b", t0).is_ok(),
            "other devices unaffected"
        );
        assert!(limiter
            .check_at("a", t0 + Duration::from_millis(500))
            .is_ok());
        assert!(limiter
            .check_at("a", t0 + Duration::from_millis(500))
            .is_err());
    }
}
