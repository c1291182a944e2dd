#!/usr/bin/env bash
# The browser test drives Debian's Chromium through Playwright; install it if it is missing.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "!! /usr/bin/chromium is missing: install Debian's chromium package (apt-get install chromium)"
  exit 1
fi
echo "==> installing chromium (apt-get)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
