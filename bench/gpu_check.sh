#!/usr/bin/env bash
# The GPU check of one H100 (torch 2.11, triton 3.6, no network; about 6-8 minutes):
#   1. pytest -m cuda: every GPU-only test (Triton kernels, the fused stage 1, the device-side
#      check, the recorded and compiled step against eager, the default fast path);
#   2. bench/step.py on the GPT-2-small and 1.3B-like sets: the default steepest.Muon(params)
#      against the explicit fast path (compile=True, cuda_graph=True) and the eager step, with
#      torch.optim.Muon and fused AdamW side by side.
# Logs and JSON go to $OUT (default runs/gpu-check); a short table is printed last.
#
#   OUT=$OUT bash bench/gpu_check.sh
#   SMOKE=1 bash bench/gpu_check.sh     # on CPU, the tiny set: checks the script itself
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src:$PWD/bench${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-runs/gpu-check}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv > "$OUT/device.txt" 2>&1
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" \
    >> "$OUT/device.txt" 2>&1
if [[ "${SMOKE:-0}" == "1" ]]; then
    SETS=tiny; TESTS="tests/optim/test_fast_paths.py"
else
    SETS=gpt2-small,1.3b; TESTS="tests"
fi

# 1. the GPU-only tests (at most 3.5 minutes)
timeout 210 python -m pytest -q -p no:cacheprovider -m cuda $TESTS > "$OUT/cuda-tests.log" 2>&1
tests_rc=$?

# 2. the step table (at most 5 minutes; each set compiles its fast path once)
timeout 300 python bench/step.py --sets "$SETS" --rows "default,fast path,eager" --out "$OUT" \
    > "$OUT/step.log" 2>&1
step_rc=$?

echo "== device"; cat "$OUT/device.txt"
echo "== pytest -m cuda: exit $tests_rc: $(tail -1 "$OUT/cuda-tests.log")"
grep -E "^(FAILED|ERROR)" "$OUT/cuda-tests.log" | head -20
echo "== bench/step.py: exit $step_rc (ms; isolated / pipelined)"
python - "$OUT" <<'EOF'
import json, pathlib, sys

files = sorted(pathlib.Path(sys.argv[1]).glob("step-*.json"))
if not files:
    sys.exit("no step result")
for s in json.loads(files[-1].read_text())["sets"]:
    print(f"-- {s['set']} ({s['matrices']} matrices)")
    for row, ms in s["ms"].items():
        print(f"{row:20s} {ms:9.3f} {s['pipelined_ms'][row]:9.3f}")
    piped = s["pipelined_ms"]
    if "default" in piped and "fast path" in piped:
        print(f"default / fast path (pipelined): {piped['default'] / piped['fast path']:.3f}")
    print(f"paths of the default: {s['paths'].get('default')}")
EOF
exit $(( tests_rc != 0 || step_rc != 0 ))
