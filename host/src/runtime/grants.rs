//! Capabilities as the host grants them: parsed once from the manifest when a plugin loads, into
//! a typed set every host call checks (instead of comparing strings per call).

/// A host capability a plugin may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// The call's session: activities, status, external link.
    Session,
    /// Signed webhook deliveries.
    Webhook,
    /// Per-connection key-value state.
    Kv,
    /// Logging.
    Log,
    /// Durable per-session timers (0.1.1).
    Timers,
    /// Outbound HTTP (`wasi:http/outgoing-handler`) to the manifest's hosts.
    Http,
    /// Provider webhooks: the connection's endpoint and routing (0.1.2).
    Inbound,
    /// The plugin continues an open session when its bot is @mentioned again (`on-event`
    /// `follow-up`, 0.1.2); without it every mention opens a new session.
    FollowUp,
    /// The plugin hands its provider's agent a session token by reference
    /// (`{{secret:session-token}}`, 0.1.3), with which the agent uses the Leadtime task tools
    /// (`/api/mcp`) as the bot, for that session alone, while it is open.
    TaskTools,
    /// Model requests performed by the host outside any instance (0.1.3).
    Model,
    /// The task tools as host calls, acting as the session's bot (0.1.3).
    Tasks,
}

impl Capability {
    /// Every capability, in manifest order.
    pub const ALL: [Capability; 11] = [
        Capability::Session,
        Capability::Webhook,
        Capability::Kv,
        Capability::Log,
        Capability::Timers,
        Capability::Http,
        Capability::Inbound,
        Capability::FollowUp,
        Capability::TaskTools,
        Capability::Model,
        Capability::Tasks,
    ];

    /// The manifest name.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Session => "session",
            Capability::Webhook => "webhook",
            Capability::Kv => "kv",
            Capability::Log => "log",
            Capability::Timers => "timers",
            Capability::Http => "http",
            Capability::Inbound => "inbound",
            Capability::FollowUp => "follow-up",
            Capability::TaskTools => "task-tools",
            Capability::Model => "model",
            Capability::Tasks => "tasks",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u8)
    }
}

/// A set of capabilities.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grants(u16);

impl Grants {
    /// No capability at all (the `manifest()` call).
    pub const NONE: Grants = Grants(0);

    /// The set `names` declares; an unknown name is refused, naming the known ones.
    pub fn parse(names: &[String]) -> Result<Grants, String> {
        let mut grants = Grants::NONE;
        for name in names {
            let capability = Capability::ALL
                .into_iter()
                .find(|c| c.as_str() == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = Capability::ALL.iter().map(|c| c.as_str()).collect();
                    format!("unknown capability `{name}`; known: {}", known.join(", "))
                })?;
            grants.0 |= capability.bit();
        }
        Ok(grants)
    }

    /// Whether `capability` is in the set.
    pub fn contains(self, capability: Capability) -> bool {
        self.0 & capability.bit() != 0
    }

    /// The set with only those of its capabilities `keep` says.
    pub fn only(self, keep: &[Capability]) -> Grants {
        Grants(
            keep.iter()
                .filter(|c| self.contains(**c))
                .fold(0, |bits, c| bits | c.bit()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_names_parse_into_a_set() {
        let grants = Grants::parse(&["kv".into(), "log".into()]).unwrap();
        assert!(grants.contains(Capability::Kv) && grants.contains(Capability::Log));
        assert!(!grants.contains(Capability::Http));
        assert_eq!(grants.only(&[Capability::Log]), Grants::parse(&["log".into()]).unwrap());
        let error = Grants::parse(&["sockets".into()]).unwrap_err();
        assert!(error.contains(
            "unknown capability `sockets`; known: session, webhook, kv, log, timers, http, inbound, follow-up, task-tools, model, tasks"
        ));
    }
}
