"""The report of a single-env experiment with enough seeds gives intervals: IQM / mean with 95% bootstrap
CIs over seeds and the probability of improvement over the baseline (the quick start's table)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from dream_rl.experiments.config import validate_config
from dream_rl.experiments.records import EVAL_COLUMNS
from dream_rl.experiments.report import MIN_SEEDS_FOR_INTERVALS, write_report

FINAL = {"dream": [0.9, 0.5, 0.7, 0.95], "lstm": [0.6, 0.8, 0.4, 0.6]}


def fake_experiment(tmp_path, seeds):
    raw = {
        "name": "single",
        "env": {"id": "dream_rl/RepeatFirst-v0", "n_envs": 2},
        "algo": {"n_steps": 32, "batch_size": 32},
        "policies": {
            "dream": {"policy": "MlpDreamPolicy", "policy_kwargs": {"lstm_hidden_size": 8}},
            "lstm": {"policy": "MlpLstmPolicy", "policy_kwargs": {"lstm_hidden_size": 8}},
        },
        "train": {"total_timesteps": 64, "seeds": seeds, "eval_every": 32, "eval_episodes": 2},
        "output_dir": str(tmp_path / "runs"),
    }
    config = validate_config(raw)
    for run in config.runs():
        run.run_dir.mkdir(parents=True)
        score = FINAL[run.policy_label][run.seed]
        with (run.run_dir / "eval.csv").open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(EVAL_COLUMNS)
            for step, value in ((0, 0.0), (32, score / 2), (64, score)):
                writer.writerow([step, value, 0.0, value, 0.0, 16, 2, 0.1])
        (run.run_dir / "run_info.json").write_text(json.dumps({"status": "completed", "steps_per_second": 100.0}))
    return config


def test_single_env_with_enough_seeds_gets_intervals_and_the_probability_of_improvement(tmp_path):
    seeds = list(range(MIN_SEEDS_FOR_INTERVALS + 1))
    config = fake_experiment(tmp_path, seeds)
    report = write_report(config, log=lambda _: None)
    assert "aggregate over 1 env\n" in report.text and "P(policy > lstm)" in report.text
    rows = {row["policy"]: row for row in csv.DictReader((config.experiment_dir / "aggregate.csv").open())}
    dream, lstm = np.array(FINAL["dream"]), np.array(FINAL["lstm"])
    pairs = dream[:, None] - lstm[None, :]
    expected = (pairs > 0).mean() + 0.5 * (pairs == 0).mean()  # Mann-Whitney over the 4 x 4 seed pairs
    assert float(rows["dream"]["prob_improvement"]) == pytest.approx(expected)
    assert rows["lstm"]["prob_improvement"] == ""
    assert float(rows["dream"]["mean"]) == pytest.approx(dream.mean())
    assert float(rows["dream"]["mean_low"]) < dream.mean() < float(rows["dream"]["mean_high"])
    # the overview holds the aggregate and the per-env table
    overview = (config.experiment_dir / "comparison.md").read_text()
    assert "aggregate over 1 env" in overview and "| dream (`MlpDreamPolicy`) |" in overview


def test_single_env_with_few_seeds_keeps_the_plain_table(tmp_path):
    config = fake_experiment(tmp_path, list(range(MIN_SEEDS_FOR_INTERVALS - 1)))
    report = write_report(config, log=lambda _: None)
    assert "aggregate" not in report.text and not (config.experiment_dir / "aggregate.csv").exists()
