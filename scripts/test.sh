#!/usr/bin/env bash
# The test suite: lint, type check, the doctests of the public entry points, then every test
# (unit, real-data on ../shared, headless-browser).
# Installs Debian's chromium for the report's browser test when it is missing and we are root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian's chromium for the browser test ..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
fi
ruff check src tests benchmarks
mypy  # configured in pyproject.toml ([tool.mypy]: strict; what is left for later is listed)
# The Examples sections of the public entry points run as doctests (small sizes, seconds).
DOCTESTS=(
  src/robustmer/attacks/spec.py src/robustmer/attacks/base.py src/robustmer/audio/write.py
  src/robustmer/data/prepare.py src/robustmer/data/synth/__init__.py
  src/robustmer/data/voice/dataset.py
  src/robustmer/models/types.py src/robustmer/train/trainer.py
  src/robustmer/train/early_stopping.py src/robustmer/explain/evaluation/driver.py
  src/robustmer/explain/l2i/pipeline.py src/robustmer/explain/__init__.py
  src/robustmer/evaluate/store.py
)
python -m pytest -q -p no:cacheprovider --doctest-modules "${DOCTESTS[@]}"
python -m pytest "$@"
