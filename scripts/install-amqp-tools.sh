#!/usr/bin/env bash
# Installs what the AMQP client checks and the AMQP benchmark use: Debian's
# rabbitmq-server (the broker we compare against) and the Python clients
# pika and kombu. The test suite does not need them.
#
# The benchmark starts a private RabbitMQ node of its own (own ports, data
# directory and node name), so no system RabbitMQ is left running: the
# package's service is kept from starting during the install (policy-rc.d),
# stopped if it runs anyway, and disabled at boot. Safe to run again.
set -euo pipefail
sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"

if ! dpkg-query -W -f='${Status}' rabbitmq-server 2>/dev/null | grep -q 'install ok installed'; then
    # invoke-rc.d asks /usr/sbin/policy-rc.d whether a package may start its
    # service; exit 101 means no. Keep an existing policy, else add one for
    # the length of the install.
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod 755 "$policy"
        trap '$sudo rm -f "$policy"' EXIT
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends rabbitmq-server
    echo "installed rabbitmq-server"
else
    echo "rabbitmq-server already installed"
fi

# Stop and disable the system service if it was started or is enabled.
# (Not `service rabbitmq-server status`: that runs rabbitmqctl, whose Erlang
# VM leaves an epmd daemon behind.)
if [[ -d /run/systemd/system ]]; then
    $sudo systemctl disable --now rabbitmq-server.service >/dev/null 2>&1 || true
elif [[ -x /etc/init.d/rabbitmq-server ]]; then
    if pgrep -u rabbitmq -x beam.smp >/dev/null; then
        $sudo service rabbitmq-server stop >/dev/null
        echo "stopped the system rabbitmq-server service"
    fi
    $sudo update-rc.d rabbitmq-server disable >/dev/null 2>&1 || true
fi

for module in pika kombu; do
    if python3 -c "import $module" 2>/dev/null; then
        echo "$module already installed"
    else
        case $module in
            pika) spec='pika>=1.3,<2' ;;
            kombu) spec='kombu>=5.3,<6' ;;
        esac
        python3 -m pip install --quiet "$spec"
        echo "installed $module"
    fi
done

version() { python3 -m pip show "$1" 2>/dev/null | awk '/^Version/{print $2}'; }
echo "rabbitmq-server $(dpkg-query -W -f='${Version}' rabbitmq-server)," \
    "pika $(version pika), kombu $(version kombu)"
