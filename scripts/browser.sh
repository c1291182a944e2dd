#!/usr/bin/env bash
# The browser tests drive Debian's Chromium through Playwright; install it if it is missing, and
# a colour emoji font (the live page's reactions are emoji; its screenshots are taken in the tests).
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || missing+=(fonts-noto-color-emoji)
if [ "${#missing[@]}" = 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "!! missing Debian packages for the browser tests: ${missing[*]} (apt-get install ${missing[*]})"
  exit 1
fi
echo "==> installing ${missing[*]} (apt-get)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
