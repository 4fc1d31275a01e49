#!/usr/bin/env bash
# Checks Fjord's MQTT gateway with other people's clients: Debian's
# mosquitto_pub/mosquitto_sub and Python's paho-mqtt (3.1.1 and 5.0, TCP,
# TLS and WebSocket). Starts its own `fjord serve` on free loopback ports
# with a throwaway data directory. Run scripts/install-mqtt-tools.sh first.
#
#   scripts/mqtt-clients-check.sh [path/to/fjord]
set -euo pipefail
cd "$(dirname "$0")/.."
fjord=${1:-target/debug/fjord}
[[ -x $fjord ]] || cargo build -q -p fjord
data=$(mktemp -d)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
"$fjord" serve --data-dir "$data/node" --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
    --mqtt-listen 127.0.0.1:0 --mqtt-tls-listen 127.0.0.1:0 --mqtt-ws-listen 127.0.0.1:0 \
    --amqp-listen off --amqp-tls-listen off \
    2>"$data/server.log" &
pid=$!
for _ in $(seq 100); do [[ -s $data/node/listeners.json ]] && break; sleep 0.1; done
port() { python3 -c "import json,sys;print(json.load(open('$data/node/listeners.json'))['$1'].rsplit(':',1)[1])"; }
mqtt=$(port mqtt); tls=$(port mqtt_tls); ws=$(port mqtt_ws); grpc=127.0.0.1:$(port grpc)
cafile=$data/node/mqtt/mqtt-dev-cert.pem
failed=0
check() { # name, expected, actual
    if [[ $2 == "$3" ]]; then echo "ok   $1"; else echo "FAIL $1: expected [$2], got [$3]"; failed=1; fi
}

# mosquitto clients: QoS 0/1/2 through one subscriber (order holds per topic,
# not across topics: the output is sorted).
out=$data/sub.out
timeout 10 mosquitto_sub -p "$mqtt" -t 'check/#' -q 2 -C 3 -v >"$out" & sub=$!
sleep 0.5
for q in 0 1 2; do mosquitto_pub -p "$mqtt" -t "check/q$q" -m "qos$q" -q $q; done
wait $sub || true
check "mosquitto QoS 0/1/2" "check/q0 qos0|check/q1 qos1|check/q2 qos2" "$(sort "$out" | paste -sd'|')"
# Retained, MQTT 5 with a user property, and TLS with the development CA.
mosquitto_pub -p "$mqtt" -t check/retained -m kept -r -q 1 -V mqttv5 -D publish user-property site north
check "mosquitto retained (v5)" "check/retained kept" \
    "$(timeout 5 mosquitto_sub -p "$mqtt" -t check/retained -C 1 -v -V mqttv5)"
check "mosquitto over TLS" "check/retained kept" \
    "$(timeout 5 mosquitto_sub -p "$tls" --cafile "$cafile" -h localhost -t check/retained -C 1 -v)"
# Persistent session: messages published while the subscriber is away.
timeout 5 mosquitto_sub -p "$mqtt" -i keeper -c -q 1 -t 'away/#' -W 1 >/dev/null 2>&1 || true
for i in 1 2 3; do mosquitto_pub -p "$mqtt" -t away/x -m "m$i" -q 1; done
check "mosquitto persistent session" "m1|m2|m3" \
    "$(timeout 5 mosquitto_sub -p "$mqtt" -i keeper -c -q 1 -t 'away/#' -C 3 | paste -sd'|')"
# The log holds what was published.
check "records in the log" "yes" \
    "$("$fjord" consume mqtt --server "$grpc" --from-beginning --print-key | grep -q '^check/q1	qos1$' && echo yes)"

# paho-mqtt: 3.1.1 and 5.0 over TCP and WebSocket, a will, properties.
check "paho-mqtt" "ok" "$(python3 - "$mqtt" "$ws" <<'PY'
import sys, threading, paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes
tcp, ws = int(sys.argv[1]), int(sys.argv[2])
def client(cid, proto, transport="tcp"):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=proto, transport=transport)
    c.got, c.ev = [], threading.Event()
    def on_message(cl, ud, msg):
        c.got.append(msg); c.ev.set()
    c.on_message = on_message
    return c
def run(proto, transport, port):
    sub = client("paho-sub", proto, transport)
    sub.connect("127.0.0.1", port); sub.loop_start()
    sub.subscribe("paho/#", qos=1)[0]
    import time; time.sleep(0.3)
    pub = client("paho-pub", proto, transport)
    pub.connect("127.0.0.1", port); pub.loop_start()
    props = None
    if proto == mqtt.MQTTv5:
        props = Properties(PacketTypes.PUBLISH); props.UserProperty = ("k", "v"); props.ContentType = "text/plain"
    pub.publish("paho/t", b"hello", qos=1, properties=props).wait_for_publish(5)
    assert sub.ev.wait(5), "no message"
    m = sub.got[0]
    assert m.payload == b"hello" and m.topic == "paho/t", m
    if proto == mqtt.MQTTv5:
        assert ("k", "v") in m.properties.UserProperty and m.properties.ContentType == "text/plain"
    # A will, sent when the connection dies without DISCONNECT.
    sub.ev.clear(); sub.got.clear()
    w = client("paho-will", proto, transport)
    w.will_set("paho/will", b"gone", qos=1)
    w.connect("127.0.0.1", port); w.loop_start(); time.sleep(0.3)
    w.loop_stop(); w._sock.close()
    assert sub.ev.wait(10), "no will"
    assert sub.got[0].topic == "paho/will", sub.got[0].topic
    for c in (sub, pub): c.disconnect(); c.loop_stop()
run(mqtt.MQTTv311, "tcp", tcp)
run(mqtt.MQTTv5, "tcp", tcp)
run(mqtt.MQTTv5, "websockets", ws)
print("ok")
PY
)"
exit $failed
