#!/usr/bin/env bash
# The MNIST-addition leaderboard grid of issue 2: quick profile, offline data, seeds 0-2, one process per seed.
set -u
cd "$(dirname "$0")/.."
. .venv/bin/activate
export OMP_NUM_THREADS=1
for seed in 0 1 2; do
  (
    scgbench compare mnist-addition --variants ours --estimators gumbel,st-gumbel,reinforce --seeds $seed "$@"
    scgbench compare mnist-addition --variants baseline --seeds $seed "$@"
  ) > "/tmp/mnist_grid_s$seed.log" 2>&1 &
done
wait
scgbench leaderboard
