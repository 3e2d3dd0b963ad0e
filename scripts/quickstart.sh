#!/usr/bin/env bash
# The main job in one command: install dream-rl in .venv (scripts/setup.sh), then train DREAM,
# LSTM and GRU policies on a small memory task (configs/quickstart.yaml, 2 seeds each) and write
# the comparison table and plot. About 4 minutes of training on 2 CPU cores.
#
#   bash scripts/quickstart.sh                          # everything
#   bash scripts/quickstart.sh "train.seeds=[0]"        # extra arguments: config overrides
#   SKIP_SETUP=1 bash scripts/quickstart.sh             # .venv is already set up
#
# Running it again skips finished runs; after Ctrl-C it resumes from the last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${SKIP_SETUP:-0}" != "1" ]; then
    bash scripts/setup.sh
fi
start=$(date +%s)
.venv/bin/dream-rl compare configs/quickstart.yaml "$@"
echo
echo "Finished in $(( $(date +%s) - start )) s. Outputs in runs/quickstart/:"
echo "  comparison.md, comparison.csv   the table above"
echo "  learning_curves.png             normalized score vs env steps, mean and band over seeds"
echo "  <policy>/seed_<k>/              tb/ (TensorBoard), checkpoints/, final_model.zip, config.yaml, eval.csv, run_info.json"
echo "Look inside:"
echo "  .venv/bin/tensorboard --logdir runs/quickstart"
echo "  .venv/bin/dream-rl evaluate runs/quickstart/dream/seed_0"
