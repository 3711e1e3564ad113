#!/usr/bin/env bash
# Run the whole test suite (and print the 15 slowest tests; `-m 'not slow'`: the quick loop). Installs what it needs: the venv, redis-server, nginx, PostgreSQL,
# chromium and fonts-noto-cjk (Debian packages); the tests start and stop their own servers on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)  # tests/test_nginx.py
[ -x /usr/bin/chromium ] || missing+=(chromium)  # tests/test_browser.py (Playwright, no download)
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || missing+=(fonts-noto-cjk)  # the pages' Chinese glyphs
if ! command -v pg_config >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (apt-get)"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi
scripts/setup.sh test
.venv/bin/ruff check .
.venv/bin/ruff format --check . >/dev/null || { .venv/bin/ruff format --diff . | head -40; exit 1; }
.venv/bin/bandit -q -c pyproject.toml -r wxbackend handlers models
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 "$@"
