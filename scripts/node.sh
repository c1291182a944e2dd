#!/usr/bin/env bash
# One ASGI node on port $1 that comes back after it exits: `make cluster` runs three, and
# scripts/rolling_restart.sh restarts them one at a time by sending SIGTERM to the pid this script
# writes to $CHORUS_RUN_DIR/node-$1.pid (the node drains, exits, and is started again here).
# SIGTERM or SIGINT to this script stops the node for good.
set -uo pipefail
cd "$(dirname "$0")/.."
port="${1:?usage: scripts/node.sh PORT}"
run_dir="${CHORUS_RUN_DIR:-.run}"
mkdir -p "$run_dir"
pidfile="$run_dir/node-$port.pid"
stopping=0
pid=""
stop() {
  stopping=1
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
}
trap stop TERM INT
while :; do
  started=$SECONDS
  scripts/serve.sh "$port" &
  pid=$!
  echo "$pid" >"$pidfile.tmp" && mv "$pidfile.tmp" "$pidfile"
  # `wait` returns early when a trapped signal arrives: wait again until the node has exited.
  while kill -0 "$pid" 2>/dev/null; do wait "$pid"; done
  if [ "$stopping" = 1 ]; then
    rm -f "$pidfile"
    exit 0
  fi
  echo "node :$port exited; starting it again"
  # A node that keeps failing at startup is retried every 2 s, not in a tight loop.
  if [ $((SECONDS - started)) -lt 5 ]; then sleep 2; fi
done
