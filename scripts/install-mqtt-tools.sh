#!/usr/bin/env bash
# Installs what the MQTT client checks and the MQTT benchmark use:
# Debian's mosquitto (the broker we compare against) and its command-line
# clients, and the Python paho-mqtt client. The test suite does not need
# them (its MQTT tests use the Rust rumqttc client).
set -euo pipefail
need=()
command -v mosquitto >/dev/null || need+=(mosquitto)
command -v mosquitto_pub >/dev/null || need+=(mosquitto-clients)
if ((${#need[@]})); then
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi
python3 -c 'import paho.mqtt' 2>/dev/null || python3 -m pip install --quiet 'paho-mqtt>=2,<3'
echo "mosquitto $(mosquitto -h 2>/dev/null | head -1 | awk '{print $3}'), paho-mqtt $(python3 -m pip show paho-mqtt 2>/dev/null | awk '/^Version/{print $2}')"
