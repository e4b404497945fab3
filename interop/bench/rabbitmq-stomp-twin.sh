#!/usr/bin/env bash
# A throw-away RabbitMQ node with rabbitmq_stomp enabled, in the foreground, for the STOMP
# differential tests and stomp_bench.py. It leaves an installed node alone: own node name, ports,
# data and log directories and Erlang cookie (it shares only epmd). Data live in a temporary
# directory removed on exit; SIGTERM/SIGINT stop the node.
#
#   rabbitmq-stomp-twin.sh [AMQP_PORT] [STOMP_PORT]      (defaults: 5790 61790)
#
# Then: AMQP_BROKER_STOMP_ORACLE=127.0.0.1:61790 AMQP_BROKER_STOMP_ORACLE_AMQP=5790 pytest tests/stomp
set -euo pipefail
port=${1:-5790}
stomp_port=${2:-61790}
server=$(command -v rabbitmq-server || true)
[ -n "$server" ] || { echo "rabbitmq-stomp-twin.sh: rabbitmq-server not found" >&2; exit 1; }
# the packaged command is a wrapper that switches user; use the real script
server="$(dirname "$(readlink -f "$server")")/rabbitmq-server"

dir=$(mktemp -d "${TMPDIR:-/tmp}/rabbitmq-stomp-twin.XXXXXX")
printf 'listeners.tcp.default = %s\nstomp.listeners.tcp.1 = %s\nloopback_users = none\n' \
  "$port" "$stomp_port" > "$dir/rabbitmq.conf"
echo '[rabbitmq_stomp].' > "$dir/enabled_plugins"
: > "$dir/rabbitmq-env.conf"

export HOME="$dir" \
  RABBITMQ_NODENAME="stomptwin$port@localhost" \
  RABBITMQ_NODE_PORT="$port" \
  RABBITMQ_DIST_PORT=$((port + 20000)) \
  RABBITMQ_MNESIA_BASE="$dir/mnesia" \
  RABBITMQ_LOG_BASE="$dir/log" \
  RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
  RABBITMQ_CONFIG_FILE="$dir/rabbitmq" \
  RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" \
  RABBITMQ_PID_FILE="$dir/pid"

child=""
stop() {
  [ -n "$child" ] && kill -TERM "$child" 2>/dev/null && wait "$child" 2>/dev/null
  rm -rf "$dir"
  exit 0
}
trap stop TERM INT
"$server" &
child=$!
wait "$child" || true
rm -rf "$dir"
