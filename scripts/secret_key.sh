#!/usr/bin/env bash
# Make sure local runs have a secret key: unless DJANGO_SECRET_KEY is set, write a random one once
# to CHORUS_SECRET_KEY_FILE (default .secret-key in the checkout, git-ignored, readable by its
# owner only), where project/settings/environment.py reads it. Production sets DJANGO_SECRET_KEY.
set -euo pipefail
cd "$(dirname "$0")/.."
file="${CHORUS_SECRET_KEY_FILE:-.secret-key}"
if [ -z "${DJANGO_SECRET_KEY:-}" ] && [ ! -s "$file" ]; then
  (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(50))' > "$file")
  echo "==> generated a secret key in $file (keep it private; in production set DJANGO_SECRET_KEY)"
fi
