//! Routing-table tests: one routing table per exchange type, exchange-to-exchange bindings,
//! alternate exchanges, deletion and every refusal with its reply code. Also the header value
//! the other test modules share.

use super::*;

mod proptests;

/// A field value for tests: void, a string or an integer.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Val {
    Void,
    Str(String),
    Int(i64),
}

impl Val {
    pub(super) fn s(text: &str) -> Self {
        Self::Str(text.to_owned())
    }
}

impl HeaderValue for Val {
    fn is_void(&self) -> bool {
        matches!(self, Self::Void)
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Topic matching by definition, binding key against routing key, word by word (the empty key
/// has no words).
pub(super) fn topic_reference(binding: &str, routing: &str) -> bool {
    fn words(key: &str) -> Vec<&str> {
        if key.is_empty() {
            Vec::new()
        } else {
            key.split('.').collect()
        }
    }
    fn matches(binding: &[&str], routing: &[&str]) -> bool {
        match binding.split_first() {
            None => routing.is_empty(),
            Some((&"#", rest)) => (0..=routing.len()).any(|i| matches(rest, &routing[i..])),
            Some((&"*", rest)) => !routing.is_empty() && matches(rest, &routing[1..]),
            Some((word, rest)) => routing.first() == Some(word) && matches(rest, &routing[1..]),
        }
    }
    matches(&words(binding), &words(routing))
}

pub(super) fn table(entries: &[(&str, Val)]) -> Vec<(String, Val)> {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn q(name: &str) -> Destination {
    Destination::queue(name)
}

fn x(name: &str) -> Destination {
    Destination::exchange(name)
}

/// Vhost `/` with `queues`.
fn setup(queues: &[&str]) -> Exchanges<Val> {
    let mut t = Exchanges::new();
    assert!(t.add_vhost("/"));
    for queue in queues {
        assert_eq!(t.add_queue("/", queue), Ok(true));
    }
    t
}

fn declare(t: &mut Exchanges<Val>, name: &str, decl: ExchangeDecl<Val>) {
    assert_eq!(t.declare_exchange("/", name, decl), Ok(true));
}

fn bind(t: &mut Exchanges<Val>, source: &str, destination: Destination, key: &str) {
    assert_eq!(t.bind("/", source, destination, key, vec![]), Ok(true));
}

fn routed(t: &Exchanges<Val>, exchange: &str, key: &str) -> Vec<String> {
    t.check_invariants();
    t.route("/", exchange, key, &[]).unwrap().queues
}

fn with_alternate(kind: ExchangeKind, alternate: &str) -> ExchangeDecl<Val> {
    ExchangeDecl {
        arguments: table(&[("alternate-exchange", Val::s(alternate))]),
        ..ExchangeDecl::new(kind)
    }
}

fn auto_delete(kind: ExchangeKind) -> ExchangeDecl<Val> {
    ExchangeDecl {
        auto_delete: true,
        ..ExchangeDecl::new(kind)
    }
}

#[test]
fn predeclared_exchanges() {
    let mut t = setup(&[]);
    assert!(!t.add_vhost("/"));
    let mut names: Vec<(&str, &str)> = t
        .exchanges("/")
        .map(|(name, decl)| {
            assert!(decl.durable && !decl.auto_delete && !decl.internal);
            (name, decl.kind.as_str())
        })
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            ("", "direct"),
            ("amq.direct", "direct"),
            ("amq.fanout", "fanout"),
            ("amq.headers", "headers"),
            ("amq.match", "headers"),
            ("amq.topic", "topic"),
        ]
    );
    assert_eq!(t.exchanges("nope").count(), 0);
}

#[test]
fn direct_routes_by_equal_key() {
    let mut t = setup(&["q1", "q2", "q3"]);
    bind(&mut t, "amq.direct", q("q1"), "black");
    bind(&mut t, "amq.direct", q("q2"), "black");
    bind(&mut t, "amq.direct", q("q3"), "green");
    bind(&mut t, "amq.direct", q("q1"), "green");
    assert_eq!(routed(&t, "amq.direct", "black"), ["q1", "q2"]);
    assert_eq!(routed(&t, "amq.direct", "green"), ["q1", "q3"]);
    let orange = t.route("/", "amq.direct", "orange", &[]).unwrap();
    assert!(!orange.is_routed());
    assert_eq!(routed(&t, "amq.direct", ""), Vec::<String>::new());
}

#[test]
fn fanout_ignores_the_key() {
    let mut t = setup(&["q1", "q2"]);
    bind(&mut t, "amq.fanout", q("q1"), "a");
    bind(&mut t, "amq.fanout", q("q2"), "");
    bind(&mut t, "amq.fanout", q("q2"), "b");
    assert_eq!(routed(&t, "amq.fanout", "anything"), ["q1", "q2"]);
    assert_eq!(routed(&t, "amq.fanout", ""), ["q1", "q2"]);
}

#[test]
fn topic_tutorial() {
    let mut t = setup(&["Q1", "Q2"]);
    declare(&mut t, "topic_logs", ExchangeDecl::new(ExchangeKind::Topic));
    bind(&mut t, "topic_logs", q("Q1"), "*.orange.*");
    bind(&mut t, "topic_logs", q("Q2"), "*.*.rabbit");
    bind(&mut t, "topic_logs", q("Q2"), "lazy.#");
    let cases: &[(&str, &[&str])] = &[
        ("quick.orange.rabbit", &["Q1", "Q2"]),
        ("lazy.orange.elephant", &["Q1", "Q2"]),
        ("quick.orange.fox", &["Q1"]),
        ("lazy.brown.fox", &["Q2"]),
        // Two bindings match, one delivery.
        ("lazy.pink.rabbit", &["Q2"]),
        ("quick.brown.fox", &[]),
        ("orange", &[]),
        ("quick.orange.new.rabbit", &[]),
        ("lazy.orange.new.rabbit", &["Q2"]),
    ];
    for (key, expected) in cases {
        assert_eq!(routed(&t, "topic_logs", key), *expected, "{key}");
    }
    bind(&mut t, "amq.topic", q("Q1"), "#");
    assert_eq!(routed(&t, "amq.topic", ""), ["Q1"]);
    assert_eq!(routed(&t, "amq.topic", "a..b"), ["Q1"]);
}

#[test]
fn headers_all_any_void_with_x() {
    let mut t = setup(&["all", "any", "void", "with-x", "any-empty", "all-empty"]);
    let bindings = [
        (
            "all",
            table(&[("format", Val::s("pdf")), ("type", Val::s("report"))]),
        ),
        (
            "any",
            table(&[
                ("x-match", Val::s("any")),
                ("format", Val::s("pdf")),
                ("type", Val::s("log")),
            ]),
        ),
        ("void", table(&[("urgent", Val::Void)])),
        (
            "with-x",
            table(&[("x-match", Val::s("all-with-x")), ("x-tenant", Val::s("a"))]),
        ),
        (
            "any-empty",
            table(&[("x-match", Val::s("any")), ("x-tenant", Val::s("a"))]),
        ),
        (
            "all-empty",
            table(&[("x-match", Val::s("all")), ("x-tenant", Val::s("b"))]),
        ),
    ];
    for (queue, arguments) in bindings {
        assert_eq!(
            t.bind("/", "amq.match", q(queue), "ignored", arguments),
            Ok(true)
        );
    }
    let route = |headers: &[(&str, Val)]| {
        t.route("/", "amq.match", "any-key", &table(headers))
            .unwrap()
            .queues
    };
    assert_eq!(route(&[]), ["all-empty"]);
    assert_eq!(
        route(&[("format", Val::s("pdf")), ("type", Val::s("report"))]),
        ["all", "all-empty", "any"]
    );
    assert_eq!(route(&[("type", Val::s("log"))]), ["all-empty", "any"]);
    assert_eq!(route(&[("urgent", Val::Int(0))]), ["all-empty", "void"]);
    assert_eq!(route(&[("x-tenant", Val::s("a"))]), ["all-empty", "with-x"]);
    // Headers exchanges check x-match at bind time; other types store it as any argument.
    let err = t
        .bind(
            "/",
            "amq.headers",
            q("all"),
            "",
            table(&[("x-match", Val::s("most"))]),
        )
        .unwrap_err();
    assert_eq!(err.reply_code(), 406);
    let most = table(&[("x-match", Val::s("most"))]);
    assert_eq!(t.bind("/", "amq.direct", q("all"), "", most), Ok(true));
}

#[test]
fn default_exchange_reaches_queues_by_name() {
    let mut t = setup(&["orders"]);
    assert_eq!(routed(&t, "", "orders"), ["orders"]);
    assert_eq!(routed(&t, "", "missing"), Vec::<String>::new());
    let both = t.route_keys("/", "", &["orders", "missing", "orders"], &[]);
    assert_eq!(both.unwrap().queues, ["orders"]);
    let refused = [
        t.bind("/", "", q("orders"), "orders", vec![]).unwrap_err(),
        t.bind("/", "amq.direct", x(""), "k", vec![]).unwrap_err(),
        t.unbind("/", "", &q("orders"), "orders", &[]).unwrap_err(),
        t.delete_exchange("/", "", false).unwrap_err(),
        t.declare_exchange("/", "", ExchangeDecl::durable(ExchangeKind::Direct))
            .unwrap_err(),
        t.declare_exchange_passive("/", "").unwrap_err(),
    ];
    for err in refused {
        assert_eq!(err, RoutingError::DefaultExchange);
        assert_eq!(err.reply_code(), 403);
        assert_eq!(
            err.to_string(),
            "ACCESS_REFUSED - operation not permitted on the default exchange"
        );
    }
    assert!(t.exchange("/", "").is_some());
    assert_eq!(t.remove_queue("/", "orders"), Ok(Removed::default()));
    assert_eq!(routed(&t, "", "orders"), Vec::<String>::new());
}

#[test]
fn exchange_to_exchange_with_cycle() {
    let mut t = setup(&["qa", "qb", "qc"]);
    declare(&mut t, "a", ExchangeDecl::new(ExchangeKind::Direct));
    declare(&mut t, "b", ExchangeDecl::new(ExchangeKind::Fanout));
    declare(&mut t, "c", ExchangeDecl::new(ExchangeKind::Topic));
    bind(&mut t, "a", x("b"), "k");
    bind(&mut t, "a", q("qa"), "k");
    bind(&mut t, "a", x("a"), "k");
    bind(&mut t, "b", x("a"), "");
    bind(&mut t, "b", q("qb"), "");
    bind(&mut t, "b", x("c"), "");
    bind(&mut t, "c", q("qc"), "k.#");
    bind(&mut t, "c", x("b"), "#");
    assert_eq!(routed(&t, "a", "k"), ["qa", "qb", "qc"]);
    assert_eq!(routed(&t, "a", "k.x"), Vec::<String>::new());
    assert_eq!(routed(&t, "b", "k"), ["qa", "qb", "qc"]);
    assert_eq!(routed(&t, "c", "k.1"), ["qb", "qc"]);
    assert_eq!(routed(&t, "b", "z"), ["qb"]);
    let listed: Vec<_> = t.bindings("/", "c").map(|b| b.routing_key).collect();
    assert_eq!(listed.len(), 2);
}

#[test]
fn one_delivery_per_queue_across_paths() {
    let mut t = setup(&["q"]);
    declare(&mut t, "a", ExchangeDecl::new(ExchangeKind::Topic));
    declare(&mut t, "b", ExchangeDecl::new(ExchangeKind::Fanout));
    bind(&mut t, "a", q("q"), "k.*");
    bind(&mut t, "a", q("q"), "#");
    bind(&mut t, "a", x("b"), "k.v");
    bind(&mut t, "b", q("q"), "");
    bind(&mut t, "amq.fanout", x("a"), "");
    bind(&mut t, "amq.fanout", x("b"), "");
    assert_eq!(routed(&t, "a", "k.v"), ["q"]);
    assert_eq!(routed(&t, "amq.fanout", "k.v"), ["q"]);
}

#[test]
fn alternate_exchange() {
    let mut t = setup(&["main", "unrouted", "other", "late"]);
    declare(&mut t, "ae", ExchangeDecl::new(ExchangeKind::Fanout));
    bind(&mut t, "ae", q("unrouted"), "");
    declare(&mut t, "x", with_alternate(ExchangeKind::Direct, "ae"));
    bind(&mut t, "x", q("main"), "k");
    assert_eq!(
        t.exchange("/", "x").unwrap().alternate_exchange(),
        Some("ae")
    );
    assert_eq!(routed(&t, "x", "k"), ["main"]);
    assert_eq!(routed(&t, "x", "z"), ["unrouted"]);

    // A chain of alternates; a missing alternate routes nowhere.
    declare(&mut t, "mid", with_alternate(ExchangeKind::Direct, "ae"));
    declare(&mut t, "front", with_alternate(ExchangeKind::Topic, "mid"));
    assert_eq!(routed(&t, "front", "z"), ["unrouted"]);
    declare(&mut t, "lost", with_alternate(ExchangeKind::Direct, "nope"));
    assert!(!t.route("/", "lost", "z", &[]).unwrap().is_routed());

    // An exchange reached by a binding falls back on its own alternate; the exchange that
    // matched that binding does not use its alternate.
    declare(&mut t, "other-ae", ExchangeDecl::new(ExchangeKind::Fanout));
    bind(&mut t, "other-ae", q("other"), "");
    declare(
        &mut t,
        "e2e",
        with_alternate(ExchangeKind::Fanout, "other-ae"),
    );
    bind(&mut t, "e2e", x("x"), "");
    assert_eq!(routed(&t, "e2e", "z"), ["unrouted"]);
    assert_eq!(routed(&t, "e2e", "k"), ["main"]);

    // Cyclic alternates end; an internal exchange may be an alternate.
    declare(&mut t, "c1", with_alternate(ExchangeKind::Direct, "c2"));
    let internal = ExchangeDecl {
        internal: true,
        ..with_alternate(ExchangeKind::Direct, "c1")
    };
    declare(&mut t, "c2", internal);
    assert_eq!(routed(&t, "c1", "k"), Vec::<String>::new());
    bind(&mut t, "c2", q("late"), "k");
    assert_eq!(routed(&t, "c1", "k"), ["late"]);
    assert_eq!(routed(&t, "c1", "z"), Vec::<String>::new());
}

#[test]
fn internal_exchanges_take_no_publishes() {
    let mut t = setup(&["q"]);
    let internal = ExchangeDecl {
        internal: true,
        ..ExchangeDecl::new(ExchangeKind::Fanout)
    };
    declare(&mut t, "inner", internal);
    bind(&mut t, "inner", q("q"), "");
    bind(&mut t, "amq.fanout", x("inner"), "");
    let err = t.route("/", "inner", "k", &[]).unwrap_err();
    assert_eq!(err.reply_code(), 403);
    assert_eq!(
        err.to_string(),
        "ACCESS_REFUSED - cannot publish to internal exchange 'inner' in vhost '/'"
    );
    assert_eq!(routed(&t, "amq.fanout", "k"), ["q"]);
}

#[test]
fn bindings_are_identified_by_key_and_arguments() {
    let mut t = setup(&["q", "r"]);
    let args = table(&[("a", Val::Int(1)), ("b", Val::s("x"))]);
    let reordered = table(&[("b", Val::s("x")), ("a", Val::Int(1))]);
    assert_eq!(
        t.bind("/", "amq.direct", q("q"), "k", args.clone()),
        Ok(true)
    );
    assert_eq!(
        t.bind("/", "amq.direct", q("q"), "k", reordered.clone()),
        Ok(false)
    );
    assert_eq!(t.bind("/", "amq.direct", q("q"), "k", vec![]), Ok(true));
    assert_eq!(t.bindings("/", "amq.direct").count(), 2);
    assert_eq!(routed(&t, "amq.direct", "k"), ["q"]);
    let removed = t.unbind("/", "amq.direct", &q("q"), "k", &reordered);
    assert_eq!(removed.map(|r| r.bindings), Ok(1));
    assert_eq!(routed(&t, "amq.direct", "k"), ["q"]);
    let missing = t.unbind("/", "amq.direct", &q("q"), "k", &args);
    assert_eq!(missing, Ok(Removed::default()));
    let other_key = t.unbind("/", "amq.direct", &q("q"), "j", &[]);
    assert_eq!(other_key, Ok(Removed::default()));
    assert_eq!(
        t.unbind("/", "amq.direct", &q("q"), "k", &[])
            .map(|r| r.bindings),
        Ok(1)
    );
    assert_eq!(routed(&t, "amq.direct", "k"), Vec::<String>::new());
    assert_eq!(t.bindings("/", "amq.direct").count(), 0);
    let listed = t.bindings("/", "nope").count() + t.bindings("none", "amq.direct").count();
    assert_eq!(listed, 0);
}

#[test]
fn redeclaration_must_be_equivalent() {
    let mut t = setup(&[]);
    let logs = ExchangeDecl::durable(ExchangeKind::Fanout);
    assert_eq!(t.declare_exchange("/", "logs", logs.clone()), Ok(true));
    assert_eq!(t.declare_exchange("/", "logs", logs.clone()), Ok(false));
    let topic = ExchangeDecl::durable(ExchangeKind::Topic);
    let err = t.declare_exchange("/", "logs", topic).unwrap_err();
    assert_eq!(err.reply_code(), 406);
    assert_eq!(
        err.to_string(),
        "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'logs' in vhost '/': \
         received 'topic' but current is 'fanout'"
    );
    assert_eq!(t.declare_exchange_passive("/", "logs"), Ok(&logs));

    // Pre-declared exchanges: an equivalent declaration succeeds, anything else is refused.
    let direct = ExchangeDecl::durable(ExchangeKind::Direct);
    assert_eq!(t.declare_exchange("/", "amq.direct", direct), Ok(false));
    let transient = ExchangeDecl::new(ExchangeKind::Direct);
    let err = t
        .declare_exchange("/", "amq.direct", transient)
        .unwrap_err();
    assert_eq!(err.reply_code(), 406);
    let err = t
        .declare_exchange("/", "amq.custom", ExchangeDecl::new(ExchangeKind::Direct))
        .unwrap_err();
    assert_eq!(err.reply_code(), 403);
    assert_eq!(
        err.to_string(),
        "ACCESS_REFUSED - exchange name 'amq.custom' contains reserved prefix 'amq.*'"
    );
    assert!(t.exchange("/", "amq.custom").is_none());

    let bad_alternate = ExchangeDecl {
        arguments: table(&[("alternate-exchange", Val::Int(1))]),
        ..ExchangeDecl::new(ExchangeKind::Direct)
    };
    let err = t.declare_exchange("/", "bad", bad_alternate).unwrap_err();
    assert!(matches!(err, RoutingError::InvalidAlternateExchange { .. }));
    assert_eq!(err.reply_code(), 406);
    assert!(t.exchange("/", "bad").is_none());
}

#[test]
fn delete_exchange() {
    let mut t = setup(&["q"]);
    declare(&mut t, "used", ExchangeDecl::new(ExchangeKind::Fanout));
    bind(&mut t, "used", q("q"), "");
    let err = t.delete_exchange("/", "used", true).unwrap_err();
    assert_eq!(err.reply_code(), 406);
    assert_eq!(
        err.to_string(),
        "PRECONDITION_FAILED - exchange 'used' in vhost '/' in use"
    );
    let removed = t.delete_exchange("/", "used", false).unwrap();
    assert_eq!(
        removed,
        Removed {
            bindings: 1,
            exchanges: vec!["used".into()],
        }
    );
    assert!(t.exchange("/", "used").is_none());

    // Bindings to the exchange are not "use", but they go with it, and an auto-delete
    // source they leave empty goes too.
    declare(&mut t, "target", ExchangeDecl::new(ExchangeKind::Fanout));
    declare(&mut t, "feeder", auto_delete(ExchangeKind::Fanout));
    bind(&mut t, "feeder", x("target"), "");
    bind(&mut t, "amq.topic", x("target"), "#");
    let removed = t.delete_exchange("/", "target", true).unwrap();
    assert_eq!(removed.bindings, 2);
    assert_eq!(removed.exchanges, ["target", "feeder"]);
    assert_eq!(t.bindings("/", "amq.topic").count(), 0);
    assert_eq!(routed(&t, "amq.topic", "k"), Vec::<String>::new());

    assert_eq!(
        t.delete_exchange("/", "never", true),
        Ok(Removed::default())
    );
    for name in ["amq.direct", "amq.whatever"] {
        let err = t.delete_exchange("/", name, false).unwrap_err();
        assert_eq!(err.reply_code(), 403);
        assert!(
            err.to_string()
                .starts_with("ACCESS_REFUSED - deletion of system exchange")
        );
    }
    assert!(t.exchange("/", "amq.direct").is_some());
}

#[test]
fn removing_a_queue_removes_its_bindings() {
    let mut t = setup(&["q", "q2"]);
    declare(&mut t, "ad1", auto_delete(ExchangeKind::Fanout));
    declare(&mut t, "ad2", auto_delete(ExchangeKind::Fanout));
    declare(&mut t, "ad3", auto_delete(ExchangeKind::Direct));
    declare(&mut t, "keep", ExchangeDecl::new(ExchangeKind::Direct));
    declare(&mut t, "idle", auto_delete(ExchangeKind::Direct));
    bind(&mut t, "ad1", q("q"), "");
    bind(&mut t, "ad2", x("ad1"), "");
    bind(&mut t, "ad3", q("q"), "k");
    bind(&mut t, "ad3", q("q2"), "k");
    bind(&mut t, "keep", q("q"), "k");
    bind(&mut t, "keep", q("q"), "j");
    let removed = t.remove_queue("/", "q").unwrap();
    assert_eq!(removed.bindings, 5);
    assert_eq!(removed.exchanges, ["ad1", "ad2"]);
    assert!(!t.has_queue("/", "q"));
    assert!(t.exchange("/", "ad1").is_none() && t.exchange("/", "ad2").is_none());
    // An auto-delete exchange that never had a binding stays.
    assert!(t.exchange("/", "idle").is_some());
    assert_eq!(routed(&t, "keep", "k"), Vec::<String>::new());
    assert_eq!(routed(&t, "ad3", "k"), ["q2"]);
    let err = t.bind("/", "keep", q("q"), "k", vec![]).unwrap_err();
    assert_eq!(err.to_string(), "NOT_FOUND - no queue 'q' in vhost '/'");

    // Unbinding the last binding of an auto-delete exchange deletes it too.
    let removed = t.unbind("/", "ad3", &q("q2"), "k", &[]).unwrap();
    assert_eq!(removed.exchanges, ["ad3"]);
    assert!(t.exchange("/", "ad3").is_none());
}

#[test]
fn vhosts_are_separate() {
    let mut t = setup(&["q"]);
    assert!(t.add_vhost("other"));
    assert!(t.has_vhost("other"));
    assert_eq!(t.route("other", "", "q", &[]).map(|r| r.queues), Ok(vec![]));
    let err = t
        .bind("other", "amq.direct", q("q"), "k", vec![])
        .unwrap_err();
    assert_eq!(err.to_string(), "NOT_FOUND - no queue 'q' in vhost 'other'");
    assert!(t.delete_vhost("other"));
    assert!(!t.delete_vhost("other"));
    assert_eq!(routed(&t, "", "q"), ["q"]);
}

#[test]
fn several_routing_keys() {
    let mut t = setup(&["q1", "q2", "h"]);
    bind(&mut t, "amq.direct", q("q1"), "a");
    bind(&mut t, "amq.direct", q("q2"), "b");
    bind(&mut t, "amq.topic", q("q1"), "a.*");
    bind(&mut t, "amq.topic", q("q2"), "#.b");
    bind(&mut t, "amq.headers", q("h"), "");
    let route = |exchange: &str, keys: &[&str]| t.route_keys("/", exchange, keys, &[]).unwrap();
    assert_eq!(route("amq.direct", &["a", "b", "a"]).queues, ["q1", "q2"]);
    assert_eq!(route("amq.topic", &["a.b", "x"]).queues, ["q1", "q2"]);
    assert_eq!(route("amq.headers", &["a", "b"]).queues, ["h"]);
    assert!(!route("amq.direct", &[]).is_routed());
}

#[test]
fn refusals_and_reply_codes() {
    let mut t = setup(&["q"]);
    let vhost = RoutingError::VhostNotFound {
        vhost: "nope".into(),
    };
    let decl = ExchangeDecl::new(ExchangeKind::Direct);
    assert_eq!(t.add_queue("nope", "q"), Err(vhost.clone()));
    assert_eq!(t.remove_queue("nope", "q"), Err(vhost.clone()));
    assert_eq!(t.declare_exchange("nope", "x", decl), Err(vhost.clone()));
    assert_eq!(t.declare_exchange_passive("nope", "x"), Err(vhost.clone()));
    assert_eq!(t.delete_exchange("nope", "x", false), Err(vhost.clone()));
    assert_eq!(t.bind("nope", "x", q("q"), "", vec![]), Err(vhost.clone()));
    assert_eq!(t.unbind("nope", "x", &q("q"), "", &[]), Err(vhost.clone()));
    assert_eq!(t.route("nope", "", "q", &[]), Err(vhost.clone()));
    assert_eq!(
        (vhost.reply_code(), vhost.is_connection_error()),
        (530, true)
    );
    assert_eq!(vhost.to_string(), "NOT_ALLOWED - vhost 'nope' not found");

    let no_exchange = |name: &str| RoutingError::ExchangeNotFound {
        vhost: "/".into(),
        exchange: name.into(),
    };
    assert_eq!(t.route("/", "x", "k", &[]), Err(no_exchange("x")));
    assert_eq!(t.declare_exchange_passive("/", "x"), Err(no_exchange("x")));
    assert_eq!(t.bind("/", "x", q("q"), "", vec![]), Err(no_exchange("x")));
    assert_eq!(
        t.bind("/", "amq.direct", x("y"), "", vec![]),
        Err(no_exchange("y"))
    );
    assert_eq!(
        t.unbind("/", "amq.direct", &x("y"), "", &[]),
        Err(no_exchange("y"))
    );
    let err = no_exchange("x");
    assert_eq!((err.reply_code(), err.is_connection_error()), (404, false));
    assert_eq!(err.to_string(), "NOT_FOUND - no exchange 'x' in vhost '/'");
    let err = t.unbind("/", "amq.direct", &q("r"), "", &[]).unwrap_err();
    assert_eq!((err.reply_code(), err.is_connection_error()), (404, false));

    let codes = [
        (RoutingError::DefaultExchange, 403),
        (
            RoutingError::ReservedName {
                exchange: "amq.x".into(),
            },
            403,
        ),
        (
            RoutingError::InUse {
                vhost: "/".into(),
                exchange: "x".into(),
            },
            406,
        ),
        (
            RoutingError::InvalidXMatch {
                value: "'most'".into(),
            },
            406,
        ),
        (RoutingError::UnknownExchangeType { kind: "x".into() }, 503),
    ];
    for (err, code) in codes {
        assert_eq!(err.reply_code(), code, "{err}");
    }
}
