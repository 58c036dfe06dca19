//! Fair shares of the session worker's plugin calls: at most `calls` run at once, one workspace
//! may hold at most 3/4 of them, one connection at most half, so a workspace (or one bot) whose
//! plugin spins cannot take every call from the others.
//!
//! A job over its share waits in memory for a call of its own workspace or connection to end
//! (so one busy bot still uses its whole share, with no round trip to the database), in its
//! holders' *lines*: at most so many jobs per workspace or connection wait there, holding their job
//! slots. A job that finds a line full *parks*: it gives its job slot back to the worker, for
//! everyone else's jobs, and waits in memory for a place in the line — up to a number of parked
//! jobs across all holders. Only a job that finds no parking place either, or whose patience ends,
//! is put back in the queue by the worker. (Putting back every job past a full line cost a write,
//! a claim and a second read of its session, and a wait for the next claim: a bot assigned faster
//! than its calls ran put back nearly every start — 5,512 put back in one trigger bench on SQLite,
//! 967 with parking — and the claims alone took ~6 % of the bench's CPU.)
//!
//! Each share and each line is a FIFO semaphore, taken in one order (the connection's, the
//! workspace's, then the total), so a call that ends wakes exactly the next job in line for what
//! it freed. (Waking every waiting job at each call's end, for each to look at the counts again,
//! cost a wake-up per waiting job per call: ~64 × 3,000 a second when one busy bot kept its
//! waiting line full.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::domain::ids::{ConnectionId, WorkspaceId};

/// Who a call counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Holder {
    Workspace(WorkspaceId),
    Connection(ConnectionId),
}

/// One holder's share: its calls (a semaphore of its size) and its line of waiting jobs.
#[derive(Debug)]
struct Share {
    calls: Arc<Semaphore>,
    line: Arc<Semaphore>,
    /// Tickets and waits that name this share: it is forgotten when none does.
    users: usize,
}

#[derive(Debug, Default)]
struct Counts {
    shares: HashMap<Holder, Share>,
}

/// The calls running and waiting, per workspace and connection.
#[derive(Debug)]
pub struct FairShare {
    per_workspace: usize,
    per_connection: usize,
    /// Jobs of one workspace, or of one connection, that may wait in its line at once.
    waiting_per_holder: usize,
    /// Calls at once, in all.
    total: Arc<Semaphore>,
    /// Places for parked jobs, across all holders.
    parking: Arc<Semaphore>,
    counts: Arc<Mutex<Counts>>,
}

/// What a job in the worker's hands holds: one of the worker's job slots, or — once it parked —
/// a parking place instead (its slot handed back; `freed` tells the worker).
#[derive(Debug)]
pub struct JobSlot {
    held: OwnedSemaphorePermit,
    parked: bool,
    freed: Arc<Notify>,
}

impl JobSlot {
    /// A job's hold on `slot`, one of the worker's slots; `freed` is told when the job parks.
    pub fn new(slot: OwnedSemaphorePermit, freed: Arc<Notify>) -> Self {
        Self {
            held: slot,
            parked: false,
            freed,
        }
    }

    /// Whether the job gave its slot back for a parking place.
    pub fn parked(&self) -> bool {
        self.parked
    }

    /// Trades the job slot for one of `parking`'s places (a parked job keeps its place);
    /// false if none is free.
    fn park(&mut self, parking: &Arc<Semaphore>) -> bool {
        if self.parked {
            return true;
        }
        let Ok(place) = parking.clone().try_acquire_owned() else {
            return false;
        };
        self.held = place;
        self.parked = true;
        self.freed.notify_one();
        true
    }
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

/// The semaphores a call of one workspace's connection takes, each in the order taken.
struct Semaphores {
    /// The connection's, the workspace's and the total's calls.
    calls: Vec<Arc<Semaphore>>,
    /// The connection's and the workspace's lines.
    lines: Vec<Arc<Semaphore>>,
}

impl FairShare {
    /// Shares of `calls` calls at once: 3/4 per workspace, half per connection (at least one);
    /// up to `waiting_per_holder` jobs of one workspace or connection wait in its line for their
    /// turn, and up to `parked` jobs across all holders for a place in a line.
    pub fn new(calls: usize, waiting_per_holder: usize, parked: usize) -> Self {
        Self {
            per_workspace: (calls * 3 / 4).max(1),
            per_connection: (calls / 2).max(1),
            waiting_per_holder,
            total: Arc::new(Semaphore::new(calls.max(1))),
            parking: Arc::new(Semaphore::new(parked)),
            counts: Arc::default(),
        }
    }

    /// A ticket for a call of `connection` in `workspace`, unless a share is full.
    #[cfg(test)]
    pub fn try_enter(&self, workspace: &WorkspaceId, connection: &ConnectionId) -> Option<Ticket> {
        let (users, semaphores) = self.use_shares(holders(workspace, connection))?;
        let (permits, rest) = take_free(semaphores.calls);
        rest.is_empty().then(|| Ticket::new(permits, users))
    }

    /// A ticket for a call of `connection` in `workspace`, waiting up to `patience` for a call of
    /// theirs to end when a share is full: in their lines, or parked (`slot` then given back)
    /// while a line is full. `None`: put the job back (its lines and the parking were full, or its
    /// patience ended).
    pub async fn enter(
        &self,
        workspace: &WorkspaceId,
        connection: &ConnectionId,
        patience: Duration,
        slot: &mut JobSlot,
    ) -> Option<Ticket> {
        let (users, semaphores) = self.use_shares(holders(workspace, connection))?;
        // At once, if every share has room.
        let (mut permits, mut rest) = take_free(semaphores.calls.clone());
        if rest.is_empty() {
            return Some(Ticket::new(permits, users));
        }
        let deadline = tokio::time::Instant::now() + patience;
        let (mut places, full) = take_free(semaphores.lines);
        if !full.is_empty() {
            if !slot.park(&self.parking) {
                return None;
            }
            // A parked job holds no share's call while it waits for its place in line.
            permits.clear();
            rest = semaphores.calls;
            places.extend(acquire_all(full, deadline).await?);
        }
        permits.extend(acquire_all(rest, deadline).await?);
        drop(places);
        Some(Ticket::new(permits, users))
    }

    /// Counts a use of `holders`' shares (made if new); their semaphores and the total's, in the
    /// order they are taken.
    fn use_shares(&self, holders: [Holder; 2]) -> Option<(Users, Semaphores)> {
        let mut counts = self.counts.lock().ok()?;
        let mut share = |holder: &Holder, size: usize| {
            let share = counts.shares.entry(holder.clone()).or_insert_with(|| Share {
                calls: Arc::new(Semaphore::new(size)),
                line: Arc::new(Semaphore::new(self.waiting_per_holder)),
                users: 0,
            });
            share.users += 1;
            (share.calls.clone(), share.line.clone())
        };
        let (workspace, workspace_line) = share(&holders[0], self.per_workspace);
        let (connection, connection_line) = share(&holders[1], self.per_connection);
        drop(counts);
        let users = Users {
            holders,
            counts: self.counts.clone(),
        };
        let semaphores = Semaphores {
            calls: vec![connection, workspace, self.total.clone()],
            lines: vec![connection_line, workspace_line],
        };
        Some((users, semaphores))
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
fn take_free(semaphores: Vec<Arc<Semaphore>>) -> (Vec<OwnedSemaphorePermit>, Vec<Arc<Semaphore>>) {
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

/// The permits of `semaphores`, taken in order, each waited for until `deadline`; `None` if one
/// was not had by then (those taken are released).
async fn acquire_all(
    semaphores: Vec<Arc<Semaphore>>,
    deadline: tokio::time::Instant,
) -> Option<Vec<OwnedSemaphorePermit>> {
    let mut permits = Vec::with_capacity(semaphores.len());
    for semaphore in semaphores {
        let permit = tokio::time::timeout_at(deadline, semaphore.acquire_owned())
            .await
            .ok()?
            .ok()?;
        permits.push(permit);
    }
    Some(permits)
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

    /// Jobs waiting in lines, counted once per holder.
    fn waiting(share: &FairShare) -> usize {
        let counts = share.counts.lock().unwrap();
        counts
            .shares
            .values()
            .map(|s| share.waiting_per_holder - s.line.available_permits())
            .sum()
    }

    /// A worker's job slots (`n` of them) and what it is told when a job parks.
    fn worker_slots(n: usize) -> (Arc<Semaphore>, Arc<Notify>) {
        (Arc::new(Semaphore::new(n)), Arc::new(Notify::new()))
    }

    fn take_slot((slots, freed): &(Arc<Semaphore>, Arc<Notify>)) -> JobSlot {
        JobSlot::new(slots.clone().try_acquire_owned().unwrap(), freed.clone())
    }

    /// `enter` with a minute's patience, in a task of its own: its ticket and the slot it ends with.
    fn spawn_enter(
        share: &Arc<FairShare>,
        workspace: &WorkspaceId,
        connection: &ConnectionId,
        mut slot: JobSlot,
    ) -> tokio::task::JoinHandle<(Option<Ticket>, JobSlot)> {
        let (share, workspace, connection) = (share.clone(), workspace.clone(), connection.clone());
        tokio::spawn(async move {
            let ticket = share
                .enter(&workspace, &connection, Duration::from_secs(60), &mut slot)
                .await;
            (ticket, slot)
        })
    }

    #[test]
    fn shares_are_per_workspace_and_per_connection_and_released() {
        let share = FairShare::new(8, 4, 0);
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
        let share = Arc::new(FairShare::new(4, 1, 0));
        let slots = worker_slots(4);
        let workspace = WorkspaceId::from("ws_one");
        let connections = connections(1);
        let running: Vec<Ticket> = (0..2)
            .filter_map(|_| share.try_enter(&workspace, &connections[0]))
            .collect();
        assert_eq!(running.len(), 2, "half of 4");
        let waiter = spawn_enter(&share, &workspace, &connections[0], take_slot(&slots));
        while waiting(&share) == 0 {
            tokio::task::yield_now().await;
        }
        // A second waiter of the same connection is one too many, and with no parking place it
        // is turned away at once, still holding its slot.
        let mut second = take_slot(&slots);
        assert!(
            share
                .enter(&workspace, &connections[0], Duration::from_secs(60), &mut second)
                .await
                .is_none(),
            "only one may wait"
        );
        assert!(!second.parked());
        drop(running);
        let (ticket, slot) = waiter.await.expect("the waiter ran");
        assert!(ticket.is_some(), "the waiter got the freed call");
        assert!(!slot.parked(), "it waited in the line, with its slot");
        assert_eq!(waiting(&share), 0);
    }

    #[tokio::test]
    async fn a_job_past_a_full_line_parks_its_slot_freed_and_gets_its_turn_in_order() {
        let share = Arc::new(FairShare::new(2, 1, 1));
        let slots = worker_slots(3);
        let workspace = WorkspaceId::from("ws_one");
        let connection = connections(1).remove(0);
        let running = share.try_enter(&workspace, &connection).expect("one call: half of 2");
        let (turns, mut order) = tokio::sync::mpsc::unbounded_channel();
        let enter = |n: usize, mut slot: JobSlot| {
            let (share, workspace, connection, turns) =
                (share.clone(), workspace.clone(), connection.clone(), turns.clone());
            tokio::spawn(async move {
                let ticket = share
                    .enter(&workspace, &connection, Duration::from_secs(60), &mut slot)
                    .await;
                let _ = turns.send((n, slot.parked()));
                // The call runs until the test ends it.
                (ticket, slot)
            })
        };
        // The first waits in the line; the second finds it full and parks, giving its slot back
        // (and telling the worker).
        let first = enter(1, take_slot(&slots));
        while waiting(&share) == 0 {
            tokio::task::yield_now().await;
        }
        let second = enter(2, take_slot(&slots));
        tokio::time::timeout(Duration::from_secs(30), slots.1.notified())
            .await
            .expect("the worker is told a slot is free");
        assert_eq!(slots.0.available_permits(), 2, "the parked job's slot is free again");
        // A third finds the line and the parking full: put back at once.
        let mut third = take_slot(&slots);
        assert!(
            share
                .enter(&workspace, &connection, Duration::from_secs(60), &mut third)
                .await
                .is_none()
        );
        // Each call that ends lets the next in line in: the one in the line, then the parked one.
        drop(running);
        let (first_ticket, first_slot) = first.await.unwrap();
        assert_eq!(order.recv().await, Some((1, false)));
        assert!(first_ticket.is_some());
        drop((first_ticket, first_slot));
        let (second_ticket, second_slot) = second.await.unwrap();
        assert_eq!(order.recv().await, Some((2, true)));
        assert!(second_ticket.is_some());
        assert_eq!(waiting(&share), 0);
        assert_eq!(
            share.parking.available_permits(),
            0,
            "the parked job holds its place until it ends"
        );
        drop((second_ticket, second_slot));
        assert_eq!(share.parking.available_permits(), 1);
        assert_eq!(slots.0.available_permits(), 2, "the third's slot is still taken");
    }

    #[tokio::test]
    async fn a_parked_job_holds_no_call_while_it_waits_for_its_line() {
        // Connections of 2 calls, a workspace of 3: one connection's two calls and another's one
        // fill the workspace.
        let share = Arc::new(FairShare::new(4, 1, 1));
        let slots = worker_slots(4);
        let workspace = WorkspaceId::from("ws_one");
        let connections = connections(3);
        let running: Vec<Ticket> = [0, 0, 1]
            .iter()
            .filter_map(|&c| share.try_enter(&workspace, &connections[c]))
            .collect();
        assert_eq!(running.len(), 3);
        // One job waits in the workspace's line (holding its connection's free call)...
        let _in_line = spawn_enter(&share, &workspace, &connections[1], take_slot(&slots));
        while waiting(&share) < 2 {
            tokio::task::yield_now().await;
        }
        // ...so a job of a third connection parks, and gives back the call it found free.
        let _parked = spawn_enter(&share, &workspace, &connections[2], take_slot(&slots));
        tokio::time::timeout(Duration::from_secs(30), slots.1.notified())
            .await
            .expect("the job parked");
        let free = |c: &ConnectionId| {
            let counts = share.counts.lock().unwrap();
            counts.shares[&Holder::Connection(c.clone())].calls.available_permits()
        };
        assert_eq!(
            free(&connections[2]),
            2,
            "the parked job holds none of its connection's calls"
        );
        assert_eq!(free(&connections[1]), 0, "the job in line holds the call it found free");
    }

    #[tokio::test]
    async fn a_wait_ends_after_its_patience() {
        let share = FairShare::new(2, 1, 1);
        let slots = worker_slots(2);
        let workspace = WorkspaceId::from("ws_one");
        let connections = connections(1);
        let _running = share.try_enter(&workspace, &connections[0]);
        let mut slot = take_slot(&slots);
        let waited = share
            .enter(&workspace, &connections[0], Duration::from_millis(20), &mut slot)
            .await;
        assert!(waited.is_none());
        assert_eq!(waiting(&share), 0);
    }

    #[tokio::test]
    async fn shares_nothing_uses_are_forgotten() {
        let share = FairShare::new(4, 4, 0);
        let slots = worker_slots(1);
        let connections = connections(2);
        let one = share.try_enter(&WorkspaceId::from("ws_one"), &connections[0]);
        let two = share
            .enter(
                &WorkspaceId::from("ws_two"),
                &connections[1],
                Duration::ZERO,
                &mut take_slot(&slots),
            )
            .await;
        assert!(one.is_some() && two.is_some());
        assert_eq!(share.counts.lock().map(|c| c.shares.len()).unwrap_or(0), 4);
        drop(one);
        assert_eq!(share.counts.lock().map(|c| c.shares.len()).unwrap_or(0), 2);
        drop(two);
        assert!(share.counts.lock().map(|c| c.shares.is_empty()).unwrap_or(false));
    }
}
