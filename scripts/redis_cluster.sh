#!/usr/bin/env bash
# A local Redis Cluster: 3 masters with one replica each, in the foreground (Ctrl-C stops it).
#
#   scripts/redis_cluster.sh            ports 7000-7005 on 127.0.0.1, state in .redis-cluster/
#
# Idempotent: servers already answering on the ports are reused (and left running on exit), servers
# with a node file from an earlier run rejoin their cluster, and the cluster is created only when no
# slot is assigned yet. Nothing is kept on disk but the node files (no RDB, no AOF), like the
# development Redis: a restarted cluster starts empty. Settings (environment):
#   REDIS_CLUSTER_PORTS         six ports, masters first (default "7000 7001 7002 7003 7004 7005")
#   REDIS_CLUSTER_HOST          address to bind and announce (default 127.0.0.1)
#   REDIS_CLUSTER_DIR           node files and logs (default .redis-cluster in the checkout)
#   REDIS_CLUSTER_NODE_TIMEOUT  ms before a silent master is failed over (default 2000)
# Chorus then runs with CHORUS_REDIS_CLUSTER=1 REDIS_URL=redis://127.0.0.1:7000/0 and a
# CELERY_BROKER_URL of its own (the broker is never the cluster).
set -euo pipefail
cd "$(dirname "$0")/.."

PORTS=(${REDIS_CLUSTER_PORTS:-7000 7001 7002 7003 7004 7005})
HOST=${REDIS_CLUSTER_HOST:-127.0.0.1}
DIR=${REDIS_CLUSTER_DIR:-$PWD/.redis-cluster}
NODE_TIMEOUT=${REDIS_CLUSTER_NODE_TIMEOUT:-2000}

if [ "${#PORTS[@]}" -ne 6 ]; then
  echo "redis_cluster.sh: REDIS_CLUSTER_PORTS must name six ports (3 masters, 3 replicas)" >&2
  exit 2
fi
for tool in redis-server redis-cli; do
  if ! command -v "$tool" >/dev/null; then
    echo "redis_cluster.sh: $tool not found; install Redis 7 (Debian: apt-get install -y redis-server)" >&2
    exit 1
  fi
done
version=$(redis-server --version | sed -n 's/.*v=\([0-9]*\)\..*/\1/p')
if [ "${version:-0}" -lt 7 ]; then
  echo "redis_cluster.sh: Redis 7 or later is needed (sharded pub/sub); found $(redis-server --version)" >&2
  exit 1
fi
mkdir -p "$DIR"

pong() { [ "$(redis-cli -h "$HOST" -p "$1" PING 2>/dev/null)" = PONG ]; }

started=()
stop() {
  trap - INT TERM EXIT
  if [ "${#started[@]}" -gt 0 ]; then
    kill "${started[@]}" 2>/dev/null || true
    wait "${started[@]}" 2>/dev/null || true
  fi
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

for port in "${PORTS[@]}"; do
  if pong "$port"; then
    if ! redis-cli -h "$HOST" -p "$port" INFO cluster | grep -q cluster_enabled:1; then
      echo "redis_cluster.sh: $HOST:$port answers but is not a cluster node" >&2
      exit 1
    fi
    echo "redis_cluster.sh: reusing the server on $HOST:$port"
    continue
  fi
  mkdir -p "$DIR/$port"
  redis-server --port "$port" --bind "$HOST" --cluster-enabled yes --cluster-config-file nodes.conf \
    --cluster-node-timeout "$NODE_TIMEOUT" --cluster-announce-ip "$HOST" --dir "$DIR/$port" \
    --save "" --appendonly no --logfile "$DIR/$port/redis.log" &
  started+=("$!")
done

for port in "${PORTS[@]}"; do
  for _ in $(seq 100); do pong "$port" && break; sleep 0.1; done
  pong "$port" || { echo "redis_cluster.sh: $HOST:$port did not start; see $DIR/$port/redis.log" >&2; exit 1; }
done

assigned=$(redis-cli -h "$HOST" -p "${PORTS[0]}" CLUSTER INFO | tr -d '\r' | sed -n 's/^cluster_slots_assigned://p')
if [ "${assigned:-0}" = 0 ]; then
  addresses=()
  for port in "${PORTS[@]}"; do addresses+=("$HOST:$port"); done
  redis-cli --cluster create "${addresses[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/create.log"
fi
for _ in $(seq 300); do
  redis-cli -h "$HOST" -p "${PORTS[0]}" CLUSTER INFO | grep -q cluster_state:ok && break
  sleep 0.1
done
if ! redis-cli -h "$HOST" -p "${PORTS[0]}" CLUSTER INFO | grep -q cluster_state:ok; then
  echo "redis_cluster.sh: the cluster did not reach state ok; see $DIR/*/redis.log" >&2
  exit 1
fi
echo "redis_cluster.sh: Redis Cluster ready on $HOST:${PORTS[0]} (${PORTS[*]}); Ctrl-C stops it"

# In the foreground until stopped (a master that dies is failed over; the others keep running).
# With every server reused there is nothing of ours to stop: just wait for the signal.
if [ "${#started[@]}" -eq 0 ]; then
  trap - INT TERM EXIT
  exec sleep infinity
fi
wait "${started[@]}" || true
