#!/usr/bin/env bash
# All GPU measurements in one run, designed to finish in under 6 minutes on one H100.
#
#   bash bench/gpu.sh        # results under $OUT (if set) or bench/results/gpu-<stamp>/
#
# Needs only torch, numpy, pyarrow, scipy, accelerate, pyyaml, tqdm, safetensors and this checkout on
# PYTHONPATH (no av, datasets, click or vllm). Every step runs in its own process with its own time
# limit under a global deadline (BENCH_DEADLINE_S, default 330 s) and writes its JSON as soon as it has
# numbers, so a step that runs out of time loses only itself. Steps, most important first:
#   1. environment (GPU, driver, torch, CPU count, free disk, missing modules, what triton needs)
#   2. synthetic QVHighlights-scale data (7,218 train queries / 7,100 videos, 75 clips x 2,818 dims)
#   3. training step speed, baseline vs MASRA alternating (bf16, batch 32), then a phase profile
#   4. inference: batched, single-query latency, val end to end, per-part forward costs
#   5. a real Trainer.fit of 1 epoch of MASRA with its evaluation + checkpoints, projected to 200 epochs
#   6. MASRA at batch 128 (throughput of large batches)
#   7. ops, GPU kernels and host syncs per training step, baseline vs MASRA (bench/op_count.py)
#   8. torch.compile'd MASRA training steps (compile time is in the warm-up, not in the timings;
#      backend inductor, or BENCH_COMPILE_BACKEND; graph breaks and recompilations in compile.log).
#      Last because its length is the least known: it gets the time left, so it cannot crowd out 6-7.
# It ends by printing a Markdown section (also in $OUT/gpu_section.md) and writing
# $OUT/<host>-<stamp>.json; append the section to the docs with
#   python -m bench.run --append-docs $OUT/<host>-<stamp>.json
# Dry run on a CPU machine: BENCH_DEVICE=cpu BENCH_SCALE=0.005 BENCH_STEPS=2 bash bench/gpu.sh
# (on a CPU every step runs with fewer and smaller batches, in bf16 as on the GPU, and the compile step
# with torch.compile's aot_eager backend, which traces the same graphs without generating kernels: it
# checks the script; its numbers mean nothing).
set -uo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
DEADLINE_S=${BENCH_DEADLINE_S:-330}
STAMP=$(date -u +%Y%m%d-%H%M%S)
OUT=${OUT:-bench/results/gpu-$STAMP}
WORK=${BENCH_WORK:-/tmp/masra-bench}
PY=${PYTHON:-$(command -v python || command -v python3)}
DEVICE=${BENCH_DEVICE:-cuda}
SCALE=${BENCH_SCALE:-1}
STEPS=${BENCH_STEPS:-30}          # timed steps per variant and round of the main training measurement
if [ "$DEVICE" = cpu ]; then      # dry run: see above
    WARMUP=1 PROFILE=1 BATCH=8 BIG_BATCH=16 REPEATS=1 SINGLE=3 OPS_BATCH=4 THREADS=1
    BACKEND=${BENCH_COMPILE_BACKEND:-aot_eager}
else
    WARMUP=5 PROFILE=5 BATCH=32 BIG_BATCH=128 REPEATS=3 SINGLE=50 OPS_BATCH=32 THREADS=0
    BACKEND=${BENCH_COMPILE_BACKEND:-inductor}
fi
DEV=(--device "$DEVICE" --threads "$THREADS" --precision bf16)  # every benchmark step takes these
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
HOST=$($PY -c 'import socket; print(socket.gethostname())')
mkdir -p "$OUT" "$WORK"
left() { echo $((DEADLINE_S - ($(date +%s) - T0))); }
step() {  # step NAME MAX_SECONDS CMD...: run CMD with min(MAX, time left) seconds, log to $OUT/NAME.log
    local name=$1 max=$2; shift 2
    local budget; budget=$(left)
    if [ "$budget" -gt "$max" ]; then budget=$max; fi
    if [ "$budget" -lt 15 ]; then echo "== $name: skipped (only $(left) s left)"; return 0; fi
    echo "== $name (limit ${budget}s, $(( $(date +%s) - T0 ))s elapsed)"
    timeout --signal=TERM --kill-after=5 "$budget" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    grep -v -E "it/s|step/s|s/it|chunk|video/s|query/s" "$OUT/$name.log" | tail -n 3
    echo "== $name: exit $rc ($(( $(date +%s) - T0 ))s elapsed)"
}

echo "== environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi not available"
echo "cpus $(nproc)"; free -g | head -2; df -h "$WORK" | tail -1
# triton builds its kernel launchers with $CC, else gcc, else clang, against Python.h: without them
# the compile step (inductor) fails
echo "C compiler for triton: $( (command -v "${CC:-gcc}" || command -v clang) 2>/dev/null || echo 'none found')"
$PY - <<'EOF'
import importlib.util, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available() and torch.cuda.get_device_name(0))
need = ["numpy", "pyarrow", "scipy", "accelerate", "yaml", "tqdm", "safetensors", "triton"]
print("missing modules:", [m for m in need if importlib.util.find_spec(m) is None] or "none")
import os, sysconfig
print("Python.h:", "found" if os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else "MISSING")
EOF

step data 120 $PY -m bench.run --dataset qvhighlights --only data --work "$WORK" --synth-scale "$SCALE"
DATA="$WORK/qvh_synth/bench_data.json"
if [ -f "$DATA" ]; then
    step train 130 $PY -m bench.train_speed --data "$DATA" "${DEV[@]}" --steps "$STEPS" --rounds 2 \
        --warmup "$WARMUP" --profile-steps "$PROFILE" --batch-size "$BATCH" --json "$OUT/train.json"
    step infer 60 $PY -m bench.infer_speed --data "$DATA" "${DEV[@]}" --repeats "$REPEATS" \
        --single-queries "$SINGLE" --json "$OUT/infer.json"
    step fit_masra 100 $PY -m bench.fit_speed --data "$DATA" --variant masra --epochs 1 --eval-every 1 \
        --batch-size "$BATCH" "${DEV[@]}" --json "$OUT/fit_masra.json"
    step batch128 60 $PY -m bench.train_speed --data "$DATA" "${DEV[@]}" --variants masra \
        --batch-size "$BIG_BATCH" --steps 15 --rounds 1 --warmup "$((WARMUP < 3 ? WARMUP : 3))" \
        --profile-steps 0 --json "$OUT/train_batch128.json"
else
    echo "no benchmark data was written; see $OUT/data.log"
fi
# Needs no benchmark data (one random batch at QVHighlights shapes).
step ops 60 $PY -m bench.op_count "${DEV[@]}" --batch-size "$OPS_BATCH" --json "$OUT/ops.json"
grep -E "^\| [a-z_ /]+ \|" "$OUT/ops.log" 2>/dev/null | grep -v "^| model\|^| criterion\|^| step\|^| weighted" || true
# Last: the step whose length is least known (compilation); it gets whatever time is left, up to 150 s.
if [ -f "$DATA" ]; then
    # graph breaks and recompilations are logged to compile.log (they are also counted in its JSON)
    step compile 150 env TORCH_LOGS=graph_breaks,recompiles $PY -m bench.train_speed --data "$DATA" \
        "${DEV[@]}" --variants masra --compile only --compile-backend "$BACKEND" --steps "$STEPS" \
        --rounds 1 --warmup "$WARMUP" --profile-steps 0 --batch-size "$BATCH" --json "$OUT/train_compile.json"
fi

echo "== summary ($(( $(date +%s) - T0 ))s total)"
$PY -m bench.run --dataset qvhighlights --assemble "$OUT" --results-dir "$OUT" \
    --result-name "$HOST-$STAMP.json" --no-docs | tee "$OUT/gpu_section.md"
ls -la "$OUT"
