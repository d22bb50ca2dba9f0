//! Request-rate limits as token buckets: per API key and per tenant for
//! GraphQL operations (HTTP and WebSocket), per tenant and plugin for
//! public plugin routes. A refused request costs nothing and is told how
//! long to wait.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crm_core::TenantId;

/// A sustained rate in requests per second and the burst a quiet client
/// may spend at once. A rate of 0 turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

impl RateLimit {
    pub const OFF: RateLimit = RateLimit { per_second: 0.0, burst: 0.0 };

    pub const fn new(per_second: f64, burst: f64) -> Self {
        RateLimit { per_second, burst }
    }

    pub fn is_off(&self) -> bool {
        self.per_second <= 0.0
    }

    /// `RATE` or `RATE:BURST` in requests per second; the burst defaults to
    /// twice the rate (at least 1). `0` turns the limit off.
    pub fn parse(text: &str) -> Result<RateLimit, String> {
        let number = |part: &str, what: &str| -> Result<f64, String> {
            match part.trim().parse::<f64>() {
                Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
                _ => Err(format!("{what} must be a non-negative number, got '{}'", part.trim())),
            }
        };
        let (rate, burst) = match text.split_once(':') {
            Some((rate, burst)) => (number(rate, "the rate")?, Some(number(burst, "the burst")?)),
            None => (number(text, "the rate")?, None),
        };
        if rate == 0.0 {
            return Ok(RateLimit::OFF);
        }
        let burst = burst.unwrap_or((rate * 2.0).max(1.0));
        if burst < 1.0 {
            return Err("the burst must be at least 1".into());
        }
        Ok(RateLimit { per_second: rate, burst })
    }
}

/// Buckets that were never touched and full ones are the same thing, so
/// full buckets are dropped once the map grows past this (then past twice
/// its size after the sweep): keys chosen by clients cannot grow it forever.
const SWEEP_AT: usize = 4096;

struct Buckets<K> {
    by_key: HashMap<K, (f64, Instant)>,
    sweep_at: usize,
}

/// One token bucket per key.
pub(crate) struct TokenBuckets<K> {
    limit: RateLimit,
    buckets: Mutex<Buckets<K>>,
}

impl<K: Hash + Eq> TokenBuckets<K> {
    pub(crate) fn new(limit: RateLimit) -> Self {
        TokenBuckets { limit, buckets: Mutex::new(Buckets { by_key: HashMap::new(), sweep_at: SWEEP_AT }) }
    }

    /// Takes one token from `key`'s bucket; when it is empty, the error is
    /// the time until a token is available.
    pub(crate) fn take(&self, key: K) -> Result<(), Duration> {
        if self.limit.is_off() {
            return Ok(());
        }
        let RateLimit { per_second, burst } = self.limit;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.by_key.len() >= buckets.sweep_at {
            buckets.by_key.retain(|_, (tokens, last)| *tokens + now.duration_since(*last).as_secs_f64() * per_second < burst);
            buckets.sweep_at = (buckets.by_key.len() * 2).max(SWEEP_AT);
        }
        let (tokens, last) = buckets.by_key.entry(key).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * per_second).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / per_second))
        }
    }

    /// Returns a token taken by a request that was refused for another reason.
    pub(crate) fn give_back(&self, key: &K) {
        if self.limit.is_off() {
            return;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((tokens, _)) = buckets.by_key.get_mut(key) {
            *tokens = (*tokens + 1.0).min(self.limit.burst);
        }
    }
}

/// Whose limit a refused request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Key,
    Tenant,
}

/// A refused request: whose limit, and how long to wait.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refused {
    pub scope: Scope,
    pub wait: Duration,
}

impl Refused {
    /// Whole seconds, rounded up, as `retry-after` wants them.
    pub(crate) fn retry_after_seconds(&self) -> u64 {
        retry_after_seconds(self.wait)
    }

    pub(crate) fn message(&self) -> String {
        let whose = match self.scope {
            Scope::Key => "this API key",
            Scope::Tenant => "this tenant",
        };
        format!("too many requests for {whose}; retry in {} s", self.retry_after_seconds())
    }
}

pub(crate) fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// The limits of GraphQL operations: a request needs a token from its
/// key's bucket and from its tenant's.
pub(crate) struct ApiLimiter {
    keys: TokenBuckets<String>,
    tenants: TokenBuckets<TenantId>,
}

impl ApiLimiter {
    pub(crate) fn new(per_key: RateLimit, per_tenant: RateLimit) -> Self {
        ApiLimiter { keys: TokenBuckets::new(per_key), tenants: TokenBuckets::new(per_tenant) }
    }

    /// Takes a token for one operation of `key` (the caller's credential)
    /// in `tenant`.
    pub(crate) fn check(&self, key: &str, tenant: &TenantId) -> Result<(), Refused> {
        let key = key.to_string();
        self.keys.take(key.clone()).map_err(|wait| Refused { scope: Scope::Key, wait })?;
        if let Err(wait) = self.tenants.take(tenant.clone()) {
            // The key's token was not used: a busy tenant must not also
            // drain its keys' buckets.
            self.keys.give_back(&key);
            return Err(Refused { scope: Scope::Tenant, wait });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).expect("tenant id")
    }

    #[test]
    fn parse_accepts_rate_and_burst() {
        assert_eq!(RateLimit::parse("200"), Ok(RateLimit::new(200.0, 400.0)));
        assert_eq!(RateLimit::parse("5:20"), Ok(RateLimit::new(5.0, 20.0)));
        assert_eq!(RateLimit::parse("0.2"), Ok(RateLimit::new(0.2, 1.0)));
        assert!(RateLimit::parse("0").expect("off").is_off());
        assert!(RateLimit::parse("0:10").expect("off").is_off());
        assert!(RateLimit::parse("-1").is_err());
        assert!(RateLimit::parse("fast").is_err());
        assert!(RateLimit::parse("5:0.5").is_err());
        assert!(RateLimit::parse("inf").is_err());
    }

    #[test]
    fn a_bucket_allows_its_burst_then_says_how_long_to_wait() {
        let buckets = TokenBuckets::new(RateLimit::new(1.0, 3.0));
        for _ in 0..3 {
            assert_eq!(buckets.take("a"), Ok(()));
        }
        let wait = buckets.take("a").expect_err("the burst is spent");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert_eq!(retry_after_seconds(wait), 1);
        assert_eq!(buckets.take("b"), Ok(()), "another key has its own bucket");
    }

    #[test]
    fn an_off_limit_never_refuses() {
        let buckets = TokenBuckets::new(RateLimit::OFF);
        for _ in 0..10_000 {
            assert_eq!(buckets.take("a"), Ok(()));
        }
    }

    #[test]
    fn full_buckets_are_swept() {
        // At this rate a bucket is full again within a microsecond.
        let buckets = TokenBuckets::new(RateLimit::new(1e9, 5.0));
        for n in 0..=SWEEP_AT {
            buckets.take(n).expect("a fresh bucket has tokens");
        }
        let swept = buckets.buckets.lock().expect("lock");
        assert!(swept.by_key.len() < SWEEP_AT / 2, "{} buckets kept", swept.by_key.len());
    }

    #[test]
    fn keys_and_tenants_are_limited_separately() {
        let limiter = ApiLimiter::new(RateLimit::new(0.001, 2.0), RateLimit::new(0.001, 3.0));
        let (acme, globex) = (tenant("acme"), tenant("globex"));
        assert!(limiter.check("key-1", &acme).is_ok());
        assert!(limiter.check("key-1", &acme).is_ok());
        let refused = limiter.check("key-1", &acme).expect_err("key-1 spent its burst");
        assert_eq!(refused.scope, Scope::Key);
        assert!(refused.retry_after_seconds() > 1, "{refused:?}");
        // Another key of the same tenant still has tokens, until the tenant runs dry.
        assert!(limiter.check("key-2", &acme).is_ok());
        assert_eq!(limiter.check("key-2", &acme).expect_err("acme spent its burst").scope, Scope::Tenant);
        // The tenant's refusal did not cost key-2 its token.
        assert!(limiter.check("key-2", &globex).is_ok());
        assert!(limiter.check("key-3", &globex).is_ok());
    }
}
