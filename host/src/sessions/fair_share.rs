//! Fair shares of the session worker's plugin calls: at most `calls` run at once, one workspace
//! may hold at most 3/4 of them, one connection at most half, so a workspace (or one bot) whose
//! plugin spins cannot take every call from the others.
//!
//! A job over its share waits in memory for a call of its own workspace or connection to end
//! (so one busy bot still uses its whole share, with no round trip to the database), but only so
//! many jobs per workspace or connection wait at once and only for so long: the rest are put
//! back in the queue by the worker, leaving its job slots to everyone else's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::domain::ids::{ConnectionId, WorkspaceId};

/// Who a call counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Holder {
    Workspace(WorkspaceId),
    Connection(ConnectionId),
}

#[derive(Debug, Default)]
struct Counts {
    /// Calls running, in all.
    total: usize,
    running: HashMap<Holder, usize>,
    waiting: HashMap<Holder, usize>,
}

impl Counts {
    fn add(map: &mut HashMap<Holder, usize>, holders: &[Holder; 2]) {
        for holder in holders {
            *map.entry(holder.clone()).or_default() += 1;
        }
    }

    fn remove(map: &mut HashMap<Holder, usize>, holders: &[Holder; 2]) {
        for holder in holders {
            if let Some(count) = map.get_mut(holder) {
                *count -= 1;
                if *count == 0 {
                    map.remove(holder);
                }
            }
        }
    }
}

/// The calls running and waiting, per workspace and connection.
#[derive(Debug)]
pub struct FairShare {
    calls: usize,
    per_workspace: usize,
    per_connection: usize,
    /// Jobs of one workspace, or of one connection, that may wait in memory at once.
    waiting_per_holder: usize,
    counts: Arc<Mutex<Counts>>,
    /// Wakes waiting jobs when a call ends.
    released: Arc<Notify>,
}

/// A running call's place in its shares; released when dropped.
#[derive(Debug)]
pub struct Ticket {
    holders: [Holder; 2],
    counts: Arc<Mutex<Counts>>,
    released: Arc<Notify>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.counts.lock() {
            counts.total -= 1;
            Counts::remove(&mut counts.running, &self.holders);
        }
        self.released.notify_waiters();
    }
}

/// A job's place among the waiting; released when dropped (also when its wait is cancelled).
struct Waiting<'a> {
    holders: &'a [Holder; 2],
    counts: &'a Mutex<Counts>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.counts.lock() {
            Counts::remove(&mut counts.waiting, self.holders);
        }
    }
}

impl FairShare {
    /// Shares of `calls` calls at once: 3/4 per workspace, half per connection (at least one);
    /// up to `waiting_per_holder` jobs of one workspace or connection wait for their turn.
    pub fn new(calls: usize, waiting_per_holder: usize) -> Self {
        Self {
            calls: calls.max(1),
            per_workspace: (calls * 3 / 4).max(1),
            per_connection: (calls / 2).max(1),
            waiting_per_holder,
            counts: Arc::default(),
            released: Arc::default(),
        }
    }

    /// A ticket for a call of `connection` in `workspace`, unless a share is full.
    #[cfg(test)]
    pub fn try_enter(&self, workspace: &WorkspaceId, connection: &ConnectionId) -> Option<Ticket> {
        self.take(&holders(workspace, connection))
    }

    /// A ticket for a call of `connection` in `workspace`, waiting up to `patience` for a call of
    /// theirs to end when a share is full — unless too many of theirs wait already. `None`: put
    /// the job back.
    pub async fn enter(
        &self,
        workspace: &WorkspaceId,
        connection: &ConnectionId,
        patience: Duration,
    ) -> Option<Ticket> {
        let holders = holders(workspace, connection);
        if let Some(ticket) = self.take(&holders) {
            return Some(ticket);
        }
        let _waiting = {
            let mut counts = self.counts.lock().ok()?;
            let crowded = holders
                .iter()
                .any(|h| counts.waiting.get(h).copied().unwrap_or(0) >= self.waiting_per_holder);
            if crowded {
                return None;
            }
            Counts::add(&mut counts.waiting, &holders);
            Waiting {
                holders: &holders,
                counts: &self.counts,
            }
        };
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Some(ticket) = self.take(&holders) {
                return Some(ticket);
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return None;
            }
        }
    }

    fn take(&self, holders: &[Holder; 2]) -> Option<Ticket> {
        let mut counts = self.counts.lock().ok()?;
        let running = |h: &Holder| counts.running.get(h).copied().unwrap_or(0);
        if counts.total >= self.calls
            || running(&holders[0]) >= self.per_workspace
            || running(&holders[1]) >= self.per_connection
        {
            return None;
        }
        counts.total += 1;
        Counts::add(&mut counts.running, holders);
        drop(counts);
        Some(Ticket {
            holders: holders.clone(),
            counts: self.counts.clone(),
            released: self.released.clone(),
        })
    }
}

fn holders(workspace: &WorkspaceId, connection: &ConnectionId) -> [Holder; 2] {
    [
        Holder::Workspace(workspace.clone()),
        Holder::Connection(connection.clone()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connections(n: usize) -> Vec<ConnectionId> {
        (0..n)
            .map(|n| ConnectionId::from(format!("con_{n}").as_str()))
            .collect()
    }

    #[test]
    fn shares_are_per_workspace_and_per_connection_and_released() {
        let share = FairShare::new(8, 4);
        let (busy, other) = (WorkspaceId::from("ws_busy"), WorkspaceId::from("ws_other"));
        let connections = connections(4);
        // One connection: half the calls.
        let first: Vec<Ticket> = (0..4).filter_map(|_| share.try_enter(&busy, &connections[0])).collect();
        assert_eq!(first.len(), 4);
        assert!(share.try_enter(&busy, &connections[0]).is_none());
        // The workspace: 3/4 of them, across its connections.
        let second: Vec<Ticket> = (0..4).filter_map(|_| share.try_enter(&busy, &connections[1])).collect();
        assert_eq!(second.len(), 2);
        // Another workspace still gets in, up to the total.
        let others: Vec<Ticket> = (0..4)
            .filter_map(|_| share.try_enter(&other, &connections[2]))
            .collect();
        assert_eq!(others.len(), 2, "8 calls at once in all");
        assert!(
            share.try_enter(&busy, &connections[3]).is_none(),
            "the workspace is at its share"
        );
        drop(first);
        assert!(share.try_enter(&busy, &connections[0]).is_some());
        drop((second, others));
    }

    #[tokio::test]
    async fn a_job_over_its_share_waits_for_a_call_of_its_own_to_end() {
        let share = Arc::new(FairShare::new(4, 1));
        let workspace = WorkspaceId::from("ws_one");
        let connections = connections(1);
        let running: Vec<Ticket> = (0..2)
            .filter_map(|_| share.try_enter(&workspace, &connections[0]))
            .collect();
        assert_eq!(running.len(), 2, "half of 4");
        let waiter = tokio::spawn({
            let (share, workspace, connection) = (share.clone(), workspace.clone(), connections[0].clone());
            async move { share.enter(&workspace, &connection, Duration::from_secs(60)).await }
        });
        // A second waiter of the same connection is one too many: it is turned away at once.
        tokio::task::yield_now().await;
        while share.counts.lock().map(|c| c.waiting.is_empty()).unwrap_or(true) {
            tokio::task::yield_now().await;
        }
        assert!(
            share
                .enter(&workspace, &connections[0], Duration::from_secs(60))
                .await
                .is_none(),
            "only one may wait"
        );
        drop(running);
        let ticket = waiter.await.expect("the waiter ran");
        assert!(ticket.is_some(), "the waiter got the freed call");
        assert!(share.counts.lock().map(|c| c.waiting.is_empty()).unwrap_or(false));
    }

    #[tokio::test]
    async fn a_wait_ends_after_its_patience() {
        let share = FairShare::new(2, 4);
        let workspace = WorkspaceId::from("ws_one");
        let connections = connections(1);
        let _running = share.try_enter(&workspace, &connections[0]);
        let waited = share
            .enter(&workspace, &connections[0], Duration::from_millis(20))
            .await;
        assert!(waited.is_none());
        assert!(share.counts.lock().map(|c| c.waiting.is_empty()).unwrap_or(false));
    }
}
