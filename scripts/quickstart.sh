#!/usr/bin/env bash
# The main job in one command: install dream-rl in .venv (scripts/setup.sh), then train DREAM,
# LSTM and GRU policies on a small memory task (configs/quickstart.yaml, 8 seeds each) and write
# the comparison table with 95% intervals and the plot. About 3 minutes of training on 2 CPU cores.
#
#   bash scripts/quickstart.sh                          # everything
#   bash scripts/quickstart.sh suite                    # the 3-env suite instead (configs/suite_quick.yaml):
#                                                       #   per-env tables, IQM aggregate, performance profiles
#   bash scripts/quickstart.sh "train.seeds=[0]"        # extra arguments: config overrides (or --workers N, --ray local)
#   SKIP_SETUP=1 bash scripts/quickstart.sh             # .venv is already set up
#
# Runs train in parallel, one per CPU core. Running it again skips finished runs; after Ctrl-C it
# resumes from the last checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
config=quickstart
if [ "${1:-}" = "suite" ]; then
    config=suite_quick
    shift
fi
if [ "${SKIP_SETUP:-0}" != "1" ]; then
    bash scripts/setup.sh
fi
start=$(date +%s)
.venv/bin/dream-rl compare "configs/$config.yaml" "$@"
echo
echo "Finished in $(( $(date +%s) - start )) s. Outputs in runs/$config/:"
if [ "$config" = "suite_quick" ]; then
    echo "  aggregate.md, aggregate.csv     IQM, median, mean with 95% CIs; probability of improvement over lstm"
    echo "  performance_profiles.png        fraction of runs above each normalized score"
    echo "  scores.csv                      every run's final normalized score (the aggregate's input)"
    echo "  <env>/comparison.md, .csv, learning_curves.png   per env"
    echo "  <env>/<policy>/seed_<k>/        tb/ (TensorBoard), checkpoints/, final_model.zip, config.yaml, eval.csv, run_info.json"
else
    echo "  comparison.md, comparison.csv   the tables above"
    echo "  aggregate.md, aggregate.csv     IQM, median, mean with 95% CIs over seeds; probability of improvement over lstm"
    echo "  scores.csv                      every run's final normalized score"
    echo "  learning_curves.png             normalized score vs env steps, mean and band over seeds"
    echo "  <policy>/seed_<k>/              tb/ (TensorBoard), checkpoints/, final_model.zip, config.yaml, eval.csv, run_info.json"
fi
echo "Look inside:"
echo "  .venv/bin/tensorboard --logdir runs/$config"
echo "  .venv/bin/dream-rl evaluate runs/$config"
