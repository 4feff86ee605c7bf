#!/usr/bin/env bash
# The GPU check, as a session with a GPU runs it as it is (about 6 minutes on one GPU):
#   scripts/gpu_check.sh [OUT_DIR]       (default: $OUT, else ./gpu-check)
# Writes OUT_DIR/gpu_check.json (every figure), OUT_DIR/gpu_check.log (the table) and
# OUT_DIR/nvidia-smi.txt. Needs the project's Python with torch for CUDA (PYTHON, default
# .venv/bin/python, else python3). Runs: the GPU section of the benchmarks (8-stack step at
# batch 6/16/32 in fp32 and bf16, MFU, bf16-vs-fp32 agreement, checkpoint-kill-restore on the
# GPU, data wait with the real Ray Data stream), then the ingest section (cores per GPU at the
# rate just measured), then the CPU-runnable tests of what the GPU path relies on.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu-check}}"
mkdir -p "$out"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # Ray as shg starts it: token auth, its own defaults
{ date -u; nvidia-smi || echo "nvidia-smi: not found"; } > "$out/nvidia-smi.txt" 2>&1
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())" | tee "$out/torch.txt"
status=0
timeout 420 "$py" -m benchmarks --only gpu ingest --json "$out/gpu_check.json" 2>&1 | tee "$out/gpu_check.log" || status=1
timeout 120 "$py" -m pytest -q -p no:cacheprovider tests/unit/test_targets.py tests/unit/test_resume_units.py \
  tests/unit/test_precision.py tests/unit/test_ray_address.py 2>&1 | tail -3 | tee "$out/tests.log" || status=1
exit $status
