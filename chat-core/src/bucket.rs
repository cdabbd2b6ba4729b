use std::time::Duration;

use crate::Timestamp;

/// A token bucket in thousandths of a token, so refills stay exact integers
/// and the core stays deterministic. The core limits messages, joins, room
/// creation, history bytes and upload bytes with it; drivers may use it for
/// limits of their own (the server limits frames per connection), with time
/// passed in like everywhere here.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    milli_tokens: u64,
    updated: Timestamp,
}

/// The parameters of a [`TokenBucket`]: `amount` tokens every `per`, at
/// most `burst` held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tokens added every `per`.
    pub amount: u64,
    /// The period `amount` is added over.
    pub per: Duration,
    /// The most tokens the bucket holds.
    pub burst: u64,
}

impl Rate {
    /// `amount` tokens a second, at most `burst` held.
    pub const fn per_sec(amount: u32, burst: u32) -> Self {
        Self { amount: amount as u64, per: Duration::from_secs(1), burst: burst as u64 }
    }

    /// `amount` tokens an hour, at most `burst` held: for slow limits such
    /// as rooms created or bytes uploaded.
    pub const fn per_hour(amount: u64, burst: u64) -> Self {
        Self { amount, per: Duration::from_secs(3600), burst }
    }

    fn per_millis(self) -> u128 {
        self.per.as_millis()
    }
}

impl TokenBucket {
    /// A bucket holding `rate.burst` tokens at `now`.
    pub fn full(rate: Rate, now: Timestamp) -> Self {
        Self { milli_tokens: rate.burst.saturating_mul(1000), updated: now }
    }

    /// Takes one token, or says how many milliseconds until one is there.
    ///
    /// # Errors
    /// The bucket is empty; the error is the wait in milliseconds.
    pub fn take(&mut self, rate: Rate, now: Timestamp) -> Result<(), u64> {
        self.take_n(rate, now, 1)
    }

    /// Takes `n` tokens at once, or says how many milliseconds until `n`
    /// are there (`u64::MAX` if never: `n` is over the burst, or nothing
    /// refills).
    ///
    /// # Errors
    /// Fewer than `n` tokens are there; the error is the wait in
    /// milliseconds.
    pub fn take_n(&mut self, rate: Rate, now: Timestamp, n: u64) -> Result<(), u64> {
        self.refill(rate, now);
        let need = n.saturating_mul(1000);
        if self.milli_tokens >= need {
            self.milli_tokens -= need;
            return Ok(());
        }
        Err(self.wait(rate, need))
    }

    /// Whether `n` tokens are there now, without taking them; `Err` is the
    /// wait as with [`TokenBucket::take_n`].
    ///
    /// # Errors
    /// Fewer than `n` tokens are there.
    pub fn check(&mut self, rate: Rate, now: Timestamp, n: u64) -> Result<(), u64> {
        self.refill(rate, now);
        let need = n.saturating_mul(1000);
        if self.milli_tokens >= need { Ok(()) } else { Err(self.wait(rate, need)) }
    }

    /// Whole tokens there now.
    pub fn available(&mut self, rate: Rate, now: Timestamp) -> u64 {
        self.refill(rate, now);
        self.milli_tokens / 1000
    }

    /// Takes up to `n` tokens: as many as are there.
    pub fn take_up_to(&mut self, rate: Rate, now: Timestamp, n: u64) -> u64 {
        let taken = self.available(rate, now).min(n);
        self.milli_tokens -= taken * 1000;
        taken
    }

    /// Whether the bucket is full at `now` (nothing of it needs remembering).
    pub fn is_full(&mut self, rate: Rate, now: Timestamp) -> bool {
        self.refill(rate, now);
        self.milli_tokens >= rate.burst.saturating_mul(1000)
    }

    /// Adds what the time since the last refill earned. Only the time the
    /// added thousandths stand for is consumed, so a slow rate polled often
    /// still fills: nothing is lost to rounding but less than a millisecond
    /// per call.
    fn refill(&mut self, rate: Rate, now: Timestamp) {
        let capacity = rate.burst.saturating_mul(1000);
        let per = rate.per_millis();
        if rate.amount == 0 || per == 0 || now <= self.updated {
            self.milli_tokens = self.milli_tokens.min(capacity);
            return;
        }
        if per == 1000 {
            // Per second, the common case: `amount` thousandths a
            // millisecond, in plain integers.
            let gained = now.millis_since(self.updated).saturating_mul(rate.amount);
            self.milli_tokens = self.milli_tokens.saturating_add(gained).min(capacity);
            self.updated = now;
            return;
        }
        let elapsed = u128::from(now.millis_since(self.updated));
        let per_token = u128::from(rate.amount) * 1000;
        let gained = elapsed * per_token / per;
        let room = u128::from(capacity.saturating_sub(self.milli_tokens));
        if gained >= room {
            self.milli_tokens = capacity;
            self.updated = now;
            return;
        }
        self.milli_tokens += u64::try_from(gained).unwrap_or(u64::MAX);
        let spent = (gained * per).div_ceil(per_token);
        self.updated = Timestamp::from_unix_millis(
            self.updated.as_unix_millis().saturating_add(u64::try_from(spent).unwrap_or(u64::MAX)),
        );
    }

    /// Milliseconds until `need` thousandths are there.
    fn wait(&self, rate: Rate, need: u64) -> u64 {
        if rate.amount == 0 || need > rate.burst.saturating_mul(1000) {
            return u64::MAX;
        }
        let missing = u128::from(need - self.milli_tokens);
        let millis = (missing * rate.per_millis()).div_ceil(u128::from(rate.amount) * 1000);
        u64::try_from(millis).unwrap_or(u64::MAX).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let rate = Rate::per_sec(10, 3);
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
        let rate = Rate::per_sec(1000, 2);
        let mut bucket = TokenBucket::full(rate, Timestamp::from_unix_millis(0));
        let later = Timestamp::from_unix_millis(1_000_000);
        assert_eq!(bucket.take(rate, later), Ok(()));
        assert_eq!(bucket.take(rate, later), Ok(()));
        assert_eq!(bucket.take(rate, later), Err(1));
    }

    #[test]
    fn slow_rates_polled_every_millisecond_still_refill() {
        // One token an hour: polling every millisecond must not round the
        // refill away.
        let rate = Rate::per_hour(1, 1);
        let mut now = Timestamp::from_unix_millis(0);
        let mut bucket = TokenBucket::full(rate, now);
        assert_eq!(bucket.take(rate, now), Ok(()));
        assert_eq!(bucket.take(rate, now), Err(3_600_000));
        let mut refused = 0;
        while bucket.take(rate, now).is_err() {
            refused += 1;
            now = now.saturating_add(Duration::from_millis(1));
        }
        assert_eq!(now.as_unix_millis(), 3_600_000, "refilled exactly after an hour");
        assert_eq!(refused, 3_600_000);
    }

    #[test]
    fn many_tokens_at_once_for_byte_quotas() {
        let rate = Rate::per_hour(3_600_000, 1_000_000); // 1000 bytes a second
        let t0 = Timestamp::from_unix_millis(0);
        let mut bucket = TokenBucket::full(rate, t0);
        assert_eq!(bucket.take_n(rate, t0, 600_000), Ok(()));
        assert_eq!(bucket.take_n(rate, t0, 600_000), Err(200_000));
        assert_eq!(bucket.check(rate, t0, 400_000), Ok(()));
        assert_eq!(bucket.take_n(rate, t0, 2_000_000), Err(u64::MAX), "over the burst: never");
        assert_eq!(bucket.take_up_to(rate, t0, 1_000_000), 400_000);
        assert_eq!(bucket.available(rate, t0), 0);
        assert!(bucket.is_full(rate, Timestamp::from_unix_millis(1_000_000)));
    }
}
