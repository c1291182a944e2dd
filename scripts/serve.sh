#!/usr/bin/env bash
# One ASGI node on port $1: uvicorn (the default) or daphne (CHORUS_ASGI_SERVER=daphne).
# Both serve the same application; docs/BENCHMARKS.md compares them.
set -euo pipefail
port="${1:?usage: scripts/serve.sh PORT}"
bind="${CHORUS_BIND:-127.0.0.1}"
case "${CHORUS_ASGI_SERVER:-uvicorn}" in
  daphne)
    exec daphne -b "$bind" -p "$port" project.asgi:application ;;
  uvicorn)
    exec uvicorn project.asgi:application --host "$bind" --port "$port" \
      --ws websockets-sansio --loop uvloop --no-access-log ;;
  *)
    echo "CHORUS_ASGI_SERVER must be 'daphne' or 'uvicorn', not '${CHORUS_ASGI_SERVER}'" >&2
    exit 2 ;;
esac
