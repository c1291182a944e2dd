#!/usr/bin/env bash
# One ASGI node on port $1: uvicorn (the default) or daphne (CHORUS_ASGI_SERVER=daphne).
# Both serve the same application; docs/BENCHMARKS.md compares them. Under both, SIGTERM drains the
# node first (realtime/drain.py): its sockets are handed to other nodes over CHORUS_DRAIN_SECONDS.
# uvicorn declines permessage-deflate, which browsers offer: accepted, it keeps two zlib streams per
# socket (38 KB of an idle socket's memory, measured) and compresses every frame once per socket
# (daphne never accepts it).
set -euo pipefail
port="${1:?usage: scripts/serve.sh PORT}"
bind="${CHORUS_BIND:-127.0.0.1}"
# Connections the kernel holds for the server before it accepts them. Twisted listens with 50, so
# under a burst daphne's clients timed out connecting; uvicorn's default is 2048 already.
backlog="${CHORUS_LISTEN_BACKLOG:-2048}"
# The largest WebSocket message the server takes from a client, in bytes: a larger one closes the
# socket with 1009 before the consumer sees it (daphne's default is 1 MiB, uvicorn's 16 MiB; the
# consumer refuses frames over CHORUS_WS_MAX_INBOUND_FRAME characters, at most 4 bytes each).
ws_max="${CHORUS_WS_MAX_MESSAGE_BYTES:-16384}"
# Any address but loopback is public: first run Django's deployment checks with ours
# (gateway/checks.py) and refuse to start on an error, e.g. an admin with the old default password.
case "$bind" in
  127.*|localhost|::1|"[::1]") ;;
  *)
    python manage.py check --deploy --database default --fail-level ERROR || {
      echo "refusing to serve on $bind: fix the errors above first (docs/OPERATIONS.md, \"Security\")" >&2
      exit 1
    } ;;
esac
case "${CHORUS_ASGI_SERVER:-uvicorn}" in
  daphne)
    # An endpoint string is the only way to give Twisted a backlog (colons of an IPv6 bind escaped).
    exec daphne -e "tcp:port=${port}:interface=${bind//:/\\:}:backlog=${backlog}" \
      --websocket-max-message-size "$ws_max" --websocket-max-frame-size "$ws_max" project.asgi:application ;;
  uvicorn)
    exec uvicorn project.asgi:application --host "$bind" --port "$port" --backlog "$backlog" \
      --ws websockets-sansio --ws-max-size "$ws_max" --ws-per-message-deflate false --loop uvloop --no-access-log \
      --timeout-graceful-shutdown 3 ;;
  *)
    echo "CHORUS_ASGI_SERVER must be 'daphne' or 'uvicorn', not '${CHORUS_ASGI_SERVER}'" >&2
    exit 2 ;;
esac
