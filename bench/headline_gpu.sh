#!/usr/bin/env bash
# The GPU rows of docs/results.md's headline table: shakespeare-char, fairly tuned, 3 seeds.
#
#   STAGE=tune bench/headline_gpu.sh       # on one GPU: tune every optimizer, one after the
#                                          # other; $OUT/<dest>/tuning-<opt>/
#   STAGE=final bench/headline_gpu.sh      # the comparison at the tuned settings, horizons
#                                          # 0.5, 1, 2 x STEPS; $OUT/<dest>/
#   bench/headline_gpu.sh                  # both (longer than one 10-minute device call)
#   SMOKE=1 bench/headline_gpu.sh          # the same commands on CPU at a tiny size (seconds)
#   SIZE_NAME=default bench/headline_gpu.sh  # the task's CPU-sized default GPT instead of the
#                                            # 6 x 384 reference point (the default here)
#
# Tuning: `steepest compare --optimizers OPT --tune --seeds 3 --horizons 1` tunes OPT's lr,
# warmup, beta2 (AdamW-style) and AdamW lr on the tuning seed 3, then trains seeds 0-2. The
# final stage passes the tuned settings on the command line (TUNED=dir reads them from another
# folder's tuning-<opt>/results.json) and adds the horizons 0.5 and 2 x STEPS that give the
# schedule-matched ratio. On one H100 a reference step takes about 18 ms, and tuning one
# optimizer about 5 minutes (Muon: 17 tuning runs and 2 seeds of 800 steps, 323 s). Two tuned
# side by side on one GPU each ran at half speed, so they tune one after the other;
# OPTIMIZERS=muon STAGE=tune keeps one optimizer's tuning inside a 10-minute call. The final
# stage with SEEDS=2 takes about 4 minutes. OPTIMIZERS, STEPS and SEEDS override the defaults.
#
# Writes results.json (every number, the exact command, device and versions), curves.csv,
# loss_vs_step.png, loss_vs_time.png, and the terminal table to table.txt.
set -euo pipefail

cd "$(dirname "$0")/.."
if ! python -c "import steepest" 2>/dev/null; then
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
python -c "import steepest, tqdm, matplotlib" || {
    echo "headline_gpu.sh: steepest, tqdm and matplotlib must be importable" >&2
    exit 2
}

OPTIMIZERS="${OPTIMIZERS:-adamw,muon}"
SEEDS="${SEEDS:-3}"
OUT="${OUT:-runs}"

if [[ "${SMOKE:-0}" == "1" ]]; then
    DEVICE=cpu
    STEPS="${STEPS:-5}"
    SIZE=(--task-option layers=1 --task-option width=16 --task-option heads=2
          --task-option context=16 --task-option batch_size=4 --task-option eval_windows=8
          --eval-every 5 --threads 1)
    DEST="$OUT/headline-shakespeare-smoke"
elif [[ "${SIZE_NAME:-reference}" == "reference" ]]; then
    # the reference point: 6 x 384 char GPT, 256-character context, 32 sequences
    # (8,192 tokens per step), 800 steps, cosine schedule
    DEVICE=cuda
    STEPS="${STEPS:-800}"
    SIZE=(--task-option layers=6 --task-option width=384 --task-option heads=6
          --task-option context=256 --task-option batch_size=32 --task-option eval_windows=128
          --eval-every 50)
    DEST="$OUT/headline-shakespeare-gpu-reference"
else
    DEVICE=cuda
    STEPS="${STEPS:-300}"
    SIZE=()
    DEST="$OUT/headline-shakespeare-gpu"
fi

mkdir -p "$DEST"
TUNED="${TUNED:-$DEST}"
STAGE="${STAGE:-all}"
python - "$DEVICE" <<'EOF2'
import sys, platform, torch
print(f"torch {torch.__version__}, python {platform.python_version()}, "
      f"device {torch.cuda.get_device_name() if sys.argv[1] == 'cuda' else 'cpu'}")
EOF2
COMPARE=(python -c "import sys; from steepest.experiments.cli import main; sys.exit(main())"
         compare --task shakespeare-char --device "$DEVICE" --steps "$STEPS" --no-progress
         "${SIZE[@]}")
start=$(date +%s)
if [[ "$STAGE" == "tune" || "$STAGE" == "all" ]]; then
    for opt in ${OPTIMIZERS//,/ }; do
        "${COMPARE[@]}" --optimizers "$opt" --seeds "$SEEDS" --tune --horizons 1 \
            --out "$DEST/tuning-$opt" > "$DEST/tuning-$opt.log" 2>&1
    done
    for opt in ${OPTIMIZERS//,/ }; do grep -B1 -A4 "^---------" "$DEST/tuning-$opt.log"; done
    echo "headline_gpu.sh: tuning $(( $(date +%s) - start )) s"
fi
if [[ "$STAGE" == "final" || "$STAGE" == "all" ]]; then
    mapfile -t given < <(python - "$TUNED" ${OPTIMIZERS//,/ } <<'EOF2'
import json, sys
folder, names = sys.argv[1], sys.argv[2:]
for name in names:
    chosen = json.load(open(f"{folder}/tuning-{name}/results.json"))["hyperparameters"][name]
    for key, flag in (("lr", "--lr"), ("adamw_lr", "--adamw-lr"), ("warmup", "--warmup"),
                      ("beta2", "--beta2")):
        print(flag)
        print(f"{name}={chosen[key]!r}")
EOF2
)
    "${COMPARE[@]}" --optimizers "$OPTIMIZERS" --seeds "$SEEDS" --horizons 0.5,1,2 \
        "${given[@]}" --out "$DEST" | tee "$DEST/table.txt"
    echo "headline_gpu.sh: $(( $(date +%s) - start )) s; results in $DEST/"
fi
