//! Host capabilities, one module per WIT interface: `session`, `webhook`, `kv`, `log`, `timers`, `inbound`,
//! `model`, `tasks`, and
//! `wasi:http/outgoing-handler` (`http`).
//!
//! Each module implements the generated `Host` trait for [`CallData`] (what one call acts on):
//! it checks the grant (the manifest must declare the capability), the call's budget and the
//! argument sizes, then acts through [`CallServices`] — the host's records, reached without the
//! runtime knowing about SQL. Refusals are returned to the guest as its WIT `host-error`; only host
//! bugs become traps.

pub mod http;
mod inbound;
mod kv;
pub mod log;
mod model;
mod session;
mod tasks;
mod timers;
mod webhook;

use super::call::CallData;

pub(crate) use inbound::INBOUND_CALLS;
pub(crate) use model::MODEL_REQUESTS;
pub(crate) use tasks::TASK_CALLS;

impl super::bindings::types::Host for CallData {}
