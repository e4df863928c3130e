#!/usr/bin/env bash
# Prepare datasets for the forecasting stack (stores are git-ignored; see README "Forecasting data").
#
#   data/prepare.sh swe [--preset tiny]            -> data/swe.zarr + data/swe.stats.nc (built-in shallow water)
#   data/prepare.sh convert SRC NAME [SPEC.yaml]   -> data/NAME.zarr + data/NAME.stats.nc from ERA5 in any layout
#                                                     (WB2 zarr, CDS .nc/.zip/folder, makani folder)
set -euo pipefail
cd "$(dirname "$0")/.."
SCIML=${SCIML:-.venv/bin/sciml}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

case "${1:-}" in
  swe)
    shift
    "$SCIML" data synth --out data/swe.zarr "$@"
    "$SCIML" data check data/swe.zarr
    ;;
  convert)
    src=${2:?source path}; name=${3:?store name}; spec=${4:-}
    "$SCIML" data convert "$src" --to "data/$name.zarr" ${spec:+--channels "$spec"}
    "$SCIML" data check "data/$name.zarr"
    "$SCIML" data stats "data/$name.zarr"
    ;;
  *)
    sed -n '2,6p' "$0"; exit 2
    ;;
esac
