#!/usr/bin/env bash
# What the next GPU session owes issue #7, in parts small enough for one device call each:
#   tests  the CUDA-only tests: Triton symmetric, momentum and finiteness-check kernels, Gram
#          form, and the device-side finiteness check of the recorded step (1-2 min);
#   ab     bench/ab_step.py: the step as is against variants (AB_VARIANTS, default stage 1
#          unfused),
#          GPT-2 small (2-3 min);
#   ops    bench/ops_graph.py: each product inside a CUDA graph (1 min; GPU only);
#   host   bench/host_overhead.py: host time per step, now with the device-side check (1 min);
#   traj   bench/trajectory.py: 100 char-GPT steps per variant: Triton products, Gram form,
#          the fused stage 1 against cuBLAS / unfused (2-4 min);
#   step   bench/step.py on the GPT-2-small and 1.3B-like sets, the README table (5-8 min: call
#          it alone).
# Logs and JSON go to $OUT (default runs/gpu-pending); each part prints a short summary.
#
#   OUT=$OUT bash bench/gpu_pending.sh tests ab ops host   # one device call
#   OUT=$OUT bash bench/gpu_pending.sh traj                # a second one
#   OUT=$OUT bash bench/gpu_pending.sh step                # a third one
#   SMOKE=1 bash bench/gpu_pending.sh tests ab host step   # on CPU, tiny set: checks the script
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src:$PWD/bench${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-runs/gpu-pending}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv > "$OUT/device.txt" 2>&1
if [[ "${SMOKE:-0}" == "1" ]]; then
    SET=tiny; SETS=tiny; ROUNDS=1
else
    SET=gpt2-small; SETS=gpt2-small,1.3b; ROUNDS=5
fi

part_tests() {
    python -m pytest -q -p no:cacheprovider -k "cuda or CUDA or triton or device_side" \
        tests/polar/test_kernels.py tests/polar/test_gram.py \
        tests/optim/test_fast_paths.py tests/optim/test_fused_momentum.py \
        tests/optim/test_finite_check.py \
        > "$OUT/cuda-tests.log" 2>&1
    echo "tests: exit $? ($(tail -1 "$OUT/cuda-tests.log"))"
}

part_ab() {
    python bench/ab_step.py --set "$SET" --rounds "$ROUNDS" --variants "${AB_VARIANTS:-new,unfused stage 1}" \
        --out "$OUT" > "$OUT/ab_step.log" 2>&1
    echo "ab: exit $?"; grep -A6 "^variant" "$OUT/ab_step.log"
}

part_ops() {
    python bench/ops_graph.py --set "$SET" --out "$OUT" > "$OUT/ops_graph.log" 2>&1
    echo "ops: exit $?"; grep "s x s" "$OUT/ops_graph.log"
}

part_host() {
    python bench/host_overhead.py --set "$SET" --out "$OUT" > "$OUT/host_overhead.log" 2>&1
    echo "host: exit $?"; tail -6 "$OUT/host_overhead.log"
}

part_traj() {
    python bench/trajectory.py --steps 100 --out "$OUT" > "$OUT/trajectory.log" 2>&1
    echo "traj: exit $?"; tail -8 "$OUT/trajectory.log"
}

part_step() {
    python bench/step.py --sets "$SETS" --out "$OUT" > "$OUT/step.log" 2>&1
    echo "step: exit $?"; tail -27 "$OUT/step.log"
}

for part in "${@:-tests ab ops host}"; do
    for name in $part; do
        case "$name" in
            tests|ab|ops|host|traj|step) "part_$name" ;;
            *) echo "gpu_pending.sh: unknown part '$name'; use tests, ab, ops, host, traj, step" >&2
               exit 2 ;;
        esac
    done
done
