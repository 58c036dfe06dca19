//! The host's use cases, free of HTTP: tasks and the sessions they open, accounts (people, bots,
//! tokens, connection types, secrets, setup codes) and delivery management. The API translates
//! requests into these calls and their errors into answers; the workers call the session use
//! cases for what the host decides on its own.

pub mod accounts;
pub mod caller;
pub mod connection_types;
pub mod console;
pub mod deliveries;
pub mod error;
pub mod inbound;
pub mod sessions;
pub mod tasks;
pub mod token_memo;

pub use error::Error;
