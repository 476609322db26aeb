#!/usr/bin/env bash
# What the next GPU session owes issue #7, in one device call (about 6-8 minutes on one H100):
#   1. the CUDA-only tests: Triton kernels, Gram form, megabatching and the device-side
#      finiteness check of the recorded step (tests/optim/test_fast_paths.py);
#   2. bench/ab_step.py: the fused step as is, megabatched, and megabatched with Triton
#      half-products for the Gram chain (GPT-2 small);
#   3. bench/host_overhead.py: host time per step, now with the device-side check;
#   4. bench/step.py on the GPT-2-small and 1.3B-like sets (the README table).
# Logs and JSON go to $OUT (default runs/gpu-pending); the table of step 4 prints last.
#
#   OUT=$OUT bash bench/gpu_pending.sh       # on the device machine
#   SMOKE=1 bash bench/gpu_pending.sh        # the same steps on CPU on the tiny set (a minute
#                                            # or two): checks the script, not the numbers
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

python -m pytest -q -p no:cacheprovider -k "cuda or CUDA or triton or device_side" \
    tests/polar/test_kernels.py tests/polar/test_gram.py tests/polar/test_msign_many.py \
    tests/optim/test_fast_paths.py > "$OUT/cuda-tests.log" 2>&1
echo "cuda tests: exit $? ($(tail -1 "$OUT/cuda-tests.log"))"

python bench/ab_step.py --set "$SET" --rounds "$ROUNDS" --variants new,megabatch,megabatch+half \
    --out "$OUT" > "$OUT/ab_step.log" 2>&1
echo "ab_step: exit $?"; grep -A3 "^variant" "$OUT/ab_step.log"

python bench/host_overhead.py --set "$SET" --out "$OUT" > "$OUT/host_overhead.log" 2>&1
echo "host_overhead: exit $?"; tail -6 "$OUT/host_overhead.log"

python bench/step.py --sets "$SETS" --out "$OUT" > "$OUT/step.log" 2>&1
echo "step: exit $?"; tail -25 "$OUT/step.log"
