#!/usr/bin/env bash
# The test suite: lint, then every test (unit, real-data on ../shared, headless-browser).
# Installs Debian's chromium for the report's browser test when it is missing and we are root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian's chromium for the browser test ..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
fi
ruff check src tests benchmarks
python -m pytest "$@"
