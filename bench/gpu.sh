#!/usr/bin/env bash
# All GPU measurements in one run, designed to finish in under 6 minutes on one H100.
#
#   bash bench/gpu.sh                 # results under $OUT (if set) or bench/results/gpu-<stamp>/
#
# Needs only torch, numpy, pyarrow, scipy, accelerate, pyyaml, tqdm, safetensors and this checkout on
# PYTHONPATH (no av, datasets, click or vllm). Every step has its own time limit under a global
# deadline (BENCH_DEADLINE_S, default 330 s) and writes its JSON as soon as it ends, so a step that
# runs out of time loses only itself. Steps, most important first:
#   1. environment (GPU, driver, torch, CPU count)
#   2. synthetic QVHighlights-scale data (7,218 train queries / 7,100 videos, 75 clips x 2,818 dims)
#   3. training step speed, baseline vs MASRA alternating (bf16, batch 32) + phase profile,
#      and inference (batched, single-query latency, val end to end)
#   4. a real Trainer.fit of 2 epochs of MASRA with evaluation every epoch (checkpoints included),
#      projected to 200 epochs
#   5. torch.compile'd training steps (if time is left)
#   6. MASRA at batch 128 (throughput of large batches; if time is left)
# At the end it prints a Markdown table (also in $OUT/gpu_section.md) for docs/benchmarks.md:
#   python -m bench.run --append-docs $OUT/<host>-<stamp>.json
set -uo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
DEADLINE_S=${BENCH_DEADLINE_S:-330}
STAMP=$(date -u +%Y%m%d-%H%M%S)
OUT=${OUT:-bench/results/gpu-$STAMP}
WORK=${BENCH_WORK:-/tmp/masra-bench}
PY=${PYTHON:-python}
DEVICE=${BENCH_DEVICE:-cuda}      # BENCH_DEVICE=cpu BENCH_SCALE=0.01 for a dry run of this script
SCALE=${BENCH_SCALE:-1}
STEPS=${BENCH_STEPS:-40}          # timed steps per variant and round of the main training measurement
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
HOST=$($PY -c 'import socket; print(socket.gethostname())')
RESULT="$HOST-$STAMP.json"
mkdir -p "$OUT" "$WORK"
left() { echo $((DEADLINE_S - ($(date +%s) - T0))); }
step() {  # step NAME MAX_SECONDS CMD...: run CMD with min(MAX, time left) seconds, log to $OUT/NAME.log
    local name=$1 max=$2; shift 2
    local budget; budget=$(left)
    if [ "$budget" -gt "$max" ]; then budget=$max; fi
    if [ "$budget" -lt 20 ]; then echo "== $name: skipped (only $(left) s left)"; return 0; fi
    echo "== $name (limit ${budget}s, $(( $(date +%s) - T0 ))s elapsed)"
    timeout --signal=TERM --kill-after=10 "$budget" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    grep -v -E "it/s|step/s|s/it|chunk" "$OUT/$name.log" | tail -n 4
    echo "== $name: exit $rc"
}

echo "== environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi not available"
nproc; free -g | head -2
$PY - <<'EOF'
import importlib.util, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available() and torch.cuda.get_device_name(0))
need = ["numpy", "pyarrow", "scipy", "accelerate", "yaml", "tqdm", "safetensors"]
missing = [m for m in need if importlib.util.find_spec(m) is None]
print("missing modules:", missing or "none")
EOF

# 2 + 3: data, training steps and inference (bench.run writes <host>-<stamp>.json into $OUT).
step train_infer 200 $PY -m bench.run --dataset qvhighlights --device "$DEVICE" --work "$WORK" \
    --only train,infer --steps "$STEPS" --rounds 2 --warmup 5 --profile-steps 5 --single-queries 50 \
    --synth-scale "$SCALE" --results-dir "$OUT" --result-name "$RESULT" --no-docs
DATA="$WORK/qvh_synth/bench_data.json"

# 4: a real fit of 2 epochs with evaluation every epoch.
if [ -f "$DATA" ]; then
    step fit_masra 110 $PY -m bench.fit_speed --data "$DATA" --variant masra --epochs 2 --eval-every 1 \
        --device "$DEVICE" --json "$OUT/fit_masra.json"
    # 5: torch.compile (compile time is excluded: it happens in the warm-up steps).
    step compile 120 $PY -m bench.train_speed --data "$DATA" --device "$DEVICE" --variants masra --compile only --steps "$STEPS" \
        --rounds 1 --warmup 5 --profile-steps 0 --json "$OUT/train_compile.json"
    # 6: large batches.
    step batch128 60 $PY -m bench.train_speed --data "$DATA" --device "$DEVICE" --variants masra --batch-size 128 \
        --steps 15 --rounds 1 --warmup 3 --profile-steps 0 --json "$OUT/train_batch128.json"
fi

echo "== summary ($(( $(date +%s) - T0 ))s total)"
$PY - "$OUT" "$RESULT" <<'EOF'
import json, os, sys
out, name = sys.argv[1], sys.argv[2]
main = [os.path.join(out, name)] if os.path.exists(os.path.join(out, name)) else []
if main:
    from bench.report import render_markdown
    result = json.load(open(main[-1]))
    extra = {}
    for name in ("fit_masra", "train_compile", "train_batch128"):
        p = os.path.join(out, name + ".json")
        if os.path.exists(p):
            extra[name] = json.load(open(p))
    result["gpu_extra"] = extra
    json.dump(result, open(main[-1], "w"), indent=2)
    text = render_markdown(result)
    open(os.path.join(out, "gpu_section.md"), "w").write(text)
    print(text)
else:
    print("no main result JSON was written; see the logs in", out)
EOF
ls -la "$OUT"
