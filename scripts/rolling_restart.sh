#!/usr/bin/env bash
# Restart every node of `make cluster` one at a time, with nothing lost (docs/OPERATIONS.md,
# "Rolling restart"): each node gets SIGTERM and drains (its sockets reconnect to the others
# through the balancer, resuming after their last event), scripts/node.sh starts it again, and the
# next node goes only once the balancer sends traffic to every node again.
#   CHORUS_NODE_PORTS         the nodes' ports (default: 8001 8002 8003, as `make cluster`)
#   CHORUS_RUN_DIR            where scripts/node.sh writes the pids (default: .run)
#   CHORUS_HAPROXY_STATS_URL  the balancer's stats page (default: http://127.0.0.1:8404/stats)
#   CHORUS_RESTART_TIMEOUT    seconds each step may take before the script gives up (default: 120)
set -euo pipefail
cd "$(dirname "$0")/.."
ports="${CHORUS_NODE_PORTS:-8001 8002 8003}"
run_dir="${CHORUS_RUN_DIR:-.run}"
stats="${CHORUS_HAPROXY_STATS_URL:-http://127.0.0.1:8404/stats}"
timeout="${CHORUS_RESTART_TIMEOUT:-120}"

wait_for() {  # wait_for WHAT COMMAND...: poll until COMMAND succeeds, or fail after $timeout seconds
  local what="$1" deadline=$((SECONDS + timeout))
  shift
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "!! timed out after ${timeout}s waiting for $what" >&2
      exit 1
    fi
    sleep 0.2
  done
}
node_pid() { cat "$run_dir/node-$1.pid" 2>/dev/null; }
gone() { ! kill -0 "$1" 2>/dev/null; }
restarted() {  # a new process answers /readyz on the port
  local pid
  pid="$(node_pid "$1")"
  [ -n "$pid" ] && [ "$pid" != "$2" ] && curl -fs -o /dev/null --max-time 1 "http://127.0.0.1:$1/readyz"
}
balanced() {  # every server of the balancer is UP again (the one restarted included)
  curl -fs --max-time 2 "$stats;csv" | awk -F, '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    $2 != "FRONTEND" && $2 != "BACKEND" { seen++; if ($col["status"] != "UP") down++ }
    END { exit !(seen > 0 && down == 0) }'
}

for port in $ports; do
  pid="$(node_pid "$port")"
  if [ -z "$pid" ] || gone "$pid"; then
    echo "!! no running node on :$port (no pid in $run_dir/node-$port.pid); is \`make cluster\` running?" >&2
    exit 1
  fi
  echo "==> node :$port (pid $pid): draining"
  kill -TERM "$pid"
  wait_for "node :$port to drain and exit" gone "$pid"
  wait_for "node :$port to start again" restarted "$port" "$pid"
  wait_for "the balancer to send traffic to every node again" balanced
  echo "==> node :$port is back (pid $(node_pid "$port"))"
done
echo "==> every node restarted"
