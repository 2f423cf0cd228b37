#!/usr/bin/env bash
# Thesis Fig. 4.2 study on the offline data with the quick profile: Base / TauAnn / TM (no DropRes, τ = 8).
set -u
cd "$(dirname "$0")/.."
. .venv/bin/activate
export OMP_NUM_THREADS=1
scgbench compare mnist-addition --variants fig4.2-base,fig4.2-tauann,fig4.2-tm --seeds 0 \
  --trainer.enable_progress_bar=false "$@"
scgbench figure mnist-addition fig4.2 --output figures/mnist-addition-fig4.2.png
