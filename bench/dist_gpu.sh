#!/usr/bin/env bash
# The sharded step on one GPU (torch 2.11, triton 3.6, no network; at most about 9 minutes),
# each run under a world-size-1 process group (torchrun --standalone --nproc_per_node 1, NCCL):
#   1. bench/dist.py on the GPT-2-small and 1.3B-like sets: the single-process fast path, the
#      replicated sharded step and the FSDP2 sharded step, in one process (target: each
#      sharded row within 1.1x of the single process, pipelined), and the device copy
#      bandwidth (at W = 1 the collectives move nothing between GPUs);
#   2. bench/dist_train.py: FSDP2 training of GPT-2 small, steepest.Muon against AdamW
#      (target: Muon's tokens/s at least 0.95 of AdamW's);
#   3. bench/dist_model.py: the step predicted at W = 2, 4, 8 from run 1 (bytes per rank;
#      times once a link bandwidth is given: BUS_GBPS=...).
# Logs and JSON go to $OUT (default runs/dist-gpu); a short table is printed last.
#
#   OUT=$OUT bash bench/dist_gpu.sh
#   SMOKE=1 bash bench/dist_gpu.sh     # on CPU with gloo, the tiny set: checks the script
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src:$PWD/bench${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-runs/dist-gpu}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv > "$OUT/device.txt" 2>&1
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" \
    >> "$OUT/device.txt" 2>&1
if [[ "${SMOKE:-0}" == "1" ]]; then
    SETS=tiny; CONFIG=tiny; STEPS=3
else
    SETS=gpt2-small,1.3b; CONFIG=gpt2-small; STEPS=20
fi
RUN="python -m torch.distributed.run --standalone --nproc_per_node 1"

# 1. the step, three layouts (at most 5.3 minutes: each layout compiles its fast path once)
timeout 320 $RUN bench/dist.py --sets "$SETS" --out "$OUT" > "$OUT/dist.log" 2>&1
dist_rc=$?

# 2. FSDP2 training throughput (at most 3 minutes)
timeout 180 $RUN bench/dist_train.py --config "$CONFIG" --steps "$STEPS" --out "$OUT" \
    > "$OUT/dist_train.log" 2>&1
train_rc=$?

# 3. the model of the step at W GPUs
result=$(ls -t "$OUT"/dist-W1-*.json 2>/dev/null | head -1)
model_rc=1
if [[ -n "$result" ]]; then
    timeout 60 python bench/dist_model.py "$result" ${BUS_GBPS:+--bus-gbps "$BUS_GBPS"} \
        > "$OUT/dist_model.log" 2>&1
    model_rc=$?
fi

echo "== device"; cat "$OUT/device.txt"
echo "== bench/dist.py: exit $dist_rc (ms; isolated, pipelined, pipelined / single process)"
sed -n '/^set /,/^links/p' "$OUT/dist.log"
echo "== bench/dist_train.py: exit $train_rc"
sed -n '/^config /,/^wrote/p' "$OUT/dist_train.log"
echo "== bench/dist_model.py: exit $model_rc"
cat "$OUT/dist_model.log" 2>/dev/null
exit $(( dist_rc != 0 || train_rc != 0 || model_rc != 0 ))
