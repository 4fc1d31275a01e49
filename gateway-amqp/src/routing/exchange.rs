//! Exchange types and declarations: what `exchange.declare` asks for, and when a redeclaration
//! is equivalent to the exchange that exists.
//!
//! # Invariants
//! A declaration is stored as given, arguments included, so that replaying it restores the
//! exchange and a redeclaration compares against exactly what the first one asked for.
//!
//! # Concurrency
//! Plain values.

use std::fmt;
use std::str::FromStr;

use super::RoutingError;
use super::headers::{HeaderValue, describe, lookup};

/// The argument naming the exchange that takes the messages an exchange cannot route.
const ALTERNATE_EXCHANGE: &str = "alternate-exchange";

/// An exchange type: how an exchange picks the bindings a message follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExchangeKind {
    /// Bindings whose key equals the routing key.
    Direct,
    /// Every binding, whatever the routing key.
    Fanout,
    /// Bindings whose key, a pattern of dot-separated words with `*` and `#`, matches the
    /// routing key.
    Topic,
    /// Bindings whose arguments match the message's headers (`x-match`).
    Headers,
}

impl ExchangeKind {
    /// Parses the type string of `exchange.declare`.
    ///
    /// # Errors
    /// [`RoutingError::UnknownExchangeType`] (503) for anything but `direct`, `fanout`,
    /// `topic` and `headers`.
    pub fn parse(kind: &str) -> Result<Self, RoutingError> {
        match kind {
            "direct" => Ok(Self::Direct),
            "fanout" => Ok(Self::Fanout),
            "topic" => Ok(Self::Topic),
            "headers" => Ok(Self::Headers),
            _ => Err(RoutingError::UnknownExchangeType {
                kind: kind.to_owned(),
            }),
        }
    }

    /// The type string, as `exchange.declare` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Fanout => "fanout",
            Self::Topic => "topic",
            Self::Headers => "headers",
        }
    }
}

impl FromStr for ExchangeKind {
    type Err = RoutingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for ExchangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An exchange as `exchange.declare` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeDecl<V> {
    /// How the exchange routes.
    pub kind: ExchangeKind,
    /// Survives a broker restart (the caller persists it).
    pub durable: bool,
    /// Deleted once it has had bindings as a source and lost the last one.
    pub auto_delete: bool,
    /// Publishers cannot publish to it; only other exchanges route to it.
    pub internal: bool,
    /// The declaration's arguments as given, `alternate-exchange` included: kept whole for the
    /// equivalence check of later declarations.
    pub arguments: Vec<(String, V)>,
}

impl<V> ExchangeDecl<V> {
    /// A transient, not auto-delete, not internal exchange without arguments.
    pub fn new(kind: ExchangeKind) -> Self {
        Self {
            kind,
            durable: false,
            auto_delete: false,
            internal: false,
            arguments: Vec::new(),
        }
    }

    /// A durable exchange without arguments, as the pre-declared ones are.
    pub fn durable(kind: ExchangeKind) -> Self {
        Self {
            durable: true,
            ..Self::new(kind)
        }
    }
}

impl<V: HeaderValue> ExchangeDecl<V> {
    /// The `alternate-exchange` argument, when it is a string.
    pub fn alternate_exchange(&self) -> Option<&str> {
        lookup(&self.arguments, ALTERNATE_EXCHANGE).and_then(HeaderValue::as_str)
    }

    /// Checks the arguments of a new exchange `name` and returns its alternate exchange.
    ///
    /// # Errors
    /// [`RoutingError::InvalidAlternateExchange`] when `alternate-exchange` is not a string.
    pub(super) fn parse_alternate(
        &self,
        vhost: &str,
        name: &str,
    ) -> Result<Option<String>, RoutingError> {
        match lookup(&self.arguments, ALTERNATE_EXCHANGE) {
            None => Ok(None),
            Some(value) => match value.as_str() {
                Some(alternate) => Ok(Some(alternate.to_owned())),
                None => Err(RoutingError::InvalidAlternateExchange {
                    vhost: vhost.to_owned(),
                    exchange: name.to_owned(),
                    value: describe(Some(value)),
                }),
            },
        }
    }

    /// Checks that `requested`, a redeclaration of exchange `name`, is equivalent to this
    /// declaration: same type, flags and arguments (in any order).
    ///
    /// # Errors
    /// [`RoutingError::Inequivalent`] (406) naming the first difference, in the order type,
    /// durable, auto_delete, internal, arguments by key.
    pub(super) fn check_equivalent(
        &self,
        requested: &Self,
        vhost: &str,
        name: &str,
    ) -> Result<(), RoutingError> {
        let inequivalent = |arg: &str, received: String, current: String| {
            Err(RoutingError::Inequivalent {
                vhost: vhost.to_owned(),
                exchange: name.to_owned(),
                arg: arg.to_owned(),
                received,
                current,
            })
        };
        let quoted = |value: &dyn fmt::Display| format!("'{value}'");
        if requested.kind != self.kind {
            return inequivalent("type", quoted(&requested.kind), quoted(&self.kind));
        }
        let flags = [
            ("durable", requested.durable, self.durable),
            ("auto_delete", requested.auto_delete, self.auto_delete),
            ("internal", requested.internal, self.internal),
        ];
        for (arg, received, current) in flags {
            if received != current {
                return inequivalent(arg, quoted(&received), quoted(&current));
            }
        }
        // As RabbitMQ: of the arguments only the alternate exchange must
        // be the same; others of a redeclaration are ignored.
        let (asked, kept) = (
            lookup(&requested.arguments, ALTERNATE_EXCHANGE),
            lookup(&self.arguments, ALTERNATE_EXCHANGE),
        );
        if asked != kept {
            return inequivalent(ALTERNATE_EXCHANGE, describe(asked), describe(kept));
        }
        Ok(())
    }
}

/// The exchanges every vhost has from its creation: the default exchange and the `amq.*` ones
/// (AMQP 0-9-1 section 3.1.3).
pub(super) const PREDECLARED: [(&str, ExchangeKind); 6] = [
    ("", ExchangeKind::Direct),
    ("amq.direct", ExchangeKind::Direct),
    ("amq.fanout", ExchangeKind::Fanout),
    ("amq.topic", ExchangeKind::Topic),
    ("amq.headers", ExchangeKind::Headers),
    ("amq.match", ExchangeKind::Headers),
];

/// The prefix of exchange names that clients may not declare.
pub(super) const RESERVED_PREFIX: &str = "amq.";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::tests::{Val, table};

    #[test]
    fn kinds_round_trip() {
        for kind in [
            ExchangeKind::Direct,
            ExchangeKind::Fanout,
            ExchangeKind::Topic,
            ExchangeKind::Headers,
        ] {
            assert_eq!(kind.as_str().parse::<ExchangeKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        let err = ExchangeKind::parse("x-delayed-message").unwrap_err();
        assert_eq!((err.reply_code(), err.is_connection_error()), (503, true));
        assert_eq!(
            err.to_string(),
            "COMMAND_INVALID - unknown exchange type 'x-delayed-message'"
        );
        assert!(ExchangeKind::parse("Direct").is_err());
    }

    #[test]
    fn equivalence() {
        let current = ExchangeDecl {
            arguments: table(&[("alternate-exchange", Val::s("ae")), ("x-n", Val::Int(1))]),
            ..ExchangeDecl::durable(ExchangeKind::Topic)
        };
        let reordered = ExchangeDecl {
            arguments: table(&[("x-n", Val::Int(1)), ("alternate-exchange", Val::s("ae"))]),
            ..current.clone()
        };
        assert_eq!(current.check_equivalent(&reordered, "/", "t"), Ok(()));
        assert_eq!(current.alternate_exchange(), Some("ae"));

        let with = |arguments: &[(&str, Val)]| ExchangeDecl {
            arguments: table(arguments),
            ..current.clone()
        };
        let cases = [
            (
                ExchangeDecl {
                    kind: ExchangeKind::Direct,
                    ..current.clone()
                },
                "type",
                "'direct'",
                "'topic'",
            ),
            (
                ExchangeDecl {
                    durable: false,
                    ..current.clone()
                },
                "durable",
                "'false'",
                "'true'",
            ),
            (
                ExchangeDecl {
                    auto_delete: true,
                    ..current.clone()
                },
                "auto_delete",
                "'true'",
                "'false'",
            ),
            (
                ExchangeDecl {
                    internal: true,
                    ..current.clone()
                },
                "internal",
                "'true'",
                "'false'",
            ),
            (
                with(&[("x-n", Val::Int(1))]),
                "alternate-exchange",
                "none",
                "'ae'",
            ),
        ];
        // Other arguments of a redeclaration are ignored (as RabbitMQ).
        assert!(
            current
                .check_equivalent(
                    &with(&[("alternate-exchange", Val::s("ae")), ("x-n", Val::Int(2))]),
                    "/",
                    "t"
                )
                .is_ok()
        );
        for (requested, arg, received, was) in cases {
            let err = current.check_equivalent(&requested, "/", "t").unwrap_err();
            assert_eq!(err.reply_code(), 406);
            assert_eq!(
                err.to_string(),
                format!(
                    "PRECONDITION_FAILED - inequivalent arg '{arg}' for exchange 't' in vhost \
                     '/': received {received} but current is {was}"
                )
            );
        }
    }

    #[test]
    fn alternate_must_be_a_string() {
        let decl = ExchangeDecl {
            arguments: table(&[("alternate-exchange", Val::Int(3))]),
            ..ExchangeDecl::new(ExchangeKind::Direct)
        };
        assert_eq!(decl.alternate_exchange(), None);
        let err = decl.parse_alternate("/", "x").unwrap_err();
        assert_eq!(err.reply_code(), 406);
        assert_eq!(
            err.to_string(),
            "PRECONDITION_FAILED - invalid value Int(3) for arg 'alternate-exchange' of exchange \
             'x' in vhost '/': expected a string"
        );
    }
}
