#!/usr/bin/env bash
# Starts the Docker-free local stack with the demo seed on the Supabase ports (API 54321,
# PostgreSQL 54322) and serves until Ctrl-C / SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --stack-only
exec cargo run --quiet -p livechat-stack -- up --seed "$@"
