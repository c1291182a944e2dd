#!/usr/bin/env bash
# Prepare the database named by DATABASE_URL for a local stack: create and migrate it, collect
# static files, create the demo stream and the admin user. Safe to run again (scripts/run.sh runs
# it on every start). Expects the virtualenv's python on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/secret_key.sh
python scripts/ensure_database.py
python manage.py migrate --noinput
# The live page (streams/<slug>/) runs on the built @chorus/client, served from static files.
if command -v node >/dev/null 2>&1; then
  scripts/js.sh
else
  echo "!! node is not installed: the live page needs clients/js built (Node 20+, then scripts/js.sh)"
fi
python manage.py collectstatic --noinput -v0
python manage.py stream_create demo --title "Demo stream"

# The admin user, created once: DJANGO_SUPERUSER_USERNAME / DJANGO_SUPERUSER_PASSWORD when given,
# otherwise "admin" with a random password printed this once. An existing user is left as it is.
username="${DJANGO_SUPERUSER_USERNAME:-admin}"
password="${DJANGO_SUPERUSER_PASSWORD:-}"
generated=""
if [ -z "$password" ]; then
  password="$(python -c 'import secrets; print(secrets.token_urlsafe(18))')"
  generated=1
fi
if created="$(DJANGO_SUPERUSER_USERNAME="$username" DJANGO_SUPERUSER_PASSWORD="$password" \
    python manage.py createsuperuser --noinput --email "${DJANGO_SUPERUSER_EMAIL:-admin@example.com}" 2>&1)"; then
  if [ -n "$generated" ]; then
    echo "==> created the admin user: $username / $password"
    echo "    (shown only this once: note it, or change it in the admin; DJANGO_SUPERUSER_PASSWORD sets your own)"
  else
    echo "==> created the admin user $username with the password in DJANGO_SUPERUSER_PASSWORD"
  fi
elif grep -q "already taken" <<<"$created"; then
  echo "==> admin user $username already exists (its password is unchanged)"
else
  echo "$created" >&2
  exit 1
fi
