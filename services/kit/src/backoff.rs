//! Waiting between attempts while a dependency fails: 100 ms, doubling up to 5 s by default,
//! and cut short when the caller is asked to stop. Also the delay before a failed queue entry
//! is tried again ([`retry_delay`]).

use std::future::Future;
use std::time::Duration;

/// The first wait of [`Backoff::default`].
pub const FIRST: Duration = Duration::from_millis(100);
/// The longest wait of [`Backoff::default`].
pub const MAX: Duration = Duration::from_secs(5);

/// The wait before the next attempt: doubles after each wait, up to a bound.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Default for Backoff {
    /// 100 ms, doubling up to 5 s.
    fn default() -> Self {
        Backoff::new(FIRST, MAX)
    }
}

impl Backoff {
    /// Waits of `first`, doubling up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max: max.max(first),
            next: first,
        }
    }

    /// How long the next wait is.
    pub fn next(&self) -> Duration {
        self.next
    }

    /// Back to the shortest wait, after a success.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// Waits the next wait (and doubles it); true when `stop` resolved first.
    pub async fn sleep_or_stop(&mut self, stop: impl Future<Output = ()>) -> bool {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        tokio::select! {
            () = tokio::time::sleep(wait) => false,
            () = stop => true,
        }
    }
}

/// The delay before an entry delivered `deliveries` times is delivered again after a failure:
/// `first` doubled for each delivery after the first, at most `max`.
pub fn retry_delay(deliveries: u64, first: Duration, max: Duration) -> Duration {
    let doublings = deliveries.saturating_sub(1).min(32) as u32;
    first.saturating_mul(2u32.saturating_pow(doublings)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_double_up_to_the_bound_and_stop_cuts_them_short() {
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(30));
        let mut waits = Vec::new();
        for _ in 0..4 {
            waits.push(backoff.next());
            assert!(!backoff.sleep_or_stop(std::future::pending()).await);
        }
        assert_eq!(waits, [10, 20, 30, 30].map(Duration::from_millis));
        backoff.reset();
        assert_eq!(backoff.next(), Duration::from_millis(10));
        let mut long = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        let started = std::time::Instant::now();
        assert!(long.sleep_or_stop(async {}).await, "a resolved stop ends the wait");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn retry_delays_grow_with_deliveries() {
        let (first, max) = (Duration::from_secs(1), Duration::from_secs(10));
        let delays: Vec<u64> = (1..=6).map(|n| retry_delay(n, first, max).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        assert_eq!(retry_delay(u64::MAX, first, max), max);
        assert_eq!(retry_delay(0, first, max), first);
    }
}
