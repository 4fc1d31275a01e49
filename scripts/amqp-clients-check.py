#!/usr/bin/env python3
"""Checks an AMQP 0-9-1 broker with other people's clients: pika and kombu.

    scripts/amqp-clients-check.py [amqp://guest:guest@127.0.0.1:5672/]

The URL comes from the argument, else $FJORD_AMQP_URL, else the default
above. Run scripts/install-amqp-tools.sh first. Every check uses names of
its own (prefix check-<pid>-<random>) and deletes what it declared, so the
script can run again against the same broker. Prints `ok <check>` or
`FAIL <check>: <why>` per check and exits 1 if any failed.

pika: a durable queue, 10 persistent messages with publisher confirms,
consumed with manual acks under basic.qos prefetch; a topic exchange with
two bindings; basic.get and basic.get-empty; basic.nack with requeue=false
to a dead-letter exchange (x-dead-letter-exchange). kombu (py-amqp): a
producer/consumer round trip through a direct exchange to a durable queue.
"""

import contextlib
import os
import secrets
import sys
import traceback

import kombu
import pika
from pika.exceptions import UnroutableError

URL = (sys.argv[1] if len(sys.argv) > 1 else None) or os.environ.get(
    "FJORD_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"
)
PREFIX = f"check-{os.getpid()}-{secrets.token_hex(3)}"
PERSISTENT = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)

# Names to delete at the end, whatever happened.
queues, exchanges = [], []


def name(what):
    return f"{PREFIX}-{what}"


def connect():
    params = pika.URLParameters(URL)
    params.socket_timeout = 5
    params.blocked_connection_timeout = 10
    return pika.BlockingConnection(params)


@contextlib.contextmanager
def channel():
    """A connection and a channel on it; the connection closes when the
    block ends (a failed block leaves it to the garbage collector)."""
    conn = connect()
    yield conn, conn.channel()
    conn.close()


def declare_queue(ch, queue, **kwargs):
    ch.queue_declare(queue, durable=True, **kwargs)
    queues.append(queue)


def declare_bound_queue(ch, queue, exchange, routing_key=None):
    declare_queue(ch, queue)
    ch.queue_bind(queue, exchange, routing_key=routing_key)


def declare_exchange(ch, exchange, kind):
    ch.exchange_declare(exchange, exchange_type=kind, durable=True)
    exchanges.append(exchange)


def expect(what, want, got):
    if want != got:
        raise AssertionError(f"{what}: expected {want!r}, got {got!r}")


def get_body(ch, queue):
    """One message from `queue` by basic.get, acked; None if it is empty."""
    method, _, body = ch.basic_get(queue, auto_ack=False)
    if method is None:
        return None
    ch.basic_ack(method.delivery_tag)
    return body


def check_confirms_and_acks():
    """10 persistent messages with confirms; consumed under prefetch 3."""
    with channel() as (_, ch):
        queue = name("durable")
        declare_queue(ch, queue)
        ch.confirm_delivery()
        for i in range(10):
            # With confirms on, pika waits for the ack and raises on a nack
            # or a return.
            ch.basic_publish("", queue, f"m{i}".encode(), PERSISTENT, mandatory=True)
        print("ok pika: 10 persistent messages published with confirms")

        ch.basic_qos(prefetch_count=3)
        deliveries = ch.consume(queue, auto_ack=False, inactivity_timeout=1.0)
        held = []
        for method, props, body in deliveries:
            if method is None:
                break
            held.append((method, props, body))
        expect("deliveries before any ack (prefetch 3)", 3, len(held))
        got = [body for _, _, body in held]
        expect("delivery mode", [2, 2, 2], [p.delivery_mode for _, p, _ in held])
        for method, _, _ in held:
            ch.basic_ack(method.delivery_tag)
        for method, _, body in deliveries:
            if method is None:
                break
            got.append(body)
            ch.basic_ack(method.delivery_tag)
        ch.cancel()
        expect("bodies in order", [f"m{i}".encode() for i in range(10)], got)
        expect("messages left", 0, ch.queue_declare(queue, passive=True).method.message_count)
    print("ok pika: consumed with manual acks, basic.qos prefetch 3 held back the rest")


def check_topic():
    """A topic exchange, two bindings, and where each routing key goes."""
    with channel() as (_, ch):
        exchange, orders, eu = name("topic"), name("orders"), name("eu")
        declare_exchange(ch, exchange, "topic")
        declare_bound_queue(ch, orders, exchange, "orders.*")
        declare_bound_queue(ch, eu, exchange, "#.eu")
        ch.confirm_delivery()
        for key in ["orders.eu", "orders.us", "stock.eu", "stock.de.eu"]:
            ch.basic_publish(exchange, key, key.encode(), PERSISTENT, mandatory=True)
        try:
            ch.basic_publish(exchange, "stock.us", b"nowhere", PERSISTENT, mandatory=True)
            raise AssertionError("stock.us matched no binding but was not returned")
        except UnroutableError:
            pass

        def drain(queue):
            bodies = []
            while (body := get_body(ch, queue)) is not None:
                bodies.append(body.decode())
            return bodies

        expect("orders.* got", ["orders.eu", "orders.us"], drain(orders))
        expect("#.eu got", ["orders.eu", "stock.eu", "stock.de.eu"], drain(eu))
    print("ok pika: topic exchange with two bindings routes by pattern, returns the unroutable")


def check_get():
    """basic.get-ok with the message count, then basic.get-empty."""
    with channel() as (_, ch):
        queue = name("get")
        declare_queue(ch, queue)
        ch.confirm_delivery()
        for body in [b"first", b"second"]:
            ch.basic_publish("", queue, body, PERSISTENT)
        method, _, body = ch.basic_get(queue, auto_ack=False)
        expect("basic.get body", b"first", body)
        expect("basic.get-ok message-count", 1, method.message_count)
        ch.basic_ack(method.delivery_tag)
        method, _, body = ch.basic_get(queue, auto_ack=True)
        expect("second basic.get body", b"second", body)
        expect("basic.get on an empty queue", (None, None, None), ch.basic_get(queue))
    print("ok pika: basic.get and basic.get-empty")


def check_dead_letter():
    """basic.nack requeue=false moves the message to x-dead-letter-exchange."""
    with channel() as (conn, ch):
        dlx, dead, work = name("dlx"), name("dead"), name("work")
        declare_exchange(ch, dlx, "fanout")
        declare_bound_queue(ch, dead, dlx)
        declare_queue(ch, work, arguments={"x-dead-letter-exchange": dlx})
        ch.confirm_delivery()
        ch.basic_publish("", work, b"poison", PERSISTENT)
        method, _, body = ch.basic_get(work, auto_ack=False)
        expect("work queue body", b"poison", body)
        ch.basic_nack(method.delivery_tag, requeue=False)
        method, props, body = None, None, None
        for _ in range(50):  # dead-lettering is asynchronous: up to 5 s
            method, props, body = ch.basic_get(dead, auto_ack=True)
            if method is not None:
                break
            conn.sleep(0.1)
        expect("dead-lettered body", b"poison", body)
        expect("dead-lettered routing key", work, method.routing_key)
        expect("work queue after the nack", None, ch.basic_get(work)[0])
    print("ok pika: basic.nack requeue=false dead-letters through x-dead-letter-exchange")


def check_kombu():
    """Producer → direct exchange → durable queue → Consumer, JSON bodies."""
    exchange = kombu.Exchange(name("kombu-x"), type="direct", durable=True)
    queue = kombu.Queue(name("kombu"), exchange, routing_key="k", durable=True)
    sent = [{"n": i, "text": "kombu"} for i in range(5)]
    got = []
    with kombu.Connection(URL, transport_options={"confirm_publish": True}) as conn:
        conn.ensure_connection(max_retries=1)
        exchanges.append(exchange.name)
        queues.append(queue.name)
        producer = conn.Producer()
        for body in sent:
            producer.publish(
                body,
                exchange=exchange,
                routing_key="k",
                serializer="json",
                delivery_mode=2,
                declare=[queue],
            )

        def on_message(body, message):
            got.append(body)
            message.ack()

        with conn.Consumer(queue, callbacks=[on_message], accept=["json"]):
            while len(got) < len(sent):
                conn.drain_events(timeout=5)
    expect("kombu bodies", sent, got)
    print("ok kombu: producer/consumer round trip on a durable queue (confirms, JSON)")


def cleanup():
    if not queues and not exchanges:
        return
    with channel() as (_, ch):
        for queue in queues:
            ch.queue_delete(queue)
        for exchange in exchanges:
            ch.exchange_delete(exchange)


def main():
    print(f"broker: {URL}")
    checks = [
        ("pika confirms and acks", check_confirms_and_acks),
        ("pika topic exchange", check_topic),
        ("pika basic.get", check_get),
        ("pika dead-letter exchange", check_dead_letter),
        ("kombu round trip", check_kombu),
    ]
    failed = 0
    for label, check in checks:
        try:
            check()
        except Exception as e:  # report every check, then the exit code
            failed += 1
            print(f"FAIL {label}: {type(e).__name__}: {str(e) or repr(e)}")
            if os.environ.get("AMQP_CHECK_TRACEBACK"):
                traceback.print_exc()
    try:
        cleanup()
    except Exception as e:
        print(f"FAIL cleanup: {type(e).__name__}: {str(e) or repr(e)}")
        failed = failed or 1
    print(f"{len(checks) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
