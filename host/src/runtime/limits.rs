//! Per-call limits: every guest-driven allocation or host call is bounded by one of these.

use std::time::Duration;

/// Per-call limits. Every guest-driven allocation or host call is bounded by one of these.
#[derive(Debug, Clone)]
pub struct CallLimits {
    /// Wall-clock time one call may take, host calls included.
    pub timeout: Duration,
    /// Linear memory one instance may grow to.
    pub memory_bytes: usize,
    /// Activities one call may post.
    pub activities: u32,
    /// Webhooks one call may queue.
    pub webhooks: u32,
    /// Largest webhook body, in bytes.
    pub webhook_body_bytes: usize,
    /// Log lines one call may write (more are dropped, and one line says so).
    pub log_lines: u32,
    /// Longest log line kept, in bytes.
    pub log_line_bytes: usize,
    /// Log lines one connection may write per second across calls, sustained.
    pub log_lines_per_second: u32,
    /// Log lines one connection may write in a burst above that rate.
    pub log_lines_burst: u32,
    /// kv operations one call may make.
    pub kv_operations: u32,
    /// Longest kv key, in bytes.
    pub kv_key_bytes: usize,
    /// Largest kv value, in bytes.
    pub kv_value_bytes: usize,
    /// Bytes of kv state one connection may keep.
    pub kv_connection_bytes: i64,
    /// Outbound HTTP (`wasi:http`) budgets and timeouts.
    pub http: HttpLimits,
    /// Timers one call may schedule.
    pub timers: u32,
    /// Timers one session may have pending.
    pub pending_timers_per_session: u64,
    /// Largest timer payload, in bytes.
    pub timer_payload_bytes: usize,
    /// wasi resources (HTTP requests, header fields, bodies, streams, pollables) one call may hold
    /// at once: with the per-resource bounds in [`HttpLimits`], this bounds the host memory a guest
    /// can make the host hold outside its linear memory.
    pub resources: usize,
    /// Bytes a guest may pass to the host in one host call (strings and lists crossing imports).
    pub host_call_bytes: usize,
    /// Bytes of effects (webhook bodies, timer payloads) one call may queue for commit.
    pub effect_bytes: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            memory_bytes: 64 << 20,
            activities: 1_000,
            webhooks: 16,
            webhook_body_bytes: 1 << 20,
            log_lines: 500,
            log_line_bytes: 4 << 10,
            log_lines_per_second: 50,
            log_lines_burst: 500,
            kv_operations: 1_000,
            kv_key_bytes: 256,
            kv_value_bytes: 64 << 10,
            kv_connection_bytes: 16 << 20,
            http: HttpLimits::default(),
            timers: 10,
            pending_timers_per_session: 20,
            timer_payload_bytes: 16 << 10,
            resources: 256,
            host_call_bytes: 4 << 20,
            effect_bytes: 4 << 20,
        }
    }
}

/// How one call may use outbound HTTP.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Requests one call may send.
    pub requests: u32,
    /// Largest request body, in bytes.
    pub request_body_bytes: usize,
    /// Largest response body, in bytes.
    pub response_body_bytes: usize,
    /// Response bytes one call may receive in all (responses wait in host memory until the
    /// plugin reads them).
    pub call_response_bytes: usize,
    /// Time to the response's headers, unless the plugin asks for less.
    pub first_byte_timeout: Duration,
    /// Time one request may take in all, body included.
    pub total_timeout: Duration,
    /// Largest set of header fields (`wasi:http` `fields`), in bytes.
    pub field_bytes: usize,
    /// Request body bytes the host buffers per body before the plugin's writes wait (twice this).
    pub body_chunk_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            requests: 32,
            request_body_bytes: 1 << 20,
            response_body_bytes: 4 << 20,
            call_response_bytes: 16 << 20,
            first_byte_timeout: Duration::from_secs(15),
            total_timeout: Duration::from_secs(20),
            field_bytes: 16 << 10,
            body_chunk_bytes: 64 << 10,
        }
    }
}
