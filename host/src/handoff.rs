//! Work handed straight from the write that made it to the worker that runs it.
//!
//! A new session's start job and a start's first webhook used to reach their workers only through
//! the database: the writer committed the row, woke the worker, and the worker claimed it with a
//! query that ranks the due rows (per session, per endpoint) — under load, the busiest statement
//! the database ran. With a handoff, the unit that inserts the row leases it to this host's worker
//! right away (as a claim would) and, once the batch is committed, passes it over in memory; the
//! worker runs it without a claim.
//!
//! The row stays the truth: a host that dies with work in hand leaves leased rows, which a later
//! claim takes once their lease ends (SQLite frees every lease at start), exactly as for claimed
//! work. A handoff is only offered while a worker takes from it and its queue has room
//! ([`Handoff::reserve`]); otherwise the row is inserted unleased and claimed as before.

use std::sync::Mutex;

use tokio::sync::mpsc;

/// A bounded queue of leased work for one worker.
#[derive(Debug)]
pub struct Handoff<T> {
    sender: mpsc::Sender<T>,
    /// Until a worker takes it; no room is offered before.
    receiver: Mutex<Option<mpsc::Receiver<T>>>,
    taken: std::sync::atomic::AtomicBool,
}

impl<T: Send + 'static> Handoff<T> {
    /// A handoff holding at most `capacity` items not yet taken by its worker.
    pub fn new(capacity: usize) -> Self {
        let (sender, receiver) = mpsc::channel(capacity);
        Self {
            sender,
            receiver: Mutex::new(Some(receiver)),
            taken: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Room for one item, if a worker takes from this handoff and the queue is not full. Send the
    /// item once the write that leased it is committed; dropping the permit gives the room back.
    pub fn reserve(&self) -> Option<mpsc::OwnedPermit<T>> {
        if !self.taken.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        self.sender.clone().try_reserve_owned().ok()
    }

    /// The worker's end (once). Room is offered from now on, until the receiver is dropped.
    pub fn take(&self) -> Option<mpsc::Receiver<T>> {
        let receiver = self.receiver.lock().ok()?.take();
        if receiver.is_some() {
            self.taken.store(true, std::sync::atomic::Ordering::Release);
        }
        receiver
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn room_is_offered_only_while_a_worker_takes_and_up_to_capacity() {
        let handoff = Handoff::<u32>::new(2);
        assert!(handoff.reserve().is_none(), "no worker yet");
        let mut receiver = handoff.take().expect("the receiver");
        assert!(handoff.take().is_none(), "taken once");
        let (first, second) = (handoff.reserve().expect("room"), handoff.reserve().expect("room"));
        assert!(handoff.reserve().is_none(), "full at capacity");
        first.send(1);
        drop(second);
        assert!(handoff.reserve().is_some(), "a dropped permit gives its room back");
        assert_eq!(receiver.recv().await, Some(1));
        drop(receiver);
        assert!(handoff.reserve().is_none(), "the worker is gone");
    }
}
