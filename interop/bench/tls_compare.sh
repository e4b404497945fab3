#!/usr/bin/env bash
# AMQPS throughput, our broker vs RabbitMQ, both over TLS and both driven the same way.
#
#   interop/bench/tls_compare.sh [SCENARIOS]        # default "a c"; DURATION=10 ROUNDS=1
#
# The load generator is the C amqp-perf (shared/bench/amqp-perf), which speaks no TLS: each broker
# gets a socat in front of its AMQPS port, doing the client side of TLS (verifying the server
# against the CA), so the generator, the TLS client and its cost are the same for both.
#
#   amqp-perf --port L1 -> socat (TLS client) -> our broker's AMQPS port (tls_port)
#   amqp-perf --port L2 -> socat (TLS client) -> a throw-away RabbitMQ node's listeners.ssl
#
# Both brokers get the same server certificate (a P-256 one from tls = auto's generator, made in a
# temporary directory) and verify_none (no client certificate). The RabbitMQ node is a second,
# throw-away node (own name, ports, data, cookie, as shared/bench/rabbitmq-twin.sh): the installed
# one on 5672 is neither used nor touched. Everything started is stopped at exit.
#
# Scenarios (as shared/bench/scenarios.sh): a = 16 B messages, c = 64 KiB; 1 producer, 1 consumer,
# auto-ack, --max-backlog auto. Prints one line per run, then per scenario the medians of each
# broker's consumed msg/s and of its CPU time per message (broker process, all threads: the figure
# a loaded machine disturbs least), with the ratios ours/RabbitMQ.
#
# Environment: AMQP_PERF (the generator; default: built from shared/bench into a copy under
# /tmp), PYTHON (default: the project's .venv, else python3; needs cryptography, the [tls]
# extra), DURATION (10), ROUNDS (1).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
scenarios=${1:-"a c"}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-1}
PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  if [ -x "$root/.venv/bin/python" ]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi

die() { echo "tls_compare.sh: $*" >&2; exit 1; }
command -v socat >/dev/null || die "socat not found (apt-get install socat)"
server=$(command -v rabbitmq-server || true)
[ -n "$server" ] || die "rabbitmq-server not found"
# The packaged command is a wrapper that switches user; use the real script.
server="$(dirname "$(readlink -f "$server")")/rabbitmq-server"

if [ -z "${AMQP_PERF:-}" ]; then
  bench=/tmp/bench-tls
  if [ ! -x "$bench/amqp-perf/build/amqp-perf" ]; then
    [ -d "$bench" ] || cp -r "$root/../shared/bench" "$bench" 2>/dev/null \
      || cp -r /work/shared/bench "$bench" || die "shared/bench not found: set AMQP_PERF"
    "$bench/amqp-perf/build.sh" >&2
  fi
  AMQP_PERF="$bench/amqp-perf/build/amqp-perf"
fi

# Seven free ports from the OS (a fixed range may hold some other program's ephemeral ports).
read -r ours_amqp ours_tls ours_front rabbit_amqp rabbit_tls rabbit_front rabbit_dist < <("$PYTHON" -c '
import socket
socks = [socket.socket() for _ in range(7)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')
dir=$(mktemp -d "${TMPDIR:-/tmp}/tls-compare.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

# Certificates: the same server certificate for both brokers.
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -c '
import sys
from amqp_broker.server.tls_auto import ensure_auto_files
ensure_auto_files(sys.argv[1], "guest")' "$dir/certs" || die "cannot make certificates (pip install cryptography)"
tls="$dir/certs/tls"

wait_port() { # port, what, [log file shown on failure], [pid that must stay alive]
  # RabbitMQ may take a minute or more to boot on a loaded machine.
  for _ in $(seq 1 1800); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    if [ -n "${4:-}" ] && ! kill -0 "$4" 2>/dev/null; then break; fi  # it died
    sleep 0.1
  done
  [ -n "${3:-}" ] && tail -20 "$3" >&2
  die "$2 did not listen on $1 (its log, if any, is above)"
}

# Our broker, as interop/bench starts it, plus the AMQPS listener.
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m amqp_broker --host 127.0.0.1 \
  --port "$ours_amqp" --tls-port "$ours_tls" --tls-certfile "$tls/server_certificate.pem" \
  --tls-keyfile "$tls/server_key.pem" --tls-verify verify_none --log-level warning \
  --data-dir "$dir/ours" --management-port 0 --prometheus-port 0 --node-name "tlsbench$ours_amqp" \
  2>"$dir/ours.log" &
pids+=($!)
ours_pid=$!

# The throw-away RabbitMQ node with a TLS listener.
mkdir -p "$dir/rabbit"
cat >"$dir/rabbit/rabbitmq.conf" <<EOF
listeners.tcp.default = $rabbit_amqp
listeners.ssl.default = $rabbit_tls
ssl_options.certfile = $tls/server_certificate.pem
ssl_options.keyfile = $tls/server_key.pem
ssl_options.cacertfile = $tls/ca_certificate.pem
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
EOF
echo '[].' >"$dir/rabbit/enabled_plugins"
: >"$dir/rabbit/rabbitmq-env.conf"
(
  cd "$dir/rabbit"  # where a crashing node writes erl_crash.dump
  export HOME="$dir/rabbit" RABBITMQ_NODENAME="tlsbench$rabbit_amqp@localhost" \
    RABBITMQ_NODE_PORT="$rabbit_amqp" RABBITMQ_DIST_PORT="$rabbit_dist" \
    RABBITMQ_MNESIA_BASE="$dir/rabbit/mnesia" RABBITMQ_LOG_BASE="$dir/rabbit/log" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/rabbit/enabled_plugins" \
    RABBITMQ_CONFIG_FILE="$dir/rabbit/rabbitmq" \
    RABBITMQ_CONF_ENV_FILE="$dir/rabbit/rabbitmq-env.conf" RABBITMQ_PID_FILE="$dir/rabbit/pid"
  exec "$server" >"$dir/rabbit.out" 2>&1
) &
pids+=($!)
rabbit_wrapper=$!

wait_port "$ours_amqp" "our broker" "$dir/ours.log" "$ours_pid"
wait_port "$rabbit_amqp" "RabbitMQ" "$dir/rabbit.out" "$rabbit_wrapper"

# The TLS clients: one socat process per connection (fork), TCP_NODELAY both ways, 128 KiB blocks.
front() { # listen port, TLS port
  socat -b 131072 "TCP-LISTEN:$1,bind=127.0.0.1,reuseaddr,fork,nodelay" \
    "OPENSSL:127.0.0.1:$2,cafile=$tls/ca_certificate.pem,commonname=localhost,verify=1,nodelay" &
  pids+=($!)
  wait_port "$1" "socat"
}
front "$ours_front" "$ours_tls"
front "$rabbit_front" "$rabbit_tls"
"$AMQP_PERF" --port "$ours_front" --wait-ready --timeout 30 >/dev/null
"$AMQP_PERF" --port "$rabbit_front" --wait-ready --timeout 120 >/dev/null
# The Erlang VM's pid, for its CPU time (the broker's CPU per message is the figure the machine's
# load disturbs least).
rabbit_pid=$(ss -ltnpH "sport = :$rabbit_tls" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)

field() { sed -n "s/.*\"$1\": *\([0-9.]*\).*/\1/p" | head -1; }
declare -A results cpu
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs (a shared machine: figures are indicative)"
for s in $scenarios; do
  case "$s" in
    a) size=16 ;;
    c) size=65536 ;;
    *) die "unknown scenario $s (a or c)" ;;
  esac
  for round in $(seq 1 "$ROUNDS"); do
    for who in ours rabbitmq; do
      if [ "$who" = ours ]; then port=$ours_front pid=$ours_pid; else port=$rabbit_front pid=$rabbit_pid; fi
      sleep 2
      line=$("$AMQP_PERF" --port "$port" -d "$DURATION" -s "$size" --max-backlog auto \
        --label "tls-$s" --broker "$who" ${pid:+--broker-pid "$pid"})
      r=$(field cons_rate <<<"$line")
      u=$(field broker_us_per_msg <<<"$line")
      echo "scenario $s round $round $who: ${r:-?} msg/s, broker ${u:-?} us/msg"
      results[$s.$who]="${results[$s.$who]:-} $r"
      cpu[$s.$who]="${cpu[$s.$who]:-} $u"
    done
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]; else print 0}'; }
echo
ratio() { awk -v o="$1" -v r="$2" 'BEGIN {if (r > 0) printf "%.2f", o / r; else print "-"}'; }
printf '%-8s %12s %14s %6s %16s %18s %6s\n' scenario "ours msg/s" "rabbitmq msg/s" ratio \
  "ours us/msg" "rabbitmq us/msg" ratio
for s in $scenarios; do
  o=$(median <<<"${results[$s.ours]}")
  r=$(median <<<"${results[$s.rabbitmq]}")
  oc=$(median <<<"${cpu[$s.ours]}")
  rc=$(median <<<"${cpu[$s.rabbitmq]}")
  printf '%-8s %12.0f %14.0f %6s %16.2f %18.2f %6s\n' "tls-$s" "$o" "$r" "$(ratio "$o" "$r")" \
    "$oc" "$rc" "$(ratio "$oc" "$rc")"
done
if grep -qiE 'error|warning' "$dir/ours.log"; then
  echo
  echo "our broker's warnings/errors:"
  grep -iE 'error|warning' "$dir/ours.log" | head -20
fi
