#!/usr/bin/env bash
# HAProxy (Debian's package) for `make cluster` and for the tests that put it in front of nodes:
# installed if it is missing, or clearly reported when this user cannot install it.
set -euo pipefail
command -v haproxy >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "!! HAProxy is not installed: apt-get install haproxy (as root)" >&2
  exit 1
fi
echo "==> installing HAProxy (apt-get)"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null 2>&1 || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
}
