//! Fair shares of the session worker's plugin calls: one workspace may hold at most 3/4 of the
//! slots, one connection at most half, so a workspace (or one bot) whose plugin spins cannot take
//! every slot from the others. A job over its share is put back briefly and the slot goes to
//! someone else's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::domain::ids::{ConnectionId, WorkspaceId};

/// Who a running call counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Holder {
    Workspace(WorkspaceId),
    Connection(ConnectionId),
}

/// The calls each workspace and connection has running.
#[derive(Debug)]
pub struct FairShare {
    per_workspace: usize,
    per_connection: usize,
    running: Arc<Mutex<HashMap<Holder, usize>>>,
}

/// A running call's place in its shares; released when dropped.
#[derive(Debug)]
pub struct Ticket {
    holders: [Holder; 2],
    running: Arc<Mutex<HashMap<Holder, usize>>>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Ok(mut running) = self.running.lock() {
            for holder in &self.holders {
                if let Some(count) = running.get_mut(holder) {
                    *count -= 1;
                    if *count == 0 {
                        running.remove(holder);
                    }
                }
            }
        }
    }
}

impl FairShare {
    /// Shares of `slots` calls at once: 3/4 per workspace, half per connection (at least one).
    pub fn of(slots: usize) -> Self {
        Self {
            per_workspace: (slots * 3 / 4).max(1),
            per_connection: (slots / 2).max(1),
            running: Arc::default(),
        }
    }

    /// A ticket for a call of `connection` in `workspace`, unless either is at its share.
    pub fn try_enter(&self, workspace: &WorkspaceId, connection: &ConnectionId) -> Option<Ticket> {
        let holders = [
            Holder::Workspace(workspace.clone()),
            Holder::Connection(connection.clone()),
        ];
        let mut running = self.running.lock().ok()?;
        let count = |h: &Holder| running.get(h).copied().unwrap_or(0);
        if count(&holders[0]) >= self.per_workspace || count(&holders[1]) >= self.per_connection {
            return None;
        }
        for holder in &holders {
            *running.entry(holder.clone()).or_default() += 1;
        }
        drop(running);
        Some(Ticket {
            holders,
            running: self.running.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_per_workspace_and_per_connection_and_released() {
        let share = FairShare::of(8);
        let (busy, other) = (WorkspaceId::from("ws_busy"), WorkspaceId::from("ws_other"));
        let connections: Vec<ConnectionId> = (0..4)
            .map(|n| ConnectionId::from(format!("con_{n}").as_str()))
            .collect();
        // One connection: half the slots.
        let first: Vec<Ticket> = (0..4).filter_map(|_| share.try_enter(&busy, &connections[0])).collect();
        assert_eq!(first.len(), 4);
        assert!(share.try_enter(&busy, &connections[0]).is_none());
        // The workspace: 3/4 of them, across its connections.
        let second: Vec<Ticket> = (0..4).filter_map(|_| share.try_enter(&busy, &connections[1])).collect();
        assert_eq!(second.len(), 2);
        // Another workspace still gets in.
        assert!(share.try_enter(&other, &connections[2]).is_some());
        assert!(
            share.try_enter(&busy, &connections[3]).is_none(),
            "the workspace is at its share"
        );
        drop(first);
        assert!(share.try_enter(&busy, &connections[0]).is_some());
        drop(second);
    }
}
