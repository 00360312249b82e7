#!/usr/bin/env bash
# The gate CI runs after scripts/setup.sh, in order, stopping at the first failure: lint, format,
# types, then the tests (the package's doctests, unit, integration; annotations checked at run
# time, see pyproject.toml) and, beside them, the model-facing unit tests on TransformerLens 4
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
# The model-facing unit tests again on TransformerLens 4 (the environment setup.sh makes): loading,
# sites, collection, masks, steering, evaluation, sweeps, tuning, generation, released modes. They
# run beside the main suite, whose unit tests use one core of two; the output follows it.
# STEERLENS_TL4=all runs the whole unit suite there instead (about 3 more minutes).
TL4_TESTS=(tests/unit/test_backends.py tests/unit/test_architectures.py tests/unit/test_steer.py
    tests/unit/test_evaluate.py tests/unit/test_sweep.py tests/unit/test_tune.py
    tests/unit/test_generate.py tests/unit/test_collect.py tests/unit/test_sites.py
    tests/unit/test_released.py tests/unit/test_methods.py tests/unit/test_mask.py
    tests/unit/test_select.py tests/unit/test_iti.py)
if [ "${STEERLENS_TL4:-}" = "all" ]; then
    TL4_TESTS=(tests/unit)
fi
TL4_LOG="$(mktemp)"
.venv-tl4/bin/python -m pytest -q -p no:cacheprovider "${TL4_TESTS[@]}" >"$TL4_LOG" 2>&1 &
TL4_PID=$!
main=0
step pytest -q || main=$?
tl4=0
wait "$TL4_PID" || tl4=$?
echo "steerlens check: the model-facing unit tests on TransformerLens 4"
cat "$TL4_LOG"
rm -f "$TL4_LOG"
if [ "$main" -ne 0 ] || [ "$tl4" -ne 0 ]; then
    exit 1
fi
