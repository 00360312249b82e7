#!/usr/bin/env bash
# The gate CI runs after scripts/setup.sh, in order, stopping at the first failure: lint, format,
# types, then the tests (the package's doctests, unit, integration; annotations checked at run
# time, see pyproject.toml), then the backend and architecture tests again on TransformerLens 4
# (`.venv-tl4`, made by setup.sh). The tools run as modules of the Python that setup.sh installed
# them into (`ruff check .` is `python3 -m ruff check .`), so no console-script shim is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

step() {
    echo "steerlens check: $*"
    "$PY" -m "$@"
}

step ruff check .
step ruff format --check .
step mypy steerlens
step pytest -q
# The backend and architecture tests again on TransformerLens 4 (the environment setup.sh makes).
echo "steerlens check: the same backend tests on TransformerLens 4"
.venv-tl4/bin/python -m pytest -q -p no:cacheprovider tests/unit/test_backends.py \
    tests/unit/test_architectures.py
