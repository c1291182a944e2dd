#!/usr/bin/env bash
# The JavaScript client (clients/js): install its pinned build tools (npm ci, again only when the
# lock file changed), build it (again only when its sources changed), and check its size budget
# (the measured size is printed).
set -euo pipefail
cd "$(dirname "$0")/../clients/js"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "!! node and npm (Node 20 or later) are needed to build and test clients/js"
  exit 1
fi
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "!! clients/js needs Node 20 or later (found $(node --version))"
  exit 1
fi
stamp=node_modules/.installed-package-lock
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
  echo "==> npm ci (clients/js)"
  npm ci --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi
# Built already and nothing it is built from changed since: keep it (scripts/setup.sh calls this on
# every `make run`).
built=dist/esm/index.js
if [ -f "$built" ] && [ -f dist/chorus-client.min.js ] && \
   [ -z "$(find src scripts/build.mjs package-lock.json tsconfig.json -newer "$built" -print -quit)" ]; then
  echo "==> clients/js/dist is up to date"
else
  npm run --silent build
fi
npm run --silent size
