//! The `fjord serve` flags the kit writes: listeners on ephemeral loopback
//! ports, the gateway listeners on or off, and a cluster member's identity.
//!
//! A flag the caller passes replaces the kit's default for the same flag
//! (`fjord serve` refuses a flag given twice), so `--grpc-listen <addr>`
//! among a node's flags pins its gRPC address and `--mqtt-listen <addr>`
//! overrides what [`Gateways`] chose for that listener.

/// An ephemeral port on loopback: the listener picks a free port.
pub const EPHEMERAL: &str = "127.0.0.1:0";

/// The gateway listeners' flags, in the order the kit writes them.
const GATEWAY_LISTENERS: [&str; 5] = [
    "--mqtt-listen",
    "--mqtt-tls-listen",
    "--mqtt-ws-listen",
    "--amqp-listen",
    "--amqp-tls-listen",
];

/// Every gateway listener off (for a caller that builds its own command
/// line; nodes of the kit take a [`Gateways`]).
pub const GATEWAYS_OFF: &[&str] = &[
    GATEWAY_LISTENERS[0],
    "off",
    GATEWAY_LISTENERS[1],
    "off",
    GATEWAY_LISTENERS[2],
    "off",
    GATEWAY_LISTENERS[3],
    "off",
    GATEWAY_LISTENERS[4],
    "off",
];

/// Which gateway listeners a node opens, each on an ephemeral loopback
/// port; the others are off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gateways {
    pub mqtt: bool,
    pub mqtt_tls: bool,
    pub mqtt_ws: bool,
    pub amqp: bool,
    pub amqp_tls: bool,
}

impl Gateways {
    /// No gateway: a node with only its gRPC and HTTP listeners.
    pub const NONE: Gateways = Gateways {
        mqtt: false,
        mqtt_tls: false,
        mqtt_ws: false,
        amqp: false,
        amqp_tls: false,
    };
    /// Every gateway listener.
    pub const ALL: Gateways = Gateways {
        mqtt: true,
        mqtt_tls: true,
        mqtt_ws: true,
        amqp: true,
        amqp_tls: true,
    };
    /// The plain-TCP MQTT listener only.
    pub const MQTT: Gateways = Gateways {
        mqtt: true,
        ..Gateways::NONE
    };
    /// The plain-TCP AMQP listener only.
    pub const AMQP: Gateways = Gateways {
        amqp: true,
        ..Gateways::NONE
    };

    /// `(flag, value)` for every gateway listener: [`EPHEMERAL`] or `off`.
    pub fn flags(self) -> Vec<(&'static str, &'static str)> {
        let on = [
            self.mqtt,
            self.mqtt_tls,
            self.mqtt_ws,
            self.amqp,
            self.amqp_tls,
        ];
        GATEWAY_LISTENERS
            .into_iter()
            .zip(on)
            .map(|(flag, on)| (flag, if on { EPHEMERAL } else { "off" }))
            .collect()
    }
}

/// The flags of the node that starts a cluster: `--node-id <id> --bootstrap`.
pub fn bootstrap_args(node_id: u32) -> Vec<String> {
    vec![
        "--node-id".into(),
        node_id.to_string(),
        "--bootstrap".into(),
    ]
}

/// The flags of a node that joins a cluster through the member at `join`:
/// `--node-id <id> --join <join>`.
pub fn join_args(node_id: u32, join: &str) -> Vec<String> {
    vec![
        "--node-id".into(),
        node_id.to_string(),
        "--join".into(),
        join.to_string(),
    ]
}

/// The kit's `defaults` (flag and value) the caller's `flags` do not
/// override, then the caller's flags.
pub(crate) fn merge(defaults: &[(&str, &str)], flags: &[String]) -> Vec<String> {
    let given = |flag: &str| {
        flags.iter().any(|f| {
            f == flag
                || f.strip_prefix(flag)
                    .is_some_and(|rest| rest.starts_with('='))
        })
    };
    defaults
        .iter()
        .filter(|(flag, _)| !given(flag))
        .flat_map(|(flag, value)| [flag.to_string(), value.to_string()])
        .chain(flags.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn gateways_off_is_the_flag_list_of_no_gateway() {
        let none: Vec<&str> = Gateways::NONE
            .flags()
            .into_iter()
            .flat_map(|(flag, value)| [flag, value])
            .collect();
        assert_eq!(none, GATEWAYS_OFF);
    }

    #[test]
    fn a_gateway_that_is_on_listens_on_an_ephemeral_port() {
        let flags = Gateways::MQTT.flags();
        assert_eq!(flags[0], ("--mqtt-listen", EPHEMERAL));
        assert!(flags[1..].iter().all(|(_, v)| *v == "off"), "{flags:?}");
        let all = Gateways::ALL.flags();
        assert!(all.iter().all(|(_, v)| *v == EPHEMERAL), "{all:?}");
        assert_eq!(Gateways::AMQP.flags()[3], ("--amqp-listen", EPHEMERAL));
    }

    #[test]
    fn a_flag_of_the_caller_replaces_the_default() {
        let defaults = [("--grpc-listen", EPHEMERAL), ("--mqtt-listen", "off")];
        let merged = merge(&defaults, &strings(&["--mqtt-listen", "127.0.0.1:1883"]));
        assert_eq!(
            merged,
            strings(&[
                "--grpc-listen",
                EPHEMERAL,
                "--mqtt-listen",
                "127.0.0.1:1883"
            ])
        );
        let merged = merge(&defaults, &strings(&["--grpc-listen=127.0.0.1:7000"]));
        assert_eq!(
            merged,
            strings(&["--mqtt-listen", "off", "--grpc-listen=127.0.0.1:7000"])
        );
    }

    #[test]
    fn a_longer_flag_is_not_taken_for_a_default() {
        let defaults = [("--mqtt-listen", "off")];
        let flags = strings(&["--mqtt-listen-backlog", "5"]);
        assert_eq!(
            merge(&defaults, &flags)[..2],
            strings(&["--mqtt-listen", "off"])
        );
    }

    #[test]
    fn cluster_identity_flags() {
        assert_eq!(
            bootstrap_args(1),
            strings(&["--node-id", "1", "--bootstrap"])
        );
        assert_eq!(
            join_args(3, "127.0.0.1:7000"),
            strings(&["--node-id", "3", "--join", "127.0.0.1:7000"])
        );
    }
}
