use crate::Timestamp;

/// A token bucket in thousandths of a token, so refills stay exact integers
/// and the core stays deterministic. The core limits messages and joins
/// with it; drivers may use it for limits of their own (the server limits
/// frames per connection), with time passed in like everywhere here.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    milli_tokens: u64,
    updated: Timestamp,
}

/// The parameters of a [`TokenBucket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_sec: u32,
    /// The most tokens the bucket holds.
    pub burst: u32,
}

impl TokenBucket {
    /// A bucket holding `rate.burst` tokens at `now`.
    pub fn full(rate: Rate, now: Timestamp) -> Self {
        Self { milli_tokens: u64::from(rate.burst) * 1000, updated: now }
    }

    /// Takes one token, or says how many milliseconds until one is there.
    ///
    /// # Errors
    /// The bucket is empty; the error is the wait in milliseconds.
    pub fn take(&mut self, rate: Rate, now: Timestamp) -> Result<(), u64> {
        let capacity = u64::from(rate.burst) * 1000;
        // A rate of n tokens per second adds n thousandths per millisecond.
        let refill = now.millis_since(self.updated).saturating_mul(u64::from(rate.per_sec));
        self.milli_tokens = self.milli_tokens.saturating_add(refill).min(capacity);
        if now > self.updated {
            self.updated = now;
        }
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            return Ok(());
        }
        if rate.per_sec == 0 {
            return Err(u64::MAX);
        }
        let missing = 1000 - self.milli_tokens;
        Err(missing.div_ceil(u64::from(rate.per_sec)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let rate = Rate { per_sec: 10, burst: 3 };
        let t0 = Timestamp::from_unix_millis(1_000);
        let mut bucket = TokenBucket::full(rate, t0);
        assert_eq!(bucket.take(rate, t0), Ok(()));
        assert_eq!(bucket.take(rate, t0), Ok(()));
        assert_eq!(bucket.take(rate, t0), Ok(()));
        assert_eq!(bucket.take(rate, t0), Err(100));
        let t1 = Timestamp::from_unix_millis(1_060);
        assert_eq!(bucket.take(rate, t1), Err(40));
        let t2 = Timestamp::from_unix_millis(1_100);
        assert_eq!(bucket.take(rate, t2), Ok(()));
        assert_eq!(bucket.take(rate, t2), Err(100));
    }

    #[test]
    fn never_holds_more_than_burst() {
        let rate = Rate { per_sec: 1000, burst: 2 };
        let mut bucket = TokenBucket::full(rate, Timestamp::from_unix_millis(0));
        let later = Timestamp::from_unix_millis(1_000_000);
        assert_eq!(bucket.take(rate, later), Ok(()));
        assert_eq!(bucket.take(rate, later), Ok(()));
        assert_eq!(bucket.take(rate, later), Err(1));
    }
}
