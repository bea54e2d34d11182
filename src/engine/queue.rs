//! A bounded hand-off queue from request threads to one consumer that
//! drains it in batches: the shadow worker (a task on the engine's runtime)
//! and the decision-log writer (a thread of its own, since it writes a file).
//!
//! Pushing takes an uncontended mutex and never wakes anyone: the consumer
//! polls, sleeping [`POLL_BUSY`] after a batch and [`POLL_IDLE`] after an
//! empty look. On a request path that is far cheaper than waking a parked
//! thread per item (a futex call each), at the price of a few milliseconds
//! of delay for work that is off the response path anyway. When the queue is
//! full the item is handed back to the caller, which drops and counts it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The consumer's sleep after a non-empty batch.
pub const POLL_BUSY: Duration = Duration::from_millis(1);
/// The consumer's sleep after finding the queue empty.
pub const POLL_IDLE: Duration = Duration::from_millis(5);

/// A bounded multi-producer, single-consumer batch queue.
#[derive(Debug)]
pub struct BatchQueue<T> {
    items: Mutex<Vec<T>>,
    capacity: usize,
    /// Items pushed and not yet fully processed by the consumer.
    in_flight: AtomicUsize,
    closed: AtomicBool,
    /// While set, the consumer takes nothing (tests fill the queue).
    held: AtomicBool,
}

impl<T> BatchQueue<T> {
    pub fn new(capacity: usize) -> Self {
        BatchQueue {
            items: Mutex::new(Vec::new()),
            capacity: capacity.max(1),
            in_flight: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            held: AtomicBool::new(false),
        }
    }

    /// Queues `item`, or hands it back when the queue is full or closed.
    pub fn push(&self, item: T) -> Result<(), T> {
        if self.closed.load(Ordering::Acquire) {
            return Err(item);
        }
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        if items.len() >= self.capacity {
            return Err(item);
        }
        items.push(item);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Moves every queued item into `batch` (which should be empty);
    /// nothing while the queue is held.
    pub fn take(&self, batch: &mut Vec<T>) {
        if self.held.load(Ordering::Acquire) {
            return;
        }
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut *items, batch);
    }

    /// The consumer finished `n` taken items.
    pub fn done(&self, n: usize) {
        self.in_flight.fetch_sub(n, Ordering::AcqRel);
    }

    /// Holds the consumer back (or lets it go on): a test hook.
    #[doc(hidden)]
    pub fn hold(&self, on: bool) {
        self.held.store(on, Ordering::Release);
    }

    /// Refuses further items; the consumer stops once it has drained.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Waits (polling) until every pushed item is processed, at most
    /// `limit`. Returns whether the queue drained.
    pub async fn drained(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.in_flight.load(Ordering::Acquire) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL_BUSY).await;
        }
        true
    }
}

/// Runs `consume` on batches from `queue` on the current (dedicated) thread
/// until the queue is closed and empty, or `alive` says the owner is gone.
pub fn consume<T>(
    queue: &BatchQueue<T>,
    alive: impl Fn() -> bool,
    mut consume: impl FnMut(&mut Vec<T>),
) {
    let mut batch = Vec::new();
    loop {
        queue.take(&mut batch);
        let n = batch.len();
        if n > 0 {
            consume(&mut batch);
            batch.clear();
            queue.done(n);
        } else if queue.is_closed() || !alive() {
            return;
        }
        std::thread::sleep(if n > 0 { POLL_BUSY } else { POLL_IDLE });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_closed_queues_hand_items_back() {
        let q = BatchQueue::new(2);
        assert!(q.push(1).is_ok());
        assert!(q.push(2).is_ok());
        assert_eq!(q.push(3), Err(3));
        let mut batch = Vec::new();
        q.take(&mut batch);
        assert_eq!(batch, vec![1, 2]);
        q.done(2);
        q.close();
        assert_eq!(q.push(4), Err(4));
    }
}
