//! Waiting between attempts while Redis or telemetry fail: 100 ms, doubling up to 5 s, and
//! cut short when the consumer is asked to stop.

use std::future::Future;
use std::time::Duration;

const FIRST: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(5);

/// The wait before the next attempt.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: FIRST }
    }
}

impl Backoff {
    /// How long the next wait is.
    pub fn next(&self) -> Duration {
        self.next
    }

    /// Back to the shortest wait, after a success.
    pub fn reset(&mut self) {
        self.next = FIRST;
    }

    /// Waits the next wait (and doubles it); true when `stop` resolved first.
    pub async fn sleep_or_stop(&mut self, stop: impl Future<Output = ()>) -> bool {
        let wait = self.next;
        self.next = (self.next * 2).min(MAX);
        tokio::select! {
            () = tokio::time::sleep(wait) => false,
            () = stop => true,
        }
    }
}
