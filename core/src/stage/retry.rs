//! Backoff between retries, and the bounded time a stage keeps retrying after shutdown.

use std::time::Duration;

use crate::CancellationToken;

/// How a stage retries what failed transiently (receiving, writing, dead-lettering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First wait.
    pub initial: Duration,
    /// Longest wait; each retry doubles the previous one up to this.
    pub max: Duration,
    /// After shutdown, how long retries may still go on before the stage gives up (what it
    /// gave up on stays unacknowledged and is redelivered after a restart).
    pub shutdown_budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(5),
            shutdown_budget: Duration::from_secs(5),
        }
    }
}

/// Exponential backoff between retries.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at the policy's first wait.
    pub fn new(policy: &RetryPolicy) -> Self {
        Self {
            next: policy.initial,
            max: policy.max,
            attempt: 0,
        }
    }

    /// The wait before the next attempt (doubling, capped).
    pub fn step(&mut self) -> Duration {
        let wait = self.next;
        self.attempt += 1;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// Failures so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// Retries go on until shutdown, then for at most the policy's shutdown budget.
#[derive(Debug)]
pub struct FlushDeadline<'a> {
    shutdown: &'a CancellationToken,
    budget: Duration,
    cancelled_at: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl<'a> FlushDeadline<'a> {
    /// A deadline that starts counting when `shutdown` fires.
    pub fn new(shutdown: &'a CancellationToken, budget: Duration) -> Self {
        Self {
            shutdown,
            budget,
            cancelled_at: std::sync::Mutex::new(None),
        }
    }

    /// Sleeps `wait` (cut short by shutdown); false when the budget after shutdown is used up.
    pub async fn sleep(&self, wait: Duration) -> bool {
        if self.shutdown.is_cancelled() {
            let now = tokio::time::Instant::now();
            let since = *self
                .cancelled_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(now);
            let spent = now.duration_since(since);
            if spent >= self.budget {
                return false;
            }
            tokio::time::sleep(wait.min(self.budget - spent)).await;
            return true;
        }
        tokio::select! {
            () = self.shutdown.cancelled() => {}
            () = tokio::time::sleep(wait) => {}
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut backoff = Backoff::new(&RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(350),
            shutdown_budget: Duration::ZERO,
        });
        let waits: Vec<u128> = (0..4).map(|_| backoff.step().as_millis()).collect();
        assert_eq!(waits, [100, 200, 350, 350]);
        assert_eq!(backoff.attempts(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_after_shutdown_stop_at_the_budget() {
        let shutdown = CancellationToken::new();
        let deadline = FlushDeadline::new(&shutdown, Duration::from_secs(3));
        assert!(
            deadline.sleep(Duration::from_secs(1)).await,
            "before shutdown"
        );
        shutdown.cancel();
        let started = tokio::time::Instant::now();
        let mut retries = 0;
        while deadline.sleep(Duration::from_secs(1)).await {
            retries += 1;
        }
        assert_eq!(retries, 3, "three 1 s waits fit a 3 s budget");
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }
}
