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

python scripts/ensure_database.py
python manage.py migrate --noinput
python manage.py collectstatic --noinput -v0
python manage.py stream_create demo --title "Demo stream"

if [ -z "${DJANGO_SUPERUSER_USERNAME:-}" ]; then
  export DJANGO_SUPERUSER_USERNAME=admin DJANGO_SUPERUSER_PASSWORD=chorus-admin
  echo "==> no DJANGO_SUPERUSER_USERNAME set: the admin user is admin / chorus-admin (change it!)"
fi
python manage.py createsuperuser --noinput --email "${DJANGO_SUPERUSER_EMAIL:-admin@example.com}" 2>/dev/null \
  || echo "==> admin user ${DJANGO_SUPERUSER_USERNAME} already exists"

cat <<INFO

  Chorus is starting: two ASGI nodes, a Celery worker and Celery beat.
    demo page   http://127.0.0.1:8000/streams/demo/   (and on the second node: http://127.0.0.1:8001/streams/demo/)
    admin       http://127.0.0.1:8000/admin/
    API docs    http://127.0.0.1:8000/api/docs/        (schema: /api/schema/)
  Press Ctrl-C to stop everything.

INFO
exec honcho start -f Procfile
