#!/usr/bin/env bash
# Real-data quality run on a GPU machine (H100/H200, no network): DRDC vs its base
# model vs the patch-kNN baseline on magnetic-tile defects, preset `fast` (224²,
# U-Net width 64), then the inference ablation (λ post hoc; K, DDIM steps, t0).
# The GPU counterpart of benchmarks/results/magnetic_tile_cpu_2026-11-23.md.
#
# Every step below is one device command that ends well inside 10 minutes and
# resumes from what the previous steps left in ignored folders (runs/), which the
# device machine keeps while it stays warm. If the machine went back in between
# (a fresh, bare one), `train` starts over and the cached ablation pieces are gone.
#
# 1. Here, on the development machine (no GPU), once:
#      bash scripts/realdata_gpu.sh prepare
#    It copies the data set into .data/magnetic_tile_defects (ignored by .gitignore;
#    the data are never added to the repository) and writes the ImageNet weights of
#    the backbone stages the method uses into .data/cache (the device machine has no
#    efficientnet-lite0 package and no network). About 53 MiB: name `.data` in the
#    run tool's `carry` on every call.
# 2. On the device machine, one call each (run tool: carry [".data"]):
#      bash scripts/realdata_gpu.sh train     # resumable; re-run until it says "trained"
#      bash scripts/realdata_gpu.sh eval      # default pass + kNN, writes the result files
#      bash scripts/realdata_gpu.sh ablate diffusion.num_sets
#      bash scripts/realdata_gpu.sh ablate diffusion.num_steps
#      bash scripts/realdata_gpu.sh ablate diffusion.t0
#    Each call rewrites the result files from everything finished so far (variants
#    not yet run are listed as "not run"; scripts/realdata_diagnostics.py appended to
#    the .md) and copies them to $OUT:
#      magnetic_tile_gpu_<date>.md / .json / _examples_<defect>.png, and
#      magnetic_tile_gpu_<date>_report.html (self-contained; if it is over 2 MB,
#      do not commit it — the PNG grids are the commit-sized pictures).
#    Copy them from the run's files_at into benchmarks/results/ here.
#    `bash scripts/realdata_gpu.sh all` runs every step in one go (no time limit).
#
# Settings (environment): DEVICE (cuda), BATCH (16 images per inference batch),
# UNET_ITERS (preset default 2000), DATE (UTC today), PY (python3); for a dry run of
# the script's logic on a CPU: DEVICE=cpu PRESET=tiny RUN=mt_dry NAME=dry RESULTS_DIR=runs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DATA="$ROOT/.data/magnetic_tile_defects"
RUN=${RUN:-mt_gpu}                 # runs/$RUN (checkpoint), runs/${RUN}_ablation (cached pieces)
PRESET=${PRESET:-fast}
MODEL="$ROOT/runs/$RUN"
WORK="$ROOT/runs/${RUN}_ablation"
DATE=${DATE:-$(date -u +%Y-%m-%d)}
NAME=${NAME:-magnetic_tile_gpu_$DATE}
RESULTS_DIR=${RESULTS_DIR:-benchmarks/results}
RESULTS="$ROOT/$RESULTS_DIR/$NAME"
DEVICE=${DEVICE:-cuda}
BATCH=${BATCH:-16}
PY=${PY:-python3}
STEP_LIMIT=${STEP_LIMIT:-540}   # seconds; SIGINT, so training saves its state before it stops
export PYTHONUNBUFFERED=1
# The source checkout is the package (no build needed: the torch loop uses no compiled code).
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export DRDC_CACHE="$ROOT/.data/cache"

TRAIN_SETS=(--set "train.checkpoint_every=100")
[ -n "${UNET_ITERS:-}" ] && TRAIN_SETS+=(--set "train.unet_iters=$UNET_ITERS")
TRAIN_CMD="drdc train --data .data/magnetic_tile_defects --out runs/$RUN --preset $PRESET --device $DEVICE ${TRAIN_SETS[*]}"

drdc() { "$PY" -m drdc_trt.cli "$@"; }
limited() { timeout -s INT "$STEP_LIMIT" "$PY" -m drdc_trt.cli "$@"; }

need_data() {
  [ -d "$DATA/magnetic_tile/test" ] || { echo "no data in $DATA: run 'bash scripts/realdata_gpu.sh prepare' on the" \
    "development machine and carry .data" >&2; exit 1; }
  [ -f "$DRDC_CACHE/tf_efficientnet_lite0.safetensors" ] || { echo "no backbone weights in $DRDC_CACHE:" \
    "run 'bash scripts/realdata_gpu.sh prepare' and carry .data" >&2; exit 1; }
}

need_model() {
  [ -f "$MODEL/stats.json" ] || { echo "no trained model in $MODEL: run 'bash scripts/realdata_gpu.sh train'" \
    "(on this same, still warm machine)" >&2; exit 1; }
}

machine() {
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1 || true
}

ablate() {  # ablate [--only KEY]...: run what is asked, rewrite the result files, copy them to $OUT
  need_data; need_model
  mkdir -p "$(dirname "$RESULTS")"
  limited ablate --model "runs/$RUN" --data .data/magnetic_tile_defects --work "runs/${RUN}_ablation" \
    --results "$RESULTS_DIR/$NAME" --report "runs/${RUN}_ablation/${NAME}_report.html" \
    --device "$DEVICE" --batch-size "$BATCH" --per-type 2 --quiet \
    --title "DRDC on magnetic-tile defects (GPU, preset $PRESET)" \
    --command-line "bash scripts/realdata_gpu.sh prepare   # on the development machine" \
    --command-line "$TRAIN_CMD" \
    --note "GPU: $(machine)" \
    --note "Data: magnetic_tile_defects (see ../shared/data/magnetic_tile_defects/SOURCE.md), carried to the GPU machine as .data/." \
    --note "Ablation one factor at a time around the preset's setting (K=2, 10 steps, t0=250), each variant re-calibrated on the 76 held-out normal training images." \
    "$@"
  # why the diffusion map helps or not (cached default pass + one calibration pass), appended to the .md
  timeout 300 "$PY" scripts/realdata_diagnostics.py --model "runs/$RUN" --work "runs/${RUN}_ablation" \
    --data .data/magnetic_tile_defects --pixel-mean --device "$DEVICE" > "$WORK/diagnostics.md" &&
    { echo; cat "$WORK/diagnostics.md"; } >> "$RESULTS.md" || echo "diagnostics failed (results kept)"
  if [ -n "${OUT:-}" ]; then
    cp "$RESULTS".md "$RESULTS".json "$OUT"/
    cp "$RESULTS"_examples_*.png "$OUT"/ 2>/dev/null || true
    cp "$WORK/${NAME}_report.html" "$OUT"/ 2>/dev/null || true
    echo "copied the result files to \$OUT"
  fi
}

step=${1:-help}
shift || true
case "$step" in
  prepare)
    mkdir -p .data/cache
    SRC=${DRDC_MAGNETIC_TILE:-$ROOT/../shared/data/magnetic_tile_defects}
    [ -d "$SRC/magnetic_tile" ] || { echo "no data set at $SRC (set DRDC_MAGNETIC_TILE)" >&2; exit 1; }
    rm -rf "$DATA" && cp -r "$SRC" "$DATA"
    # Only the backbone stages the method uses (timm features_only, strides 2–16): 12 MB instead of 19.
    "$PY" - <<'EOF'
import os
os.environ.pop("DRDC_CACHE", None)  # read the full weights from the package / the user's cache
from safetensors.torch import save_file
from drdc_trt.config import BackboneConfig, preset
from drdc_trt.models.backbone import Backbone, lite0_package_weights
cfg = preset("fast")
own = Backbone(BackboneConfig(cfg.backbone.name, "none"), cfg.feature_size).net.state_dict()
sd = {k: v.contiguous() for k, v in lite0_package_weights().items() if k in own}
assert len(sd) == len(own), "the package weights do not cover the backbone stages"
save_file(sd, ".data/cache/tf_efficientnet_lite0.safetensors")
print(f"wrote .data/cache/tf_efficientnet_lite0.safetensors ({len(sd)} tensors)")
EOF
    du -sh .data
    echo "carry .data on every device call (it is ignored by git)"
    ;;
  train)
    need_data
    "$PY" -c "import torch; assert torch.cuda.is_available() or '$DEVICE' == 'cpu', 'no CUDA device'"
    if [ -f "$MODEL/stats.json" ]; then echo "trained: $MODEL"; exit 0; fi
    machine
    set +e
    limited train --data .data/magnetic_tile_defects --out "runs/$RUN" --preset "$PRESET" --device "$DEVICE" \
      "${TRAIN_SETS[@]}" --quiet
    rc=$?
    set -e
    if [ -f "$MODEL/stats.json" ]; then
      echo "trained: $MODEL"; cat "$MODEL/train_report.json"
      [ -n "${OUT:-}" ] && cp "$MODEL/train_report.json" "$OUT"/ || true
    else
      echo "training stopped at the step limit (exit $rc); state: $(cat "$MODEL/train_state/state.json" 2>/dev/null)"
      echo "run 'bash scripts/realdata_gpu.sh train' again to resume"
      exit 3
    fi
    ;;
  eval)
    # default pass (base, DRDC, λ post hoc) + kNN; no variant runs in this call
    ablate --only none
    ;;
  ablate)
    [ $# -ge 1 ] || { echo "usage: $0 ablate KEY [KEY...] (diffusion.num_sets, diffusion.num_steps, diffusion.t0)" >&2; exit 2; }
    args=()
    for k in "$@"; do args+=(--only "$k"); done
    ablate "${args[@]}"
    ;;
  all)
    STEP_LIMIT=100000 "$0" train
    STEP_LIMIT=100000
    ablate
    ;;
  *)
    sed -n '2,36p' "$0"
    ;;
esac
