"""Per-torso learning-rate selection on a leaderboard, with the same trial budget for every torso.

Every torso runs the board at a few multiples of its shared (per-env, tuned) learning rates, once on
the board's seeds and once on tuning seeds. For each torso the multiple with the best IQM on the
*tuning* seeds is chosen, and the torso's runs on the *board's* seeds at that multiple enter the
aggregate. No torso gets more trials than another, and the figures reported come from seeds the
choice never saw.

Each trial is one ``dream-rl compare`` of the board with its learning rates scaled (dotted
overrides), e.g. for the quick board at half its rates (0.00252, 0.00274, 0.00065, 0.00065):

    dream-rl compare configs/leaderboard_quick.yaml --workers 2 name=lq_x0.5 \\
        envs.0.algo.learning_rate=0.00126 envs.1.algo.learning_rate=0.00137 \\
        envs.2.algo.learning_rate=0.000325 envs.3.algo.learning_rate=0.000325
    # and the same with name=lq_x0.5_tuning "train.seeds=[10,11]"; likewise x1 and x2

    python scripts/lr_select.py --trial 0.5 runs/lq_x0.5 runs/lq_x0.5_tuning \\
        --trial 1 runs/leaderboard_quick runs/lq_x1_tuning --trial 2 runs/lq_x2 runs/lq_x2_tuning

It prints, per torso, the IQM at every multiple on both seed sets and the chosen one, then the
aggregate table (IQM, median, mean with 95% stratified-bootstrap CIs, P(> lstm)) of the selection.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from dream_rl.experiments.config import load_config
from dream_rl.experiments.report import final_scores_over_envs, load_curves
from dream_rl.experiments.stats import aggregate_scores, format_aggregate_markdown, iqm


def final_scores(run_dir: Path) -> dict[str, np.ndarray]:
    """``policy -> (n_seeds, n_envs)`` final normalized scores of the experiment in ``run_dir``."""
    config = load_config(run_dir / "config.yaml").model_copy(update={"output_dir": str(run_dir.parent)})
    curves_by_env = [load_curves(config, env)[0] for env in config.env_list]
    return final_scores_over_envs(config, curves_by_env)[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trial", nargs=3, action="append", required=True, metavar=("MULTIPLE", "BOARD_DIR", "TUNING_DIR"),
                        help="a learning-rate multiple and the run directories of the board at it, on the board's "
                             "seeds and on tuning seeds (repeat for every multiple)")
    parser.add_argument("--baseline", default="lstm", help="the policy the others are compared with (default: lstm)")
    args = parser.parse_args(argv)

    trials = [(float(multiple), final_scores(Path(board)), final_scores(Path(tuning))) for multiple, board, tuning in args.trial]
    # prefer the multiple closest to 1 on a tie: the shared rates are the default
    trials.sort(key=lambda trial: abs(np.log(trial[0])))
    policies = list(trials[0][1])
    header = " | ".join(f"x{m:g} board / tuning" for m, _, _ in trials)
    print(f"| policy | {header} | chosen |")
    print("|---|" + "---|" * len(trials) + "---|")
    selected: dict[str, np.ndarray] = {}
    for policy in policies:
        tuning_iqm = [float(iqm(tuning[policy])) for _, _, tuning in trials]
        best = int(np.argmax(tuning_iqm))  # the first maximum: the multiple closest to 1 among ties
        selected[policy] = trials[best][1][policy]
        cells = " | ".join(
            f"{float(iqm(board[policy])):.3f} / {value:.3f}"
            for (_, board, _), value in zip(trials, tuning_iqm)
        )
        print(f"| {policy} | {cells} | x{trials[best][0]:g} |")
    baseline = args.baseline if args.baseline in selected else None
    print()
    print(format_aggregate_markdown(aggregate_scores(selected, baseline=baseline), baseline))


if __name__ == "__main__":
    main()
