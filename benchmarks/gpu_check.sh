#!/usr/bin/env bash
# The CUDA check, for a GPU machine without network access or the model wheel (see
# benchmarks/README.md, "On a GPU"). Expects, in the repository root:
#   .whl/  wheels of the packages that machine lacks (transformer-lens and what it imports),
#   .gpu/shape/  hf_config.json + tokenizer/ of the embedded model (from its cache entry),
#   .gpu/data/   sst2/ and boolq/ from shared/data.
# Writes logs and the benchmark's JSON to $OUT (default ./gpu-out).
set -uo pipefail
OUT="${OUT:-gpu-out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import importlib.metadata as m, torch, steerlens; print('torch', torch.__version__, \
'cuda', torch.cuda.is_available(), 'transformer_lens', m.version('transformer-lens'))" || exit 1
echo "== CPU-vs-CUDA tests"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/unit/test_cuda.py 2>&1 \
    | tee "$OUT/test_cuda.log" | tail -25
echo "== the unit suite with the tiny models on CUDA"
STEERLENS_TEST_DEVICE=cuda timeout 200 python3 -m pytest -q -p no:cacheprovider tests/unit \
    --ignore=tests/unit/test_figures.py 2>&1 | tee "$OUT/unit_cuda.log" | tail -40
echo "== benchmark, random weights of the embedded model's shape"
STEERLENS_DATA=.gpu/data timeout 240 python3 benchmarks/run.py --shape-only .gpu/shape \
    --out "$OUT/results-cuda.json" 2>&1 | tee "$OUT/bench.log" | tail -45
