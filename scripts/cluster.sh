#!/usr/bin/env bash
# `make cluster`: the whole stack as it runs in production, on one machine, in the foreground
# (Ctrl-C stops everything): HAProxy on port 8000 in front of three ASGI nodes (8001-8003), a Celery
# worker and beat, and a local Redis Cluster (ports 7000-7005) when scripts/redis_cluster.sh is
# there. scripts/rolling_restart.sh restarts the nodes one at a time. Ports: docs/OPERATIONS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/venv.sh requirements.txt
# shellcheck disable=SC1091
source .venv/bin/activate
scripts/services.sh || exit 1

scripts/haproxy.sh || { echo "!! then run make cluster again" >&2; exit 1; }

if [ -z "${DATABASE_URL:-}" ] && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "!! make cluster needs PostgreSQL (three nodes and a worker share it): start it or set DATABASE_URL" >&2
  exit 1
fi

processes=(lb web1 web2 web3 worker beat)
if [ -x scripts/redis_cluster.sh ]; then
  # The Redis Cluster runs as one more process of the stack (scripts/redis_cluster.sh, in the
  # foreground); every node, worker and limiter uses it (the Celery broker keeps CELERY_BROKER_URL).
  export CHORUS_REDIS_CLUSTER=1
  export CELERY_BROKER_URL="${CELERY_BROKER_URL:-${REDIS_URL:-redis://127.0.0.1:6379/0}}"
  export REDIS_URL="redis://127.0.0.1:7000/0"
  processes+=(redis)
  redis_note="Redis Cluster  127.0.0.1:7000-7005 (3 masters, 3 replicas)"
else
  redis_note="Redis          ${REDIS_URL:-redis://127.0.0.1:6379/0} (single Redis: no scripts/redis_cluster.sh here)"
  echo "!! no Redis Cluster support in this checkout (scripts/redis_cluster.sh): using the single Redis"
fi

scripts/setup.sh

export CHORUS_PUBLIC_BIND="${CHORUS_PUBLIC_BIND:-127.0.0.1:8000}"
export CHORUS_NODE1="127.0.0.1:8001" CHORUS_NODE2="127.0.0.1:8002" CHORUS_NODE3="127.0.0.1:8003"
export CHORUS_HAPROXY_STATS_BIND="${CHORUS_HAPROXY_STATS_BIND:-127.0.0.1:8404}"
# Discovery hands out the balancer's address, not a node's.
export CHORUS_PUBLIC_WS_URL="${CHORUS_PUBLIC_WS_URL:-ws://$CHORUS_PUBLIC_BIND}"
haproxy -c -f deploy/haproxy/chorus.cfg >/dev/null

cat <<INFO

  Chorus is starting behind HAProxy: three ASGI nodes, a Celery worker and Celery beat.
    public         http://$CHORUS_PUBLIC_BIND/streams/demo/   (HAProxy; the only address clients need)
    nodes          127.0.0.1:8001, :8002, :8003               (health: /readyz, /livez)
    balancer stats http://$CHORUS_HAPROXY_STATS_BIND/stats
    $redis_note
  Rolling restart, one node at a time, nothing lost:  scripts/rolling_restart.sh
  Press Ctrl-C to stop everything.

INFO
exec honcho start -f Procfile.cluster "${processes[@]}"
