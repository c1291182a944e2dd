#!/usr/bin/env bash
# Make sure the local PostgreSQL and Redis answer; start them if they are installed here but stopped.
# Only services on this machine (127.0.0.1 / localhost) are started; remote ones are just checked.
# Exit status: 0 when Redis answers (PostgreSQL may be missing: the caller decides), 1 otherwise.
set -uo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
rabbit_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
wait_for() { for _ in $(seq 1 50); do "$1" && return 0; sleep 0.2; done; return 1; }

if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "==> starting PostgreSQL"
    for version in $(ls /etc/postgresql); do
      pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
    done
    wait_for pg_up || echo "!! PostgreSQL did not start; see /var/log/postgresql/"
  else
    echo "!! PostgreSQL is not running on 127.0.0.1:5432 and is not installed here."
    echo "   Install it (apt-get install postgresql) or set DATABASE_URL."
  fi
fi

if ! redis_up; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "==> starting Redis"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/chorus.log
    wait_for redis_up || true
  fi
fi
# RabbitMQ is optional for running Chorus (Redis is the default broker) but the test suite runs
# its fault drills against both brokers.
if [ "${CHORUS_NEED_RABBITMQ:-0}" = 1 ] && ! rabbit_up; then
  if command -v rabbitmq-server >/dev/null 2>&1; then
    echo "==> starting RabbitMQ"
    rabbitmq-server -detached >/dev/null 2>&1 || true
    for _ in $(seq 1 150); do rabbit_up && break; sleep 0.2; done
  fi
  rabbit_up || echo "!! RabbitMQ is not running on 127.0.0.1:5672 (apt-get install rabbitmq-server)"
fi

if ! redis_up; then
  echo "!! Redis is not running on 127.0.0.1:6379. Install and start it:"
  echo "   apt-get install redis-server && redis-server --daemonize yes --port 6379"
  exit 1
fi
exit 0
