#!/usr/bin/env bash
# The main command: installs what is missing (scripts/setup.sh), then plays a scripted live-chat
# exchange on the embedded stack with the demo seed: presence, a visitor's conversation assigned
# by the worker, messages with typing indicators, resolution and statistics, printed as a
# transcript; everything (worker, stack, PostgreSQL and its files) is shut down at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --stack-only
exec cargo run --quiet --example demo -- "$@"
