#!/usr/bin/env bash
# Run the server on the embedded defaults: SQLite in ./data, in-process Redis, WeChat sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/wxbackend serve "$@"
