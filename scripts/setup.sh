#!/usr/bin/env bash
# Installs what the stack and the tests need on a fresh Debian machine, when missing:
# PostgreSQL server binaries with the wal2json plugin (apt), and the interop tests' npm packages
# (from tests/interop/package-lock.json). Idempotent and quiet when everything is there.
# `--stack-only` installs only what the stack needs (no Node.js packages).
set -euo pipefail
stack_only=false
[ "${1:-}" = "--stack-only" ] && stack_only=true
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

if ! ls /usr/lib/postgresql/*/lib/wal2json.so >/dev/null 2>&1; then
  echo "setup: installing PostgreSQL and wal2json (apt)" >&2
  as_root apt-get update -qq
  ver=$(apt-cache depends postgresql 2>/dev/null | sed -n 's/.*Depends: postgresql-\([0-9][0-9]*\)$/\1/p' | head -n 1)
  ver=${ver:-15}
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    "postgresql-$ver" "postgresql-$ver-wal2json" >/dev/null
fi

if $stack_only; then
  exit 0
fi

if ! command -v node >/dev/null 2>&1; then
  echo "setup: Node.js is required for the interop tests (apt-get install nodejs npm)" >&2
  exit 1
fi

lock=tests/interop/package-lock.json
stamp=tests/interop/node_modules/.livechat-lock
if [ ! -f "$stamp" ] || ! cmp -s "$lock" "$stamp"; then
  echo "setup: installing the interop tests' npm packages (npm ci)" >&2
  (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error)
  cp "$lock" "$stamp"
fi
