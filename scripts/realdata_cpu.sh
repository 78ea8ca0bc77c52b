#!/usr/bin/env bash
# Real-data quality run on a CPU machine (2 cores, no GPU): DRDC vs its base model
# vs the patch-kNN baseline on magnetic-tile defects with the CPU recipe —
# preset `small` (64², U-Net width 32, channel_mult (1,2,2), 32² training crops,
# 1200 U-Net iterations with the min-SNR-5 loss weight and an EMA of the U-Net weights,
# 5 DDIM steps, the diffusion map normalised per pixel, λ and the heat normalisation
# chosen on held-out normal images with synthetic anomalies) —
# then the inference ablation (λ post hoc; heat normalisation, per-pixel vs global
# normalisation, border margin; K, DDIM steps, t0, grid cell sizes on request)
# on that one model, with the border / lighting diagnostics.
# The CPU counterpart of scripts/realdata_gpu.sh.
#
#   bash scripts/realdata_cpu.sh [train|eval|ablate KEY...|seed N...|seeds|diffusionad|glad|all]   (default: all)
#
# `glad` trains GLAD (--method glad, preset small, 64²) for about DRDC's CPU training minutes
# (GLAD_ITERS=2400 iterations at ~0.3 s each on one thread ≈ 12 min; lr GLAD_LR=1e-3, a CPU-recipe
# choice as for DiffusionAD), then `drdc ablate` on the test split: its default pass and the τ / t0
# / min_step variants (τ re-calibrated on the held-out normal images for each), beside the DRDC
# model (runs/$DRDC_RUN: DRDC, base, kNN) and the DiffusionAD model (runs/$DAD_RUN) from their caches.
# Settings: GLAD_RUN (mt_glad), GLAD_ITERS (2400), GLAD_LR (1e-3), GLAD_NAME (magnetic_tile_cpu_glad_$DATE).
#
# `diffusionad` trains DiffusionAD (--method diffusionad, preset small, 64²) for about the
# CPU minutes DRDC's training takes (DAD_ITERS=300 joint iterations at ~2.5 s each on one
# thread ≈ DRDC's 751 s), then evaluates it on the test split beside the DRDC model in
# runs/$DRDC_RUN (DRDC, base, kNN rows: drdc ablate --compare-model, read from the cache of
# that model's own ablate run in runs/$DRDC_WORK; without it they cost ~27 min more), plus the
# t_a / t_b / w variants. CPU-recipe choice: U-Net and segmentation lr 1e-3 (the preset's
# 1e-4 / 1e-5 move the focal loss by ~7 % in 40 iterations, 1e-3 by ~77 %; a 300-iteration
# budget needs the larger steps). Here: training 12 CPU min (23 wall min, CPU shared), test
# pass + 7 variants ~5 min.
#
# `seed N` trains and evaluates one more model with training and detector seed N
# (~25 min each); `seeds` writes the headline rows' mean ± std over seed 0 and those.
# `ablate KEY...` runs the variants of those factors only (fusion.heat_norm,
# fusion.diff_norm, diffusion.margin by default; diffusion.num_sets, .num_steps, .t0,
# .grid_sizes with FACTORS=all).
#
# Every step resumes: training from runs/$RUN/train_state, inference passes from
# the chunks cached in runs/${RUN}_ablation; interrupt and re-run at will.
# On this machine kind (one thread per job, the other core busy): training ~15 min,
# the default pass + kNN ~10-17 min, K=4 ~27 min, steps=10 ~35 min, steps=20 ~65 min, each t0 or
# grid variant ~13-17 min.
#
# Settings (environment): DRDC_MAGNETIC_TILE (the data set; default
# ../shared/data/magnetic_tile_defects), RUN (mt_cpu), UNET_ITERS (1200),
# DATE (UTC today), NAME (magnetic_tile_cpu_v2_$DATE), THREADS (1), PY (python3),
# LAMS (post-hoc λ values, 0,0.25,0.5,0.75,0.9,1), FACTORS (new | all); for `diffusionad`:
# DAD_RUN (mt_dad), DAD_ITERS (300), DAD_UNET_LR (1e-3), DAD_SEG_LR (1e-3), DRDC_RUN (mt_v2_s0_cal),
# DRDC_WORK (mt_v2_s0_ablation), DAD_NAME (magnetic_tile_cpu_diffusionad_$DATE).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DRDC_MAGNETIC_TILE:-../shared/data/magnetic_tile_defects}
RUN=${RUN:-mt_cpu}
UNET_ITERS=${UNET_ITERS:-1200}
DATE=${DATE:-$(date -u +%Y-%m-%d)}
NAME=${NAME:-magnetic_tile_cpu_v2_$DATE}
PY=${PY:-python3}
LAMS=${LAMS:-0,0.25,0.5,0.75,0.9,1}
export OMP_NUM_THREADS=${THREADS:-1} MKL_NUM_THREADS=${THREADS:-1} PYTHONUNBUFFERED=1
[ -d "$DATA/magnetic_tile/test" ] || { echo "no data set at $DATA (set DRDC_MAGNETIC_TILE)" >&2; exit 1; }

SETS=(--set "train.unet_iters=$UNET_ITERS")
FACTOR_ARGS=(--factor fusion.heat_norm=none,image_std,local_std --factor fusion.diff_norm=global,pixel
             --factor diffusion.margin=0,8)
if [ "${FACTORS:-new}" = all ]; then
  FACTOR_ARGS+=(--factor diffusion.num_sets=2,4 --factor diffusion.num_steps=5,10,20 --factor diffusion.t0=150,250,400
                --factor "diffusion.grid_sizes=[[4,8],[8,16]]")
fi
TRAIN_CMD="drdc train --data $DATA --out runs/$RUN --preset small ${SETS[*]}"
drdc() { "$PY" -m drdc_trt.cli "$@"; }

train() {  # train [RUN [--set KEY=VALUE...]]
  local out=${1:-$RUN}
  shift || true
  drdc train --data "$DATA" --out "runs/$out" --preset small "${SETS[@]}" "$@" --quiet
}

ablate() {  # ablate [--only KEY]...: run what is asked, rewrite the result files
  [ -f "runs/$RUN/stats.json" ] || { echo "no trained model in runs/$RUN: run '$0 train'" >&2; exit 1; }
  drdc ablate --model "runs/$RUN" --data "$DATA" --work "runs/${RUN}_ablation" \
    --results "benchmarks/results/$NAME" --report "benchmarks/results/${NAME}_report.html" --lams "$LAMS" --quiet \
    --title "DRDC on magnetic-tile defects (CPU, preset small, 64²)" "${FACTOR_ARGS[@]}" \
    --command-line "$TRAIN_CMD" \
    --note "CPU recipe: preset small (64², U-Net width 32, 32² training crops, $UNET_ITERS U-Net iterations, min-SNR-5 loss weight, EMA of the U-Net weights, per-pixel diffusion normalisation, λ and heat normalisation chosen on synthetic anomalies); one thread per job." \
    --note "Ablation one factor at a time around the model's setting, each variant re-calibrated on the 76 held-out normal training images." \
    "$@"
  # why the diffusion map helps or not (cached default pass + one calibration pass), appended to the .md
  "$PY" scripts/realdata_diagnostics.py --model "runs/$RUN" --work "runs/${RUN}_ablation" --data "$DATA" \
    --pixel-mean > "runs/${RUN}_ablation/diagnostics.md" &&
    { echo; cat "runs/${RUN}_ablation/diagnostics.md"; } >> "benchmarks/results/$NAME.md" ||
    echo "diagnostics failed (results kept)"
}

seed_run() {  # seed_run N: one more model (training seed N, detector seed N) for the headline row's spread
  local n=$1 r="${RUN}_seed$1"
  train "$r" --set "train.seed=$n"
  # no kNN (it does not depend on the trained model) and no report: the headline rows only
  drdc ablate --model "runs/$r" --data "$DATA" --work "runs/${r}_ablation" --only none --no-knn --seed "$n" \
    --results "runs/${r}_ablation/results" --report "runs/${r}_ablation/report.html" --quiet \
    --title "DRDC on magnetic-tile defects (CPU, preset small, 64², seed $n)" \
    --command-line "${TRAIN_CMD/--out runs\/$RUN /--out runs/$r } --set train.seed=$n"
  cp "runs/${r}_ablation/results.md" "benchmarks/results/${NAME}_seed$n.md"
  cp "runs/${r}_ablation/results.json" "benchmarks/results/${NAME}_seed$n.json"
}

seeds_summary() {  # the default model (seed 0) and every seed run done so far
  local files=("benchmarks/results/$NAME.json")
  for f in benchmarks/results/${NAME}_seed[0-9]*.json; do [ -f "$f" ] && files+=("$f"); done
  drdc seeds "${files[@]}" --out "benchmarks/results/${NAME}_seeds" \
    --title "DRDC on magnetic-tile defects (CPU recipe): headline rows over seeds" \
    --note "Each seed: its own training run (train.seed) and detector masks/noise (--seed); the kNN baseline does not depend on the trained model and is in the seed-0 file only."
}

DAD_RUN=${DAD_RUN:-mt_dad}
DAD_ITERS=${DAD_ITERS:-300}
DAD_SETS=(--set "train.unet_iters=$DAD_ITERS" --set "diffusionad.seg_lr_t_max=$DAD_ITERS"
          --set "diffusionad.unet_lr=${DAD_UNET_LR:-1e-3}" --set "diffusionad.seg_lr=${DAD_SEG_LR:-1e-3}"
          --set train.checkpoint_every=50)
DRDC_RUN=${DRDC_RUN:-mt_v2_s0_cal}
DRDC_WORK=${DRDC_WORK:-mt_v2_s0_ablation}
DAD_NAME=${DAD_NAME:-magnetic_tile_cpu_diffusionad_$DATE}
diffusionad() {  # train (resumes from runs/$DAD_RUN/train_state), then the test pass beside DRDC
  [ -f "runs/$DAD_RUN/stats.json" ] ||
    drdc train --method diffusionad --data "$DATA" --out "runs/$DAD_RUN" --preset small "${DAD_SETS[@]}" --quiet
  [ -f "runs/$DRDC_RUN/stats.json" ] || { echo "no DRDC model in runs/$DRDC_RUN: run '$0 train' (or set DRDC_RUN)" >&2; exit 1; }
  # DRDC's default pass, kNN maps and λ selection come from runs/$DRDC_WORK when '$0 eval' cached them there
  drdc ablate --model "runs/$DAD_RUN" --data "$DATA" --work "runs/${DAD_RUN}_ablation" \
    --compare-model "runs/$DRDC_RUN" --compare-work "runs/$DRDC_WORK" --lams "$LAMS" \
    --results "benchmarks/results/$DAD_NAME" --report "benchmarks/results/${DAD_NAME}_report.html" --quiet \
    --title "DiffusionAD vs DRDC on magnetic-tile defects (CPU, preset small, 64²)" \
    --command-line "drdc train --method diffusionad --data $DATA --out runs/$DAD_RUN --preset small ${DAD_SETS[*]}" \
    --note "CPU recipe: DiffusionAD preset small (64², U-Net width 32, segmentation width 16, batch 16), $DAD_ITERS joint iterations, U-Net lr ${DAD_UNET_LR:-1e-3}, segmentation lr ${DAD_SEG_LR:-1e-3} (cosine over the run); one thread per job (OMP_NUM_THREADS=${THREADS:-1}), the CPU shared with other jobs." \
    --note "DRDC, base and kNN rows: the DRDC model runs/$DRDC_RUN (seed 0 of the v2 recipe, trained in 751 s on one thread) on the same test split, its passes read from the cache of its own drdc ablate run (runs/$DRDC_WORK)." \
    --note "Per-image latency at 64², batch 1, one thread, from one drdc-bench --method both run on this machine (benchmarks/results/diffusionad_vs_drdc_latency_cpu_2026-12-01.md): DRDC 455 ms eager PyTorch / 324 ms torch-free runtime on ONNX Runtime, DiffusionAD 52.6 / 33.1 ms (8.6× / 9.8×). The base model alone and the kNN baseline are not in that run." \
    --note "Source: commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
}

GLAD_RUN=${GLAD_RUN:-mt_glad}
GLAD_ITERS=${GLAD_ITERS:-2400}
GLAD_NAME=${GLAD_NAME:-magnetic_tile_cpu_glad_$DATE}
GLAD_SETS=(--set "train.unet_iters=$GLAD_ITERS" --set "glad.lr=${GLAD_LR:-1e-3}" --set train.checkpoint_every=200)
glad() {  # train (resumes from runs/$GLAD_RUN/train_state), then the test pass beside DRDC and DiffusionAD
  [ -f "runs/$GLAD_RUN/stats.json" ] ||
    drdc train --method glad --data "$DATA" --out "runs/$GLAD_RUN" --preset small "${GLAD_SETS[@]}" --quiet
  [ -f "runs/$DRDC_RUN/stats.json" ] || { echo "no DRDC model in runs/$DRDC_RUN: run '$0 train' (or set DRDC_RUN)" >&2; exit 1; }
  local beside=(--compare-model "runs/$DRDC_RUN" --compare-work "runs/$DRDC_WORK")
  [ -f "runs/$DAD_RUN/stats.json" ] && beside+=(--compare-model "runs/$DAD_RUN" --compare-work "runs/${DAD_RUN}_ablation")
  drdc ablate --model "runs/$GLAD_RUN" --data "$DATA" --work "runs/${GLAD_RUN}_ablation" "${beside[@]}" --lams "$LAMS" \
    --results "benchmarks/results/$GLAD_NAME" --report "benchmarks/results/${GLAD_NAME}_report.html" --quiet \
    --title "GLAD vs DRDC vs DiffusionAD on magnetic-tile defects (CPU, preset small, 64²)" \
    --command-line "drdc train --method glad --data $DATA --out runs/$GLAD_RUN --preset small ${GLAD_SETS[*]}" \
    --note "CPU recipe: GLAD preset small (64², U-Net width 32, 32² training crops, batch 16, 10 DDIM steps from t0 = 650, min_step 350), $GLAD_ITERS iterations with lr ${GLAD_LR:-1e-3} (the preset's 1e-4 is the official fine-tuning rate of a pretrained U-Net; ours starts from scratch in a short budget), EMA of the U-Net; τ the 0.9 quantile of the 76 held-out normal training images' largest trigger score; one thread per job (OMP_NUM_THREADS=${THREADS:-1}), the CPU shared with other jobs." \
    --note "DRDC, base and kNN rows: the DRDC model runs/$DRDC_RUN, DiffusionAD: runs/$DAD_RUN (both from the 2026-12-01 CPU recipes, see magnetic_tile_cpu_diffusionad_2026-12-01.md), on the same test split, read from the caches of their own drdc ablate runs." \
    --note "Source: commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
}

step=${1:-all}
shift || true
case "$step" in
  train) train ;;
  eval) ablate --only none ;;
  ablate)
    [ $# -ge 1 ] || { echo "usage: $0 ablate KEY [KEY...] (fusion.heat_norm, fusion.diff_norm, diffusion.margin; FACTORS=all adds diffusion.num_sets, .num_steps, .t0, .grid_sizes)" >&2; exit 2; }
    args=()
    for k in "$@"; do args+=(--only "$k"); done
    ablate "${args[@]}"
    ;;
  seed)
    [ $# -ge 1 ] || { echo "usage: $0 seed N [N...] (then: $0 seeds)" >&2; exit 2; }
    for n in "$@"; do seed_run "$n"; done
    ;;
  seeds) seeds_summary ;;
  diffusionad) diffusionad ;;
  glad) glad ;;
  all) train && ablate ;;
  *) sed -n '2,50p' "$0"; exit 2 ;;
esac
