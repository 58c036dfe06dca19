//! One call into a plugin: a fresh instance in its own `Store` under the call limits (memory,
//! wasi resources, data per host call, a deadline enforced by epoch interruption with a yield at
//! every tick), the export's outcome, and a reason a person can act on when it traps.

use std::time::{Duration, Instant};

use serde::Serialize;
use wasmtime::{Engine, Store, UpdateDeadline};

use super::bindings;
use super::bindings::types::{FieldError, PluginError, SessionEvent, SessionRef, SessionStart};
use super::bindings::{ConnectionPlugin, ConnectionPluginPre};
use super::call::HttpProblems;
use super::call::{CallContext, CallEffects};
use super::capabilities::http;
use super::engine::EPOCH_TICK;
use super::grants::Capability;
use super::limits::CallLimits;
use super::state::PluginState;

/// Why a call into a plugin did not return normally.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The plugin returned an error value.
    #[error("{0}")]
    Plugin(String),
    /// The plugin asked to be called again later.
    #[error("temporary failure: {0}")]
    Transient(String),
    /// The connection config was refused by the plugin.
    #[error("the connection config is invalid: {}", field_errors_text(.0))]
    InvalidConfig(Vec<ConfigFieldError>),
    /// The plugin trapped, panicked, ran out of time or breached a limit.
    #[error("{0}")]
    Crashed(String),
}

/// One field error from `validate-config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ConfigFieldError {
    /// The config field, e.g. `webhookUrl`.
    pub field: String,
    pub message: String,
}

fn field_errors_text(errors: &[ConfigFieldError]) -> String {
    errors
        .iter()
        .map(|e| {
            if e.field.is_empty() {
                e.message.clone()
            } else {
                format!("{}: {}", e.field, e.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<FieldError> for ConfigFieldError {
    fn from(e: FieldError) -> Self {
        Self {
            field: e.field,
            message: e.message,
        }
    }
}

/// The outcome of a session call, with the CPU time the plugin used (recorded on the session).
#[derive(Debug)]
pub struct Called<T> {
    pub result: Result<T, CallError>,
    pub cpu: Duration,
}

/// What a `start-session` or `on-event` call left, or why it failed.
pub(crate) fn unit_outcome(
    outcome: Result<(Returned, CallEffects), CallError>,
    export: &str,
) -> Result<CallEffects, CallError> {
    match outcome? {
        (Returned::Unit(result), effects) => result
            .map_err(|e| plugin_error(e, &effects.http_problems))
            .map(|()| effects),
        _ => Err(CallError::Crashed(format!("unexpected result from {export}"))),
    }
}

/// An export to call, with its arguments (boxed: the records are large and calls are few).
pub(crate) enum Export {
    Manifest,
    ValidateConfig(String),
    StartSession(Box<SessionStart>),
    OnEvent(Box<(SessionRef, SessionEvent)>),
}

/// What an export returned.
pub(crate) enum Returned {
    Manifest(bindings::types::PluginManifest),
    Config(Result<(), Vec<FieldError>>),
    Unit(Result<(), PluginError>),
}

async fn invoke(
    instance: &ConnectionPlugin,
    store: &mut Store<PluginState>,
    export: &Export,
) -> wasmtime::Result<Returned> {
    let guest = instance.leadtime_agent_runtime_plugin();
    Ok(match export {
        Export::Manifest => Returned::Manifest(guest.call_manifest(&mut *store).await?),
        Export::ValidateConfig(config) => Returned::Config(guest.call_validate_config(&mut *store, config).await?),
        Export::StartSession(start) => Returned::Unit(guest.call_start_session(&mut *store, start).await?),
        Export::OnEvent(args) => Returned::Unit(guest.call_on_event(&mut *store, &args.0, &args.1).await?),
    })
}

/// Runs `export` of `pre` in a fresh instance with `state` under `limits`. Meant to run on the
/// plugin threads (see [`super::executor`]).
pub(crate) async fn run(
    engine: &Engine,
    pre: ConnectionPluginPre<PluginState>,
    state: PluginState,
    limits: CallLimits,
    label: String,
    export: Export,
) -> Result<(Returned, CallEffects), CallError> {
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    // Host-side resources a guest can make the host hold (see `CallLimits::resources`).
    store.set_max_component_handles(limits.resources);
    store.set_hostcall_fuel(limits.host_call_bytes);
    // Guest code yields to the plugin threads at every epoch tick, so calls take turns, and is
    // interrupted at its deadline even when it never calls the host.
    let deadline = Instant::now() + limits.timeout;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        Ok(if Instant::now() >= deadline {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
        })
    });
    let run = async {
        let instance = pre.instantiate_async(&mut store).await?;
        invoke(&instance, &mut store, &export).await
    };
    // The epoch deadline stops runaway guest code; this timeout also covers host calls.
    let outcome = tokio::time::timeout(limits.timeout + EPOCH_TICK * 10, run).await;
    let returned = match outcome {
        Ok(Ok(value)) => value,
        Ok(Err(trap)) if trap.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() => {
            // Every pooled slot is busy: not the plugin's fault, so the caller retries later.
            return Err(CallError::Transient(describe_trap(&label, &trap, &store, &limits)));
        }
        Ok(Err(trap)) => {
            let reason = describe_trap(&label, &trap, &store, &limits);
            return Err(CallError::Crashed(with_problems(reason, &store.data().http_problems())));
        }
        Err(_) => {
            let reason = format!(
                "{label} did not finish within its {} s time limit",
                limits.timeout.as_secs()
            );
            return Err(CallError::Crashed(with_problems(reason, &store.data().http_problems())));
        }
    };
    Ok((returned, store.into_data().into_effects()))
}

/// The plugin's error, with what the host refused during the call (the plugin only hears an
/// error code; people should read why).
fn plugin_error(error: PluginError, http_problems: &HttpProblems) -> CallError {
    match error {
        PluginError::InvalidConfig(errors) => CallError::InvalidConfig(errors.into_iter().map(Into::into).collect()),
        PluginError::Failed(message) => CallError::Plugin(with_problems(message, http_problems)),
        PluginError::Transient(message) => CallError::Transient(with_problems(message, http_problems)),
    }
}

/// `message`, followed by the first outbound request the host refused or saw fail in the call
/// (and how many more there were).
fn with_problems(message: String, http_problems: &HttpProblems) -> String {
    match (http_problems.first.first(), http_problems.total) {
        (None, _) => message,
        (Some(first), 1) => format!("{message} (outbound request {first})"),
        (Some(first), total) => format!(
            "{message} (outbound request {first}; {} more refused or failed, see the host log)",
            total - 1
        ),
    }
}

/// Whether a call may use outbound HTTP, and with which hosts and secrets: only calls about a
/// session of a plugin that declared the `http` capability.
pub(crate) fn http_grant(context: &CallContext) -> Result<http::Grant, String> {
    if !context.grants.contains(Capability::Http) {
        return Err(format!(
            "plugin `{}` did not declare the `http` capability in its manifest (or it is not available in this call)",
            context.plugin_id
        ));
    }
    match &context.connection_id {
        Some(connection) => Ok(http::Grant {
            hosts: context.outbound_hosts.clone(),
            workspace_hosts: context.workspace_outbound_hosts.clone(),
            secrets: context.secrets.clone(),
            secrets_in_bodies: context.secrets_in_bodies,
            connection: connection.clone(),
            session: context.session_id.clone(),
        }),
        None => Err(
            "outbound HTTP is only available in calls about a connection (sessions, and validating a saved connection)"
                .into(),
        ),
    }
}

/// A reason a person can act on for a trap, naming the plugin.
fn describe_trap(label: &str, error: &wasmtime::Error, store: &Store<PluginState>, limits: &CallLimits) -> String {
    if error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() {
        return format!(
            "{label} could not start: the host is running as many plugin calls as it can; try again shortly"
        );
    }
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        return match trap {
            wasmtime::Trap::Interrupt => format!("{label} exceeded its {} s time limit", limits.timeout.as_secs()),
            wasmtime::Trap::UnreachableCodeReached if store.data().memory_limit_hit() => {
                format!("{label} exceeded its {} MiB memory limit", limits.memory_bytes >> 20)
            }
            wasmtime::Trap::UnreachableCodeReached => {
                format!("{label} crashed (it panicked or hit unreachable code)")
            }
            other => format!("{label} crashed: {other}"),
        };
    }
    if store.data().memory_limit_hit() {
        return format!("{label} exceeded its {} MiB memory limit", limits.memory_bytes >> 20);
    }
    // Host-side limits, named so the plugin's author knows which one (the error chain carries
    // wasmtime's wording; see `CallLimits::resources` and friends).
    let chain = format!("{error:#}");
    if chain.contains("resource table has no free keys") || chain.contains("store handle limit exceeded") {
        return format!(
            "{label} exceeded its limit of {} host resources held at once (wasi:http requests, header fields, \
             bodies, streams and pollables; drop the ones it no longer needs)",
            limits.resources
        );
    }
    if chain.contains("fuel allocated for hostcalls has been exhausted") {
        return format!(
            "{label} exceeded its limit of {} MiB passed to the host in one host call",
            limits.host_call_bytes >> 20
        );
    }
    if chain.contains("total size of fields exceeds limit") || chain.contains("too many fields in the field map") {
        return format!(
            "{label} exceeded its limit of {} KiB of HTTP header fields in one set of fields",
            limits.http.field_bytes >> 10
        );
    }
    format!("{label} failed: {chain}")
}
