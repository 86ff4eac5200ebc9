#!/usr/bin/env bash
# The load-test sweep on a GPU host (< 8 minutes): `tsva serve` with ONNX Runtime's CUDA provider
# and large batches, the same sweep as on CPU, plus GPU utilisation sampled by nvidia-smi.
# Needs onnxruntime-gpu in the venv (the CPU wheel has no CUDA provider); PROVIDERS=TensorrtExecutionProvider,...
# adds TensorRT (its engine build takes minutes and is not included in the time budget).
#   benchmarks/gpu_loadtest.sh            # results in runs/gpu-loadtest-<time>/
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
export OUT=${OUT:-runs/gpu-loadtest-$(date +%Y%m%d-%H%M%S)}
PROVIDERS=${PROVIDERS:-CUDAExecutionProvider,CPUExecutionProvider}
mkdir -p "$OUT"
"$VENV/bin/python" - "$PROVIDERS" <<'PY'
import sys, onnxruntime as ort
wanted = sys.argv[1].split(",")[0]
have = ort.get_available_providers()
print("onnxruntime", ort.__version__, "providers:", have)
if wanted not in have:
    sys.exit(f"{wanted} is not available: install onnxruntime-gpu matching the CUDA driver")
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader -l 1 >"$OUT/gpu_util.csv" &
smi=$!
trap 'kill $smi 2>/dev/null || true' EXIT
# 6 levels x (20 s + 10 s warm-up + drain) + start-up: about 4 minutes.
LEVELS=${LEVELS:-1,2,4,8,16,32} DURATION=${DURATION:-20} WARMUP=${WARMUP:-10} WINDOW=${WINDOW:-4} \
SERVE_ARGS="--providers $PROVIDERS --max-batch ${MAX_BATCH:-64} --max-inflight-tiles ${MAX_INFLIGHT:-128} ${SERVE_ARGS:-}" \
  benchmarks/loadtest_sweep.sh
kill $smi 2>/dev/null || true
awk -F', ' '{gsub(/ %/, "", $1); if ($1 > max) max = $1; sum += $1; n++} END {if (n) printf "GPU utilisation: mean %.0f%%, max %.0f%% over %d s\n", sum / n, max, n}' \
  "$OUT/gpu_util.csv" | tee -a "$OUT/gpu.txt"
