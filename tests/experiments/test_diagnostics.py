"""Memory diagnostics (dream_rl.experiments.diagnostics): the observability gap and the share of it a torso
recovers, the longest T-maze length solved, on synthetic scores.csv files; and the generated configs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import yaml

from dream_rl.errors import ConfigError
from dream_rl.experiments.config import load_config
from dream_rl.experiments.diagnostics import (
    corridor_length,
    longest_solved,
    memory_length_results,
    observability_gaps,
    read_scores,
    recovered_shares,
    twin_label,
    write_diagnostics,
)

REPO = Path(__file__).resolve().parents[2]

# env A: mlp 0.3 on the env, 0.8 on the twin (gap 0.5); gru recovers (0.55 - 0.3) / 0.5 = 0.5 on both seeds.
# env B: mlp 0.5 vs 0.52 (gap 0.02: none to measure); gru's 1.0 there must not count.
# env C: mlp 0 vs 1 (gap 1); gru's seeds recover 1.0 and 0.2.
# env D: mlp 0.2 vs 0.4 on average, but the twin's seeds spread over 0 and 0.8: the gap's interval
# reaches below 0, so it is not measurable either.
ROWS = """env,policy,seed,final_score
A-v0,mlp,0,0.2
A-v0,mlp,1,0.4
AFullObs-v0,mlp,0,0.9
AFullObs-v0,mlp,1,0.7
A-v0,gru,0,0.55
A-v0,gru,1,0.55
B-v0,mlp,0,0.5
B-v0,mlp,1,0.5
BFullObs-v0,mlp,0,0.52
BFullObs-v0,mlp,1,0.52
B-v0,gru,0,1.0
C-v0,mlp,0,0.0
C-v0,mlp,1,0.0
CFullObs-v0,mlp,0,1.0
CFullObs-v0,mlp,1,1.0
C-v0,gru,0,1.0
C-v0,gru,1,0.2
C-v0,lstm,0,0.0
D-v0,mlp,0,0.2
D-v0,mlp,1,0.2
DFullObs-v0,mlp,0,0.0
DFullObs-v0,mlp,1,0.8
D-v0,gru,0,0.4
"""


def _csv(tmp_path: Path, text: str, name: str = "scores.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_twin_label_follows_the_registered_ids() -> None:
    assert twin_label("CartPoleNoVel-v0") == "CartPoleNoVelFullObs-v0"
    assert twin_label("TMazeLong-v0") == "TMazeLongFullObs-v0"
    assert twin_label("custom") == "customFullObs"
    from dream_rl.envs import TWINS

    assert all(twin_label(t.twin_of.split("/")[-1]) == t.id.split("/")[-1] for t in TWINS)


def test_gap_per_env_with_intervals(tmp_path: Path) -> None:
    scores, _ = read_scores([_csv(tmp_path, ROWS)])
    gaps = {g.env: g for g in observability_gaps(scores, reps=500)}
    assert set(gaps) == {"A-v0", "B-v0", "C-v0", "D-v0"}  # twins are not envs of their own
    a = gaps["A-v0"]
    assert (a.twin_score, a.pomdp_score, a.gap) == pytest.approx((0.8, 0.3, 0.5))
    assert a.gap_ci[0] <= 0.5 <= a.gap_ci[1] and a.gap_ci[0] < a.gap_ci[1]
    # seeds resampled: the gap's interval lies within the extremes the seeds allow
    assert a.gap_ci[0] >= 0.7 - 0.4 - 1e-12 and a.gap_ci[1] <= 0.9 - 0.2 + 1e-12
    assert gaps["C-v0"].gap_ci == (1.0, 1.0)  # no spread over seeds: no width
    assert gaps["B-v0"].gap == pytest.approx(0.02) and not gaps["B-v0"].measured(0.1)
    d = gaps["D-v0"]
    assert d.gap == pytest.approx(0.2) and d.gap_ci[0] < 0 and not d.measured(0.1)
    assert a.measured(0.1) and not a.measured(0.6)


def test_recovered_share_math_and_aggregate(tmp_path: Path) -> None:
    scores, _ = read_scores([_csv(tmp_path, ROWS)])
    gaps = observability_gaps(scores, reps=1000)
    shares = {s.policy: s for s in recovered_shares(scores, gaps, min_gap=0.1)}
    gru = shares["gru"]
    assert gru.per_env == pytest.approx({"A-v0": 0.5, "C-v0": 0.6})  # B and D: no measurable gap, left out
    assert gru.seeds == {"A-v0": 2, "C-v0": 2}
    assert gru.mean == pytest.approx(0.55)
    # runs' shares 0.5, 0.5, 1.0, 0.2: the IQM drops the lowest and highest
    assert gru.iqm == pytest.approx(0.5)
    assert gru.mean_ci[0] <= gru.mean <= gru.mean_ci[1] and gru.mean_ci[0] < gru.mean_ci[1]
    assert np.isfinite(gru.iqm_ci).all()
    lstm = shares["lstm"]
    assert lstm.per_env == {"C-v0": 0.0} and lstm.envs == ["C-v0"]
    assert "mlp" not in shares
    # a larger min_gap leaves A out too
    only_c = {s.policy: s for s in recovered_shares(scores, gaps, min_gap=0.6)}
    assert only_c["gru"].per_env == pytest.approx({"C-v0": 0.6})


def test_share_is_relative_to_the_memoryless_scores() -> None:
    # a torso at the memoryless score recovers 0, at the twin's score 1, halfway 0.5, beyond the twin > 1
    scores = {"E-v0": {"mlp": {0: 0.2, 1: 0.2}, "t": {0: 0.2, 1: 0.6, 2: 1.0, 3: 0.4}},
              "EFullObs-v0": {"mlp": {0: 0.6, 1: 0.6}}}
    shares = recovered_shares(scores, observability_gaps(scores, reps=200), policies=["t"])
    assert shares[0].per_env["E-v0"] == pytest.approx(np.mean([0.0, 1.0, 2.0, 0.5]))


def test_read_scores_keeps_the_first_file_and_refuses_malformed_files(tmp_path: Path) -> None:
    first = _csv(tmp_path, "env,policy,seed,final_score\nA-v0,mlp,0,0.25\n", "first.csv")
    second = _csv(tmp_path, "env,policy,seed,final_score\nA-v0,mlp,0,0.75\nA-v0,mlp,1,0.5\n", "second.csv")
    scores, notes = read_scores([first, second])
    assert scores["A-v0"]["mlp"] == {0: 0.25, 1: 0.5}
    assert len(notes) == 1 and "1 runs" in notes[0]
    folder = tmp_path / "experiment"
    folder.mkdir()
    _csv(folder, "env,policy,seed,final_score\nX-v0,gru,3,1\n")
    assert read_scores([folder])[0] == {"X-v0": {"gru": {3: 1.0}}}
    with pytest.raises(ConfigError, match="no column 'final_score'"):
        read_scores([_csv(tmp_path, "env,policy,seed\nA-v0,mlp,0\n", "bad.csv")])
    with pytest.raises(ConfigError, match="line 3"):
        read_scores([_csv(tmp_path, "env,policy,seed,final_score\nA-v0,mlp,0,1\nA-v0,mlp,x,1\n", "bad2.csv")])
    with pytest.raises(ConfigError, match="finite"):
        read_scores([_csv(tmp_path, "env,policy,seed,final_score\nA-v0,mlp,0,nan\n", "bad3.csv")])
    with pytest.raises(ConfigError, match="neither an experiment folder"):
        read_scores([tmp_path / "missing"])


def test_read_scores_from_an_experiment_folder_counts_the_runs_evaluated_so_far(tmp_path: Path) -> None:
    """Before every run has finished, report writes no scores.csv; the diagnostics read the runs' eval.csv."""
    config = {
        "name": "gap",
        "envs": [{"id": "dream_rl/TMaze-v0", "total_timesteps": 100},
                 {"id": "dream_rl/TMazeFullObs-v0", "label": "TMazeFullObs-v0", "total_timesteps": 100}],
        "policies": {"mlp": {"policy": "MlpTorsoPolicy", "policy_kwargs": {"torso": "mlp"}}},
        "train": {"total_timesteps": 100, "seeds": [0, 1]},
        "output_dir": str(tmp_path),
    }
    folder = tmp_path / "gap"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    header = "timesteps,mean_return,std_return,mean_score,std_score,mean_length,episodes,seconds\n"
    for label, seed, score in (("TMaze-v0", 0, 0.5), ("TMaze-v0", 1, 0.45), ("TMazeFullObs-v0", 0, 1.0)):
        run = folder / label / "mlp" / f"seed_{seed}"
        run.mkdir(parents=True)
        (run / "eval.csv").write_text(header + f"0,0,0,0.5,0,11,20,0\n100,0,0,{score},0,11,20,0\n")
    scores, _ = read_scores([folder])
    assert scores == {"TMaze-v0": {"mlp": {0: 0.5, 1: 0.45}}, "TMazeFullObs-v0": {"mlp": {0: 1.0}}}
    (gap,) = observability_gaps(scores, reps=50)
    assert (gap.twin_seeds, gap.pomdp_seeds, gap.gap) == (1, 2, pytest.approx(0.525))


# ---------------------------------------------------------------------------------------- memory length


def test_corridor_length_from_the_label() -> None:
    assert corridor_length("TMaze-L20") == 20 and corridor_length("TMaze-L200") == 200
    assert corridor_length("TMaze-v0") is None and corridor_length("TMazeL20") is None


def test_longest_solved_threshold_and_first_failure() -> None:
    assert longest_solved({5: 1.0, 10: 0.9, 20: 0.85, 50: 0.5}) == (10, 20)  # 0.9 counts as solved
    assert longest_solved({5: 0.5, 10: 1.0}) == (10, 5)
    assert longest_solved({5: 0.5, 10: 0.4}) == (None, 5)
    assert longest_solved({5: 1.0, 10: 1.0}) == (10, None)
    assert longest_solved({5: 0.8}, threshold=0.75) == (5, None)


LENGTH_ROWS = """env,policy,seed,final_score
TMaze-L5,gru,0,1
TMaze-L5,gru,1,1
TMaze-L10,gru,0,1
TMaze-L10,gru,1,0.8
TMaze-L20,gru,0,0.9
TMaze-L20,gru,1,0.8
TMaze-L5,lstm,0,0.5
TMaze-L5,lstm,1,0.5
TMaze-L10,lstm,0,1
TMaze-L10,lstm,1,1
TMaze-L5,framestack,0,0.5
TMaze-L5,framestack,1,0.45
TMaze-v0,gru,0,1
"""


def test_memory_length_results_over_seeds(tmp_path: Path) -> None:
    scores, _ = read_scores([_csv(tmp_path, LENGTH_ROWS)])
    results = {r.policy: r for r in memory_length_results(scores)}
    gru = results["gru"]
    assert gru.success == pytest.approx({5: 1.0, 10: 0.9, 20: 0.85})  # TMaze-v0 is not a length label
    assert (gru.longest_solved, gru.first_failed, gru.monotone) == (10, 20, True)
    lstm = results["lstm"]
    assert (lstm.longest_solved, lstm.first_failed, lstm.monotone) == (10, 5, False)
    assert (results["framestack"].longest_solved, results["framestack"].runs[5]) == (None, (0.5, 0.45))


def test_write_diagnostics_writes_tables_and_figures(tmp_path: Path) -> None:
    gap = _csv(tmp_path, ROWS, "gap.csv")
    length = _csv(tmp_path, LENGTH_ROWS, "length.csv")
    report = write_diagnostics([gap, length], tmp_path / "out", reps=200)
    names = {path.name for path in report.files}
    assert names == {"diagnostics.md", "gap.csv", "recovered.csv", "recovered_aggregate.csv", "gap.png",
                     "memory_length.csv", "memory_length_summary.csv", "memory_length.png", "scores.csv"}
    assert all(path.stat().st_size > 0 for path in report.files)
    text = (tmp_path / "out" / "diagnostics.md").read_text()
    assert "| A-v0 | 0.80 [0.70, 0.90] | 0.30 [0.20, 0.40] |" in text
    assert "| B-v0 |" in text and "(not measurable)" in text and "| lstm |" in text
    assert "| gru | 1.00 (2) | 0.90 (2) | 0.85 (2) | 10 |" in text
    assert "| lstm | 0.50 (2) | 1.00 (2) |  | 10* |" in text
    assert "| framestack | 0.47 (2) |  |  | none (< 5) |" in text
    summary = (tmp_path / "out" / "memory_length_summary.csv").read_text().splitlines()
    assert summary[0] == "policy,longest_solved,first_failed,monotone,threshold"
    assert "framestack,,5,1,0.9" in summary
    # scores.csv holds every run read: the same tables come back from it alone
    again = write_diagnostics([tmp_path / "out" / "scores.csv"], tmp_path / "again", reps=200)
    assert again.text == report.text
    # gap only
    only_gap = write_diagnostics([gap], tmp_path / "gap_only", reps=50)
    assert {p.name for p in only_gap.files} == {"diagnostics.md", "gap.csv", "recovered.csv",
                                                 "recovered_aggregate.csv", "gap.png", "scores.csv"}
    with pytest.raises(ConfigError, match="no diagnostics"):
        write_diagnostics([_csv(tmp_path, "env,policy,seed,final_score\nX-v0,gru,0,1\n", "none.csv")], tmp_path / "x")


# ---------------------------------------------------------------------------------------------- configs


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_diagnostics_configs_are_current_and_valid() -> None:
    for name, text in _script("make_diagnostics_configs").generated_configs().items():
        assert (REPO / "configs" / name).read_text() == text, f"configs/{name} is stale: run scripts/make_diagnostics_configs.py"
        load_config(REPO / "configs" / name, build_envs=False)


def test_gap_config_runs_the_board_protocol_on_each_env_and_its_twin() -> None:
    """The torsos' scores on the partially observable envs are read from the board's runs: that is
    only valid while every env entry of the gap config is the board's entry."""
    board = yaml.safe_load((REPO / "configs" / "leaderboard.yaml").read_text())
    gap = yaml.safe_load((REPO / "configs" / "diagnostics_gap.yaml").read_text())
    pomdp = [e for e in gap["envs"] if "label" not in e]
    assert pomdp == board["envs"]
    twins = [e for e in gap["envs"] if "label" in e]
    assert [t["id"] for t in twins] == [e["id"].replace("-v0", "FullObs-v0") for e in board["envs"]]
    assert all({k: v for k, v in t.items() if k not in ("id", "label")} == {k: v for k, v in e.items() if k != "id"}
               for t, e in zip(twins, board["envs"]))
    assert gap["train"]["seeds"] == board["train"]["seeds"] and gap["train"]["eval_episodes"] == board["train"]["eval_episodes"]
    assert gap["policies"] == {"mlp": board["policies"]["mlp"]}


def test_memory_length_budget_grows_with_the_length() -> None:
    script = _script("make_diagnostics_configs")
    budgets = [script.memory_length_budget(length) for length in script.LENGTHS]
    assert budgets == sorted(budgets) and all(b % 1024 == 0 for b in budgets)
    config = yaml.safe_load((REPO / "configs" / "diagnostics_memory_length.yaml").read_text())
    assert [e["kwargs"]["corridor_length"] for e in config["envs"]] == list(script.LENGTHS)
    assert [corridor_length(e["label"]) for e in config["envs"]] == list(script.LENGTHS)
