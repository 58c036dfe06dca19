//! End-to-end tests: a real host on a loopback port, the real plugins compiled to wasm, real HTTP
//! and a real database (SQLite, or PostgreSQL when `LEADTIME_TEST_DATABASE_URL` is set). Outside
//! services are loopback fakes that check every request against the contract.

#![allow(clippy::unwrap_used)]

mod administration;
mod audit_trail;
mod authorization;
mod bad_input;
mod batched_writes;
mod browser;
mod claude_agent;
mod connector_conformance;
mod console;
mod crash;
mod credentials;
mod cursor_cloud;
mod delivery;
mod group_commit;
mod handed_starts;
mod input_rules;
mod job_leases;
mod logging;
mod mcp;
mod native_agents;
mod openapi;
mod plugin_http;
mod plugin_reload;
mod provider_webhooks;
mod readme_walkthrough;
mod resource_bounds;
mod sandbox;
mod session_stream;
mod utils;
mod walking_skeleton;
