//! Signed webhook delivery: the outbox rows written by session starts are sent by [`worker`],
//! signed with both the Leadtime and the Standard Webhooks headers ([`signing`]), retried on a
//! schedule, and every attempt is recorded.

pub mod manage;
pub mod policy;
pub mod record;
pub mod sender;
pub mod signing;
pub mod worker;
