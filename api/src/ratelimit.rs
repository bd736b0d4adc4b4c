//! Token buckets per client, in memory: anonymous QR pages and sign-up
//! requests are limited per client so one phone (or script) cannot flood a
//! community's ledger. Bounded: past `keys_max` clients the oldest-idle
//! half is forgotten.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{ApiError, ApiResult};

pub struct RateLimiter {
    what: &'static str,
    burst: f64,
    per_second: f64,
    keys_max: usize,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `burst` at once, then `per_minute` a minute.
    pub fn new(what: &'static str, burst: u32, per_minute: u32) -> Self {
        RateLimiter {
            what,
            burst: f64::from(burst),
            per_second: f64::from(per_minute) / 60.0,
            keys_max: 100_000,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`, or refuses with `RATE_LIMITED`.
    pub fn check(&self, key: &str) -> ApiResult<()> {
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= self.keys_max && !buckets.contains_key(key) {
            let mut idle: Vec<(String, Instant)> = buckets
                .iter()
                .map(|(k, (_, at))| (k.clone(), *at))
                .collect();
            idle.sort_by_key(|(_, at)| *at);
            for (key, _) in idle.into_iter().take(self.keys_max / 2) {
                buckets.remove(&key);
            }
        }
        let (tokens, last) = buckets.entry(key.to_string()).or_insert((self.burst, now));
        let refill = now.duration_since(*last).as_secs_f64() * self.per_second;
        *tokens = (*tokens + refill).min(self.burst);
        *last = now;
        if *tokens < 1.0 {
            let wait = Duration::from_secs_f64((1.0 - *tokens) / self.per_second);
            return Err(ApiError::rate_limited(format!(
                "too many {} from this client; try again in {} s",
                self.what,
                wait.as_secs().max(1)
            )));
        }
        *tokens -= 1.0;
        Ok(())
    }
}
