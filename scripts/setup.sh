#!/usr/bin/env bash
# Prepare the database named by DATABASE_URL for a local stack: create and migrate it, collect
# static files, create the demo stream and the admin user. Safe to run again (scripts/run.sh runs
# it on every start). Expects the virtualenv's python on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/secret_key.sh
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
