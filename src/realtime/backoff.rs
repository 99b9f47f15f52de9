//! Jittered exponential backoff for reconnects and rejoins.

use std::time::Duration;

/// Exponential backoff with jitter: attempt 1 waits about `min`, each further attempt
/// `factor` times longer, never more than `max`; `jitter` (0–1) takes up to that share off each
/// delay at random so that many clients do not reconnect in lockstep.
///
/// ```
/// use livechat::realtime::Backoff;
/// use std::time::Duration;
///
/// let b = Backoff::new(Duration::from_millis(500), Duration::from_secs(8)).jitter(0.0);
/// assert_eq!(b.delay(1), Duration::from_millis(500));
/// assert_eq!(b.delay(3), Duration::from_secs(2));
/// assert_eq!(b.delay(30), Duration::from_secs(8));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    factor: f64,
    jitter: f64,
}

impl Default for Backoff {
    /// 1 s, doubling up to 10 s, 30 % jitter (realtime-js: 1, 2, 5, 10, 10… s).
    fn default() -> Self {
        Backoff {
            min: Duration::from_secs(1),
            max: Duration::from_secs(10),
            factor: 2.0,
            jitter: 0.3,
        }
    }
}

impl Backoff {
    /// A backoff from `min` to `max` (swapped if given in the wrong order), doubling, with the
    /// default 30 % jitter.
    pub fn new(min: Duration, max: Duration) -> Self {
        let cap = super::options::MAX_DURATION;
        let (min, max) = (min.min(cap), max.min(cap));
        Backoff {
            min: min.min(max),
            max: max.max(min),
            ..Backoff::default()
        }
    }

    /// The growth factor per attempt (at least 1).
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = if factor.is_finite() {
            factor.max(1.0)
        } else {
            2.0
        };
        self
    }

    /// The share of each delay that may be taken off at random, clamped to 0–1.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// The delay before attempt `attempt` (1-based) without jitter.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(64);
        let scaled = self.min.as_secs_f64() * self.factor.powi(exp as i32);
        if !scaled.is_finite() || scaled >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(scaled).max(self.min)
        }
    }

    /// The delay before attempt `attempt` (1-based), with jitter applied.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.base_delay(attempt);
        if self.jitter == 0.0 {
            return base;
        }
        let r: f64 = rand::random_range(0.0..1.0);
        base.mul_f64(1.0 - self.jitter * r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let b = Backoff::default().jitter(0.0);
        let d: Vec<u64> = (1..=6).map(|a| b.delay(a).as_millis() as u64).collect();
        assert_eq!(d, [1000, 2000, 4000, 8000, 10000, 10000]);
        assert_eq!(b.delay(0), Duration::from_secs(1));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let b = Backoff::new(Duration::from_secs(2), Duration::from_secs(2)).jitter(0.5);
        for _ in 0..200 {
            let d = b.delay(1);
            assert!(
                d <= Duration::from_secs(2) && d >= Duration::from_secs(1),
                "{d:?}"
            );
        }
    }

    #[test]
    fn nonsense_settings_are_sanitised() {
        let b = Backoff::new(Duration::from_secs(5), Duration::from_secs(1))
            .factor(f64::NAN)
            .jitter(7.0);
        assert_eq!(b.base_delay(1), Duration::from_secs(1));
        assert_eq!(b.base_delay(9), Duration::from_secs(5));
        assert!(b.delay(3) <= Duration::from_secs(5));
    }
}
