#!/usr/bin/env bash
# The sharded step on one GPU (torch 2.11, triton 3.6, no network; at most about 9 minutes),
# each benchmark under a world-size-1 process group (torchrun --standalone --nproc_per_node 1,
# NCCL):
#   1. bench/dist.py on the GPT-2-small and 1.3B-like sets: the single-process fast path,
#      fused AdamW, the replicated and the FSDP2 sharded step in one process (target: each
#      sharded row within 1.1x of the single process, pipelined); then the links: at W = 1
#      the device copy bandwidth and the degenerate NCCL collectives (no link is used);
#   2. bench/dist_train.py: FSDP2 training of GPT-2 small, steepest.Muon against AdamW in the
#      same run, alternating 100 rounds of 2 steps (target: Muon's tokens/s at least 0.95 of
#      AdamW's);
#   3. the NCCL bus bandwidth over all visible GPUs when there are two or more
#      (bench/dist.py --links-only); with one GPU, BUS_GBPS=... (default 300, an assumption)
#      stands in for it;
#   4. pytest -m cuda on tests/distributed and the stage-1 kernels it uses (fused momentum,
#      row rescale): the sharded fast path on CUDA (compiled, recorded, side stream) against
#      the single-process one;
#   5. bench/dist_model.py: the step predicted at W = 2, 4, 8 from run 1 and the bandwidth;
#   6. unless HOST_ISSUE=0: bench/host_issue.py on GPT-2 small, the host's issue of steps
#      against their pipelined time per layout (whether the sharded step waits for the host);
#   7. if fewer than PROFILE_UNTIL (default 400) s have passed: bench/profile_dist.py --host
#      on GPT-2 small (where the sharded step's kernel and host time go; $OUT/profile_dist.log).
# Logs and JSON go to $OUT (default runs/dist-gpu); a short table is printed last.
#
#   OUT=$OUT bash bench/dist_gpu.sh
#   SMOKE=1 OUT=/tmp/dist-smoke bash bench/dist_gpu.sh   # CPU, gloo, tiny sizes: checks it
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src:$PWD/bench${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-runs/dist-gpu}"
mkdir -p "$OUT"
{
    nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv 2>&1 || true
    python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
} > "$OUT/device.txt" 2>&1
GPUS=$(python -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
if [[ "${SMOKE:-0}" == "1" ]]; then
    SETS=tiny; CONFIG=tiny; STEPS=3; ROUNDS=2; LINKS_W=2; T_DIST=240; T_TRAIN=180; T_TEST=300
else
    SETS=gpt2-small,1.3b; CONFIG=gpt2-small; STEPS=2; ROUNDS=100; LINKS_W=$GPUS
    T_DIST=250; T_TRAIN=140; T_TEST=150
fi
RUN="python -m torch.distributed.run --standalone"

# 1. the step in each layout beside the single process and fused AdamW (each Muon layout
#    compiles its fast path once); the JSON is written after every set
timeout $T_DIST $RUN --nproc_per_node 1 bench/dist.py --sets "$SETS" --out "$OUT" \
    > "$OUT/dist.log" 2>&1
dist_rc=$?

# 2. FSDP2 training throughput, Muon against AdamW
timeout $T_TRAIN $RUN --nproc_per_node 1 bench/dist_train.py --config "$CONFIG" \
    --steps "$STEPS" --rounds "$ROUNDS" --out "$OUT" > "$OUT/dist_train.log" 2>&1
train_rc=$?

# 3. the link bandwidth across GPUs, if there are several
links=""
links_rc=0
if (( LINKS_W >= 2 )); then
    timeout 60 $RUN --nproc_per_node "$LINKS_W" bench/dist.py --links-only --out "$OUT" \
        > "$OUT/dist_links.log" 2>&1
    links_rc=$?
    links=$(ls -t "$OUT"/dist-links-W*.json 2>/dev/null | head -1)
fi

# 4. the CUDA tests of the sharded fast path (on CPU: collected, then skipped)
timeout $T_TEST python -m pytest -q -p no:cacheprovider -m cuda tests/distributed \
    tests/optim/test_fused_momentum.py tests/optim/test_row_scales.py \
    > "$OUT/pytest_cuda.log" 2>&1
test_rc=$?
(( test_rc == 5 )) && test_rc=0  # no test collected: nothing failed

# 5. the model of the step at W GPUs
result=$(ls -t "$OUT"/dist-W1-*.json 2>/dev/null | head -1)
model_rc=1
if [[ -n "$result" ]]; then
    if [[ -n "$links" ]]; then
        bandwidth=(--links "$links")
    else
        bandwidth=(--bus-gbps "${BUS_GBPS:-300}")
    fi
    timeout 60 python bench/dist_model.py "$result" "${bandwidth[@]}" \
        --json "$OUT/dist_model.json" > "$OUT/dist_model.log" 2>&1
    model_rc=$?
fi

# 6. whether each layout's step waits for the host
issue_rc=0
if [[ "${SMOKE:-0}" != "1" && "${HOST_ISSUE:-1}" != "0" ]]; then
    timeout 150 $RUN --nproc_per_node 1 bench/host_issue.py --set "$CONFIG" --out "$OUT" \
        > "$OUT/host_issue.log" 2>&1
    issue_rc=$?
fi

# 7. the kernel table of the sharded step, while the call has time left
if [[ "${SMOKE:-0}" != "1" ]] && (( SECONDS < ${PROFILE_UNTIL:-400} )); then
    timeout 170 $RUN --nproc_per_node 1 bench/profile_dist.py --set "$CONFIG" --host \
        > "$OUT/profile_dist.log" 2>&1
fi

echo "== device"; cat "$OUT/device.txt"
echo "== bench/dist.py (exit $dist_rc): ms isolated, pipelined, pipelined / single process"
sed -n '/^set /,/^links/p' "$OUT/dist.log"
echo "== bench/dist_train.py (exit $train_rc)"
sed -n '/^config /,/^wrote/p' "$OUT/dist_train.log"
echo "== links (exit $links_rc): ${links:-one GPU, none measured; BUS_GBPS=${BUS_GBPS:-300} assumed}"
[[ -n "$links" ]] && grep '^links' "$OUT/dist_links.log"
echo "== pytest -m cuda tests/distributed and stage-1 kernels (exit $test_rc)"
grep -E "^(FAILED|ERROR)" "$OUT/pytest_cuda.log" | head -10
tail -n 1 "$OUT/pytest_cuda.log"
echo "== bench/dist_model.py (exit $model_rc)"
cat "$OUT/dist_model.log" 2>/dev/null
if [[ -f "$OUT/host_issue.log" ]]; then
    echo "== bench/host_issue.py (exit $issue_rc): ms per step, host issue against pipelined"
    sed -n '/^layout /,/^wrote/p' "$OUT/host_issue.log"
fi
if [[ -f "$OUT/profile_dist.log" ]]; then
    echo "== bench/profile_dist.py --host: kernel time per layout"
    grep -E "^gpt2|^tiny|pipelined" "$OUT/profile_dist.log"
fi
exit $(( dist_rc != 0 || train_rc != 0 || links_rc != 0 || test_rc != 0 || model_rc != 0 \
    || issue_rc != 0 ))
