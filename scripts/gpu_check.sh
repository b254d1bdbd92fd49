#!/usr/bin/env bash
# Every GPU check in one go, in under 10 minutes on one GPU, into one Markdown report:
#   the `gpu`-marked tests, the project's headline command, a streamed run scored again by eval.py,
#   bf16-mixed precision, `python -m linreg.bench --device cuda` and the scale benchmark
#   (`--scale`: a table generated on the device, its bandwidth share and time to least squares).
#
#   scripts/gpu_check.sh [REPORT]        (default outputs/gpu_check/<time>.md; `make gpu-check`)
#
# PYTHON picks the interpreter (default .venv/bin/python). ACCELERATOR=cpu BENCH_DEVICE=cpu and
# small BENCH_ARGS and SCALE_ARGS try the script itself on a machine without a GPU. Exit status:
# the number of failed steps.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
ACCELERATOR=${ACCELERATOR:-gpu}
BENCH_DEVICE=${BENCH_DEVICE:-cuda}
BENCH_ARGS=${BENCH_ARGS:---repeats 3}
# 5e7 rows x 64 features: 13 GB of float32 on the device (26 GB with the epoch's gathered copy);
# then a 3.4 GB Parquet table of 5e7 rows x 16 features streamed onto it.
SCALE_ARGS=${SCALE_ARGS:---scale-rows 5e7 --features 64 --batch-sizes 8192 65536 --budget 60 --scale-parquet-rows 5e7}
REPORT=${1:-outputs/gpu_check/$(date +%Y-%m-%d_%H-%M-%S).md}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/linreg-gpu-check-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$(dirname "$REPORT")"
failed=0

# step TITLE COMMAND...: runs COMMAND, appends its output, status and time to the report.
step() {
    local title=$1 started=$SECONDS status
    shift
    printf '\n## %s\n\n```\n$ %s\n' "$title" "$*" >>"$REPORT"
    "$@" >>"$REPORT" 2>&1
    status=$?
    printf '```\n%s in %d s\n' "$([ $status -eq 0 ] && echo passed || echo "FAILED (exit $status)")" \
        $((SECONDS - started)) >>"$REPORT"
    echo "$title: exit $status, $((SECONDS - started)) s"
    [ $status -eq 0 ] || failed=$((failed + 1))
}

# figures RUN_DIR: the run's headline numbers from its metrics.json.
figures() {
    "$PY" - "$1" <<'PY'
import json, sys
s = json.load(open(f"{sys.argv[1]}/metrics.json"))
m = s["metrics"]
print(f"test/mse {m['test/mse']:.6f}  least squares {m['reference/test_mse']:.6f}  "
      f"gap {s['test_mse_gap_to_reference']:+.3%}  fit {s['stage_times_s']['fit']:.2f} s  "
      f"wall {s['wall_time_s']:.2f} s  onnx diff {m.get('export/max_abs_diff', float('nan')):.1e}")
PY
}

train() {  # train RUN_DIR OVERRIDES...
    local run_dir=$1
    shift
    "$PY" train.py "$@" trainer.accelerator="$ACCELERATOR" trainer.enable_progress_bar=false \
        hydra.run.dir="$run_dir" >"$run_dir.log" 2>&1 || { tail -n 20 "$run_dir.log"; return 1; }
    figures "$run_dir"
}

# The streamed run's test split, scored again by eval.py on the CPU: the same rows, the same MSE.
streamed_then_eval() {
    train "$WORK/streamed" data.streaming=true data.n_samples=200000 data.batch_size=4096 || return 1
    "$PY" eval.py ckpt_path="$WORK/streamed" hydra.run.dir="$WORK/eval" >"$WORK/eval.log" 2>&1 \
        || { tail -n 20 "$WORK/eval.log"; return 1; }
    "$PY" - "$WORK" <<'PY'
import json, sys
trained = json.load(open(f"{sys.argv[1]}/streamed/metrics.json"))["metrics"]["test/mse"]
scored = json.load(open(f"{sys.argv[1]}/eval/metrics.json"))["metrics"]["test/mse"]
print(f"test/mse on the GPU while training {trained:.6f}, eval.py on the CPU {scored:.6f}")
sys.exit(abs(trained / scored - 1) > 1e-4)
PY
}

{
    echo "# GPU check"
    echo
    "$PY" -c "import torch, lightning
name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device'
print(f'{name}; torch {torch.__version__}, lightning {lightning.__version__}')"
} >"$REPORT" 2>&1

step "GPU-marked tests" "$PY" -m pytest -m gpu -q -p no:cacheprovider
step "python train.py optimizer=adam trainer.accelerator=gpu" train "$WORK/card" optimizer=adam
step "data.streaming=true on the device, then eval.py" streamed_then_eval
step "trainer.precision=bf16-mixed" train "$WORK/bf16" trainer.precision=bf16-mixed
bench() {  # bench ARGS...: the benchmark's table alone; Lightning's chatter goes to a log
    "$PY" -m linreg.bench --device "$BENCH_DEVICE" "$@" --out "$WORK/bench.md" \
        >"$WORK/bench.log" 2>&1 || { tail -n 20 "$WORK/bench.log"; return 1; }
    cat "$WORK/bench.md"
}
# shellcheck disable=SC2086  # BENCH_ARGS and SCALE_ARGS are lists of arguments
step "python -m linreg.bench --device $BENCH_DEVICE $BENCH_ARGS" bench $BENCH_ARGS
# shellcheck disable=SC2086
step "python -m linreg.bench --device $BENCH_DEVICE --scale $SCALE_ARGS" bench --scale $SCALE_ARGS

echo "report: $REPORT ($failed failed)"
exit "$failed"
