//! Token buckets per client, in memory: anonymous QR pages and sign-up
//! requests are limited per client so one phone (or script) cannot flood a
//! community's ledger. Bounded: past `keys_max` clients the oldest-idle
//! half is forgotten.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{AppError, AppResult};

pub struct RateLimiter {
    what: &'static str,
    /// Whose budget it is, for the refusal ("this client", "this community").
    whose: &'static str,
    burst: f64,
    per_second: f64,
    keys_max: usize,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `burst` at once, then `per_minute` a minute, for each key.
    pub fn new(what: &'static str, whose: &'static str, burst: u32, per_minute: u32) -> Self {
        assert!(per_minute > 0, "a limiter refills");
        RateLimiter {
            what,
            whose,
            burst: f64::from(burst),
            per_second: f64::from(per_minute) / 60.0,
            keys_max: 100_000,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`, or refuses with `RATE_LIMITED`.
    pub fn check(&self, key: &str) -> AppResult<()> {
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
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            return Err(AppError::rate_limited(
                format!(
                    "too many {} from {}; try again in {seconds} s",
                    self.what, self.whose
                ),
                Duration::from_secs(seconds),
            ));
        }
        *tokens -= 1.0;
        Ok(())
    }
}

/// How fast submissions (reports and suggestions) may come, per budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubmissionRates {
    /// Per anonymous client address in a community: a burst, then per minute.
    pub anonymous_burst: u32,
    pub anonymous_per_minute: u32,
    /// All anonymous submissions to one community together, so that many
    /// addresses (a botnet, a rotating proxy) cannot flood its ledger.
    pub anonymous_community_burst: u32,
    pub anonymous_community_per_minute: u32,
    /// Per signed-in caller in a community.
    pub member_burst: u32,
    pub member_per_minute: u32,
}

impl SubmissionRates {
    /// Every budget `factor` times as large: for what a caller sends a
    /// few of for each submission (photos).
    pub fn times(self, factor: u32) -> Self {
        SubmissionRates {
            anonymous_burst: self.anonymous_burst.saturating_mul(factor),
            anonymous_per_minute: self.anonymous_per_minute.saturating_mul(factor),
            anonymous_community_burst: self.anonymous_community_burst.saturating_mul(factor),
            anonymous_community_per_minute: self
                .anonymous_community_per_minute
                .saturating_mul(factor),
            member_burst: self.member_burst.saturating_mul(factor),
            member_per_minute: self.member_per_minute.saturating_mul(factor),
        }
    }
}

impl Default for SubmissionRates {
    fn default() -> Self {
        SubmissionRates {
            anonymous_burst: 10,
            anonymous_per_minute: 6,
            anonymous_community_burst: 200,
            anonymous_community_per_minute: 120,
            member_burst: 30,
            member_per_minute: 20,
        }
    }
}

/// The budgets a submission is counted against. Keys are things a client
/// cannot rotate at will: the address the server vouches for (never a
/// fingerprint the client chose), the token's subject, the community.
pub struct SubmissionLimits {
    anonymous_client: RateLimiter,
    anonymous_community: RateLimiter,
    member: RateLimiter,
}

impl SubmissionLimits {
    pub fn new(rates: SubmissionRates) -> Self {
        SubmissionLimits {
            anonymous_client: RateLimiter::new(
                "anonymous submissions",
                "this address",
                rates.anonymous_burst,
                rates.anonymous_per_minute,
            ),
            anonymous_community: RateLimiter::new(
                "anonymous submissions",
                "all addresses to this community",
                rates.anonymous_community_burst,
                rates.anonymous_community_per_minute,
            ),
            member: RateLimiter::new(
                "submissions",
                "this account",
                rates.member_burst,
                rates.member_per_minute,
            ),
        }
    }

    /// Counts an anonymous submission from `client` to `community`.
    pub fn anonymous(&self, community: uuid::Uuid, client: &str) -> AppResult<()> {
        self.anonymous_client
            .check(&format!("{community}|{client}"))?;
        self.anonymous_community.check(&community.to_string())
    }

    /// Counts a signed-in caller's submission to `community`.
    pub fn member(&self, community: uuid::Uuid, subject: uuid::Uuid) -> AppResult<()> {
        self.member.check(&format!("{community}|{subject}"))
    }
}
