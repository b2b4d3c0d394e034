//! A request-rate limiter: callers wait for evenly spaced slots, so a burst
//! of concurrent requests goes out at most `per_second` per second.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

pub struct RateLimiter {
    spacing: Duration,
    next_slot: Mutex<Instant>,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> Self {
        Self {
            spacing: Duration::from_secs_f64(1.0 / f64::from(per_second.max(1))),
            next_slot: Mutex::new(Instant::now()),
        }
    }

    /// Waits for the next free slot.
    pub async fn acquire(&self) {
        let slot = {
            let mut next = self.next_slot.lock().await;
            let slot = (*next).max(Instant::now());
            *next = slot + self.spacing;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slots_are_evenly_spaced() {
        let limiter = std::sync::Arc::new(RateLimiter::new(10));
        let start = Instant::now();
        let tasks: Vec<_> = (0..21)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move { limiter.acquire().await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        // 21 slots at 10/s: the last one 2 s after the first.
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }
}
