#!/usr/bin/env bash
# Real-data run on the GPU machine (one H200, no network, ≤ 10 minutes per command, results
# only from $OUT: at most 8 files, 16 MiB each, 64 MiB together): DRDC vs its base model on
# magnetic-tile defects at the `fast` preset (224², U-Net width 64). The GPU machine trains
# and writes maps; every metric, table and the HTML report are computed afterwards here, on
# the CPU, from those maps (scripts/realdata_maps.py). See docs/gpu.md.
#
# 1. Here, once:  bash scripts/realdata_gpu.sh prepare
#    Copies the data set into .data/magnetic_tile_defects (git-ignored, never committed) and
#    the ImageNet weights of the backbone stages into .data/cache (the GPU machine has no
#    efficientnet-lite0 package): ~58 MiB, under the 64 MiB that travels. Carry ".data".
# 2. GPU machine, one command (run tool: carry [".data"], timeout_s ≥ REALDATA_BUDGET_S + 60):
#      DRDC_COMMIT=<hash> bash scripts/realdata_gpu.sh gpu
#    Trains (interrupted with SIGINT at its share of the budget; the model is only usable if
#    training finished), runs inference on the 577 test images and packs into $OUT:
#    <name>.tar.gz(.partNN) with the maps (heat mean fp16 + base map, ~40-55 MiB), the
#    checkpoint's config/stats/train report and the log, plus <name>_provenance.json.
# 3. Here:  bash scripts/realdata_gpu.sh report <files_at>
#    Unpacks into runs/<name>/ and writes benchmarks/results/<name>.md / .json /
#    _report.html (base vs DRDC at λ = 0.9 and 0.5, per-defect rows) and _provenance.md.
#
# METHOD=diffusionad (both `gpu` and `report`): DiffusionAD instead (--method diffusionad, preset
# fast: 224², U-Net width 64, segmentation width 64; DAD_UNET_LR / DAD_SEG_LR 1e-3, the CPU recipe's
# short-budget rates); no maps: `drdc ablate` runs there (default pass, then the t_a / t_b / w
# variants while time is left) and its tables, JSON and HTML report are packed;
# name magnetic_tile_gpu_diffusionad_<date>. Never run on a GPU yet.
# METHOD=glad: GLAD the same way (--method glad, preset fast: 224², U-Net width 64, 25 DDIM steps from
# t0 = 650, min_step 350, τ calibrated on the held-out normal images; GLAD_LR 1e-3, the CPU recipe's
# short-budget rate); `drdc ablate` there: default pass, then the τ / t0 / min_step variants while
# time is left; name magnetic_tile_gpu_glad_<date>. Never run on a GPU yet.
#
# Dry run of all three on this CPU (tiny preset, cpu device, a few training steps):
#      bash scripts/realdata_gpu.sh gpu --dry-run && bash scripts/realdata_gpu.sh report build/realdata_out --dry-run
# Settings (environment): REALDATA_BUDGET_S (total seconds of `gpu`, default 420), INFER_RESERVE_S
# (seconds kept for inference and packing, default 120), UNET_ITERS (preset default), BATCH (16),
# OUT (default build/realdata_out), DATE (UTC today), PY (python3), METHOD (drdc | diffusionad | glad).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
START=$SECONDS
DATA="$ROOT/.data/magnetic_tile_defects"
PY=${PY:-python3}
DATE=${DATE:-$(date -u +%Y-%m-%d)}
step=${1:-help}
shift || true
DRY=0
for a in "$@"; do [ "$a" = "--dry-run" ] && DRY=1; done
METHOD=${METHOD:-drdc}
case "$METHOD" in
  drdc) TAG= ;;
  diffusionad) TAG=_diffusionad ;;
  glad) TAG=_glad ;;
  *) echo "METHOD=$METHOD: drdc, diffusionad or glad" >&2; exit 2 ;;
esac
if [ $DRY = 1 ]; then
  PRESET=${PRESET:-tiny}; DEVICE=cpu; NAME=magnetic_tile_gpu${TAG}_${DATE}_dry; UNET_ITERS=${UNET_ITERS:-20}
else
  PRESET=${PRESET:-fast}; DEVICE=${DEVICE:-cuda}; NAME=magnetic_tile_gpu${TAG}_$DATE
fi
RUN=runs/$NAME                       # checkpoint (git-ignored)
BATCH=${BATCH:-16}
BUDGET=${REALDATA_BUDGET_S:-420}
RESERVE=${INFER_RESERVE_S:-120}
PACK_TO=${OUT:-$ROOT/build/realdata_out}
export PYTHONUNBUFFERED=1
# The source checkout is the package: the torch loop needs no compiled code.
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export DRDC_CACHE="$ROOT/.data/cache"

need_data() {
  [ -d "$DATA/magnetic_tile/test" ] || { echo "no data in $DATA: run 'bash scripts/realdata_gpu.sh prepare' here" \
    "and carry .data" >&2; exit 1; }
  [ $DRY = 1 ] || [ -f "$DRDC_CACHE/tf_efficientnet_lite0.safetensors" ] || { echo "no backbone weights in" \
    "$DRDC_CACHE: run 'bash scripts/realdata_gpu.sh prepare' and carry .data" >&2; exit 1; }
}

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
    echo "carry .data on the device call (it is ignored by git)"
    ;;
  gpu)
    need_data
    STAGE=$ROOT/build/realdata_stage
    rm -rf "$STAGE" "$ROOT/$RUN" && mkdir -p "$STAGE" "$PACK_TO"
    LOG=$STAGE/realdata_gpu.log
    STEPS=$STAGE/steps.tsv
    : > "$STEPS"
    left() { echo $((BUDGET - (SECONDS - START))); }
    record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$STEPS"; echo "[realdata] $1: $2 (${3}s)" | tee -a "$LOG"; }
    { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "no nvidia-smi"; } \
      >> "$LOG" 2>&1
    SETS=(--method "$METHOD" --set train.checkpoint_every=100)
    [ -n "${UNET_ITERS:-}" ] && SETS+=(--set "train.unet_iters=$UNET_ITERS")
    if [ "$METHOD" = diffusionad ]; then
      SETS+=(--set "diffusionad.unet_lr=${DAD_UNET_LR:-1e-3}" --set "diffusionad.seg_lr=${DAD_SEG_LR:-1e-3}")
      [ -n "${UNET_ITERS:-}" ] && SETS+=(--set "diffusionad.seg_lr_t_max=$UNET_ITERS")
    fi
    [ "$METHOD" = glad ] && SETS+=(--set "glad.lr=${GLAD_LR:-1e-3}")
    TRAIN_LIMIT=$(($(left) - RESERVE))
    t0=$SECONDS
    # SIGINT: training saves its state and stops; the model is only complete with stats.json
    timeout -s INT -k 20 "$TRAIN_LIMIT" "$PY" -m drdc_trt.cli train --data .data/magnetic_tile_defects \
      --out "$RUN" --preset "$PRESET" --device "$DEVICE" "${SETS[@]}" --quiet >> "$LOG" 2>&1
    rc=$?
    record "train ($PRESET, limit ${TRAIN_LIMIT}s)" "exit $rc" $((SECONDS - t0))
    for f in config.json stats.json train_report.json; do [ -f "$RUN/$f" ] && cp "$RUN/$f" "$STAGE/"; done
    status=0
    if [ -f "$RUN/stats.json" ] && [ "$METHOD" != drdc ]; then
      # the metrics there (a few seconds per pass on 16 cores): the default pass first, written at
      # once; then the method's variants (DiffusionAD t_a / t_b / w, GLAD τ / t0 / min_step), which
      # rewrite the files, while time is left
      LABEL=$([ "$METHOD" = glad ] && echo GLAD || echo DiffusionAD)
      ABLATE=("$PY" -m drdc_trt.cli ablate --model "$RUN" --data .data/magnetic_tile_defects
              --work "runs/${NAME}_ablation" --device "$DEVICE" --results "${STAGE#"$ROOT"/}/$NAME"
              --report "${STAGE#"$ROOT"/}/${NAME}_report.html" --per-type 2 --quiet
              --title "$LABEL on magnetic-tile defects (GPU, preset $PRESET)")
      t0=$SECONDS
      timeout -k 10 $(($(left) - 25)) "${ABLATE[@]}" --only none >> "$LOG" 2>&1
      rc=$?
      record "ablate: default pass" "exit $rc" $((SECONDS - t0))
      [ $rc -eq 0 ] || status=1
      if [ $rc -eq 0 ] && [ "$(left)" -gt 90 ]; then
        t0=$SECONDS
        timeout -k 10 $(($(left) - 25)) "${ABLATE[@]}" >> "$LOG" 2>&1
        record "ablate: $LABEL variants" "exit $?" $((SECONDS - t0))
      fi
    elif [ -f "$RUN/stats.json" ]; then
      t0=$SECONDS
      timeout -k 10 $(($(left) - 25)) "$PY" scripts/realdata_maps.py infer --model "$RUN" \
        --data .data/magnetic_tile_defects --out "$STAGE/maps" --device "$DEVICE" --batch "$BATCH" >> "$LOG" 2>&1
      rc=$?
      record "inference (maps)" "exit $rc" $((SECONDS - t0))
      [ $rc -eq 0 ] || status=1
    else
      record "inference (maps)" "not run: training did not finish (state: $(cat "$RUN/train_state/state.json" \
        2>/dev/null | tr -d '\n' | head -c 200))" 0
      status=3
    fi
    "$PY" -m drdc_trt.gpu_results pack "$STAGE" "$PACK_TO" --name "$NAME" --device "$DEVICE" --steps "$STEPS" \
      --command "bash scripts/realdata_gpu.sh gpu $*" $([ $DRY = 1 ] && echo --dry-run) || status=1
    cat "$STEPS"
    echo "total $((SECONDS - START)) s"
    exit $status
    ;;
  report)
    FROM=${1:?usage: $0 report FILES_AT [--dry-run]}
    need_data
    MAPS=$ROOT/runs/$NAME
    RESULTS_DIR=${RESULTS_DIR:-$([ $DRY = 1 ] && echo build/realdata_dry_results || echo benchmarks/results)}
    mkdir -p "$RESULTS_DIR"
    "$PY" -m drdc_trt.gpu_results unpack "$FROM" --dest "$MAPS" || exit 1
    cp "$MAPS/${NAME}_provenance.md" "$RESULTS_DIR/" 2>/dev/null || true
    if [ "$METHOD" != drdc ]; then  # the tables were made there: copy them
      [ -f "$MAPS/$NAME.md" ] || { echo "$FROM holds no results (see $MAPS/realdata_gpu.log)" >&2; exit 3; }
      cp "$MAPS/$NAME".md "$MAPS/$NAME".json "$MAPS/${NAME}"_report.html "$RESULTS_DIR/"
      cp "$MAPS/${NAME}"_examples_*.png "$RESULTS_DIR/" 2>/dev/null || true
      echo "wrote $RESULTS_DIR/$NAME.md"
      exit 0
    fi
    [ -f "$MAPS/maps/index.json" ] || { echo "$FROM holds no maps (see $MAPS/realdata_gpu.log)" >&2; exit 3; }
    "$PY" scripts/realdata_maps.py report --maps "runs/$NAME/maps" --data .data/magnetic_tile_defects \
      --results "$RESULTS_DIR/$NAME" --provenance "runs/$NAME/${NAME}_provenance.md" \
      --title "DRDC on magnetic-tile defects (GPU, preset $PRESET; metrics on the CPU)"
    ;;
  *)
    sed -n '2,30p' "$0"
    ;;
esac
