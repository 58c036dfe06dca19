//! Fair shares of the session worker's plugin calls: at most `calls` run at once, one workspace
//! may hold at most 3/4 of them, one connection at most half, so a workspace (or one bot) whose
//! plugin spins cannot take every call from the others.
//!
//! A job over its share waits in memory for a call of its own workspace or connection to end
//! (so one busy bot still uses its whole share, with no round trip to the database), but only so
//! many jobs per workspace or connection wait at once and only for so long: the rest are put
//! back in the queue by the worker, leaving its job slots to everyone else's.
//!
//! Each share is a FIFO semaphore, taken in one order (the connection's, the workspace's, then
//! the total), so a call that ends wakes exactly the next job in line for what it freed. (Waking
//! every waiting job at each call's end, for each to look at the counts again, cost a wake-up per
//! waiting job per call: ~64 × 3,000 a second when one busy bot kept its waiting line full.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::domain::ids::{ConnectionId, WorkspaceId};

/// Who a call counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Holder {
    Workspace(WorkspaceId),
    Connection(ConnectionId),
}

/// One holder's share: its calls (a semaphore of its size) and the jobs waiting for one.
#[derive(Debug)]
struct Share {
    calls: Arc<Semaphore>,
    waiting: usize,
    /// Tickets and waits that name this share: it is forgotten when none does.
    users: usize,
}

#[derive(Debug, Default)]
struct Counts {
    shares: HashMap<Holder, Share>,
}

#[cfg(test)]
impl Counts {
    /// Jobs waiting, counted once per holder.
    fn waiting(&self) -> usize {
        self.shares.values().map(|share| share.waiting).sum()
    }
}

/// The calls running and waiting, per workspace and connection.
#[derive(Debug)]
pub struct FairShare {
    per_workspace: usize,
    per_connection: usize,
    /// Jobs of one workspace, or of one connection, that may wait in memory at once.
    waiting_per_holder: usize,
    /// Calls at once, in all.
    total: Arc<Semaphore>,
    counts: Arc<Mutex<Counts>>,
}

/// A running call's place in its shares; released when dropped.
#[derive(Debug)]
pub struct Ticket {
    /// The connection's, the workspace's and the total's permits (released in this order).
    _permits: Vec<OwnedSemaphorePermit>,
    /// Forgets the shares once nothing names them.
    _shares: Users,
}

/// A ticket's or a wait's use of its two shares; when dropped, a share nothing uses any more is
/// forgotten (a workspace or connection that stops calling leaves nothing behind).
#[derive(Debug)]
struct Users {
    holders: [Holder; 2],
    counts: Arc<Mutex<Counts>>,
}

impl Drop for Users {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.counts.lock() {
            for holder in &self.holders {
                if let Some(share) = counts.shares.get_mut(holder) {
                    share.users -= 1;
                    if share.users == 0 {
                        counts.shares.remove(holder);
                    }
                }
            }
        }
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
            for holder in self.holders {
                if let Some(share) = counts.shares.get_mut(holder) {
                    share.waiting -= 1;
                }
            }
        }
    }
}

impl FairShare {
    /// Shares of `calls` calls at once: 3/4 per workspace, half per connection (at least one);
    /// up to `waiting_per_holder` jobs of one workspace or connection wait for their turn.
    pub fn new(calls: usize, waiting_per_holder: usize) -> Self {
        Self {
            per_workspace: (calls * 3 / 4).max(1),
            per_connection: (calls / 2).max(1),
            waiting_per_holder,
            total: Arc::new(Semaphore::new(calls.max(1))),
            counts: Arc::default(),
        }
    }

    /// A ticket for a call of `connection` in `workspace`, unless a share is full.
    #[cfg(test)]
    pub fn try_enter(&self, workspace: &WorkspaceId, connection: &ConnectionId) -> Option<Ticket> {
        let (users, semaphores) = self.use_shares(holders(workspace, connection))?;
        let (permits, rest) = take_free(semaphores);
        rest.is_empty().then(|| Ticket::new(permits, users))
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
        let (users, semaphores) = self.use_shares(holders.clone())?;
        // At once, if every share has room.
        let (permits, rest) = take_free(semaphores);
        if rest.is_empty() {
            return Some(Ticket::new(permits, users));
        }
        self.wait(&holders, users, permits, rest, patience).await
    }

    /// Waits (as one of at most `waiting_per_holder` per holder) for the permits of `rest`.
    async fn wait(
        &self,
        holders: &[Holder; 2],
        users: Users,
        mut permits: Vec<OwnedSemaphorePermit>,
        rest: Vec<Arc<Semaphore>>,
        patience: Duration,
    ) -> Option<Ticket> {
        let _waiting = {
            let mut counts = self.counts.lock().ok()?;
            let crowded = holders.iter().any(|h| {
                counts
                    .shares
                    .get(h)
                    .is_some_and(|share| share.waiting >= self.waiting_per_holder)
            });
            if crowded {
                return None;
            }
            for holder in holders {
                if let Some(share) = counts.shares.get_mut(holder) {
                    share.waiting += 1;
                }
            }
            Waiting {
                holders,
                counts: &self.counts,
            }
        };
        let deadline = tokio::time::Instant::now() + patience;
        for semaphore in rest {
            let permit = tokio::time::timeout_at(deadline, semaphore.acquire_owned())
                .await
                .ok()?
                .ok()?;
            permits.push(permit);
        }
        Some(Ticket::new(permits, users))
    }

    /// Counts a use of `holders`' shares (made if new); their semaphores and the total's, in the
    /// order they are taken.
    fn use_shares(&self, holders: [Holder; 2]) -> Option<(Users, [Arc<Semaphore>; 3])> {
        let mut counts = self.counts.lock().ok()?;
        let mut share = |holder: &Holder, size: usize| {
            let share = counts.shares.entry(holder.clone()).or_insert_with(|| Share {
                calls: Arc::new(Semaphore::new(size)),
                waiting: 0,
                users: 0,
            });
            share.users += 1;
            share.calls.clone()
        };
        let workspace = share(&holders[0], self.per_workspace);
        let connection = share(&holders[1], self.per_connection);
        drop(counts);
        let users = Users {
            holders,
            counts: self.counts.clone(),
        };
        Some((users, [connection, workspace, self.total.clone()]))
    }
}

impl Ticket {
    fn new(permits: Vec<OwnedSemaphorePermit>, users: Users) -> Self {
        Self {
            _permits: permits,
            _shares: users,
        }
    }
}

/// Takes the permits of `semaphores` that are free, in order, up to the first that is not;
/// returns them and the semaphores still to wait for (that one and those after it).
fn take_free(semaphores: [Arc<Semaphore>; 3]) -> (Vec<OwnedSemaphorePermit>, Vec<Arc<Semaphore>>) {
    let mut permits = Vec::with_capacity(semaphores.len());
    let mut semaphores = semaphores.into_iter();
    for semaphore in semaphores.by_ref() {
        match semaphore.clone().try_acquire_owned() {
            Ok(permit) => permits.push(permit),
            Err(_) => return (permits, std::iter::once(semaphore).chain(semaphores).collect()),
        }
    }
    (permits, Vec::new())
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
        while share.counts.lock().map(|c| c.waiting() == 0).unwrap_or(true) {
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
        assert!(share.counts.lock().map(|c| c.waiting() == 0).unwrap_or(false));
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
        assert!(share.counts.lock().map(|c| c.waiting() == 0).unwrap_or(false));
    }

    #[tokio::test]
    async fn shares_nothing_uses_are_forgotten() {
        let share = FairShare::new(4, 4);
        let connections = connections(2);
        let one = share.try_enter(&WorkspaceId::from("ws_one"), &connections[0]);
        let two = share
            .enter(&WorkspaceId::from("ws_two"), &connections[1], Duration::ZERO)
            .await;
        assert!(one.is_some() && two.is_some());
        assert_eq!(share.counts.lock().map(|c| c.shares.len()).unwrap_or(0), 4);
        drop(one);
        assert_eq!(share.counts.lock().map(|c| c.shares.len()).unwrap_or(0), 2);
        drop(two);
        assert!(share.counts.lock().map(|c| c.shares.is_empty()).unwrap_or(false));
    }
}
