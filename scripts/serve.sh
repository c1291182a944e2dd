#!/usr/bin/env bash
# One ASGI node on port $1: uvicorn (the default) or daphne (CHORUS_ASGI_SERVER=daphne).
# Both serve the same application; docs/BENCHMARKS.md compares them.
# uvicorn declines permessage-deflate, which browsers offer: accepted, it keeps two zlib streams per
# socket (38 KB of an idle socket's memory, measured) and compresses every frame once per socket
# (daphne never accepts it).
set -euo pipefail
port="${1:?usage: scripts/serve.sh PORT}"
bind="${CHORUS_BIND:-127.0.0.1}"
case "${CHORUS_ASGI_SERVER:-uvicorn}" in
  daphne)
    exec daphne -b "$bind" -p "$port" project.asgi:application ;;
  uvicorn)
    exec uvicorn project.asgi:application --host "$bind" --port "$port" \
      --ws websockets-sansio --ws-per-message-deflate false --loop uvloop --no-access-log ;;
  *)
    echo "CHORUS_ASGI_SERVER must be 'daphne' or 'uvicorn', not '${CHORUS_ASGI_SERVER}'" >&2
    exit 2 ;;
esac
