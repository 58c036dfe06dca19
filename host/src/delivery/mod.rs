//! Signed webhook delivery: the outbox rows written by session starts are sent by [`worker`],
//! signed with both the Leadtime and the Standard Webhooks headers ([`signing`](crate::domain::webhook_signing)), retried on a
//! schedule, and every attempt is recorded.

pub mod policy;
pub mod record;
pub mod sender;
pub mod worker;

/// The signatures live with the domain rules (use cases make secrets too); re-exported for
/// wrapper authors and tests that know them as `delivery::signing`.
pub use crate::domain::webhook_signing as signing;
