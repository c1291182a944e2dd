#!/usr/bin/env bash
# Set up everything on a fresh machine, then run the whole stack in the foreground (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/venv.sh requirements.txt
# shellcheck disable=SC1091
source .venv/bin/activate
scripts/services.sh || exit 1

if [ -z "${DATABASE_URL:-}" ] && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  export DATABASE_URL="sqlite:///$PWD/chorus.sqlite3"
  echo "!! no PostgreSQL reachable and no DATABASE_URL: using embedded SQLite ($DATABASE_URL)"
fi

scripts/setup.sh

cat <<INFO

  Chorus is starting: two ASGI nodes, a Celery worker and Celery beat.
    demo page   http://127.0.0.1:8000/streams/demo/   (and on the second node: http://127.0.0.1:8001/streams/demo/)
    admin       http://127.0.0.1:8000/admin/
    API docs    http://127.0.0.1:8000/api/docs/        (schema: /api/schema/)
  Press Ctrl-C to stop everything.

INFO
exec honcho start -f Procfile
