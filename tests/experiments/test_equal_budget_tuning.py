"""The equal-budget tuning protocol (scripts/make_tuning_configs.py): one tune config per torso over the quick
board with the same trials and shared dimension for all, and the tuned full board from each study's best trial."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml

from dream_rl import TORSOS
from dream_rl.errors import ConfigError
from dream_rl.experiments.config import read_yaml, validate_config
from dream_rl.torsos.base import LEARNING_RATE_SCALE_SPACE

REPO = Path(__file__).resolve().parents[2]


def _script(name: str):
    """scripts/<name>.py imported as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _script("make_tuning_configs")


def _policy_config_has_learning_rate_scale() -> bool:
    from dream_rl.experiments import config

    return "learning_rate_scale" in getattr(getattr(config, "PolicyConfig", None), "model_fields", {})


needs_scale = pytest.mark.skipif(not _policy_config_has_learning_rate_scale(),
                                 reason="needs PolicyConfig.learning_rate_scale in dream_rl.experiments.config")


def test_generated_tune_configs_are_current_one_per_torso():
    files = gen.generated_configs()
    assert set(files) == {f"tune_torsos/{torso}.yaml" for torso in TORSOS}
    on_disk = {f"tune_torsos/{p.name}" for p in (REPO / "configs" / "tune_torsos").glob("*.yaml")}
    assert on_disk == set(files), "configs/tune_torsos/ holds a config of no registered torso"
    for path, text in files.items():
        assert (REPO / "configs" / path).read_text() == text, f"configs/{path} is stale: run scripts/make_tuning_configs.py"


def test_every_torso_gets_the_same_trials_seeds_envs_and_shared_dimension():
    quick = read_yaml(REPO / "configs" / "leaderboard_quick.yaml")
    commands, settings = set(), []
    for torso in TORSOS:
        path = REPO / "configs" / "tune_torsos" / f"{torso}.yaml"
        raw = read_yaml(path)
        commands |= set(re.findall(r"--trials (\d+)", path.read_text()))
        assert raw["envs"] == quick["envs"], f"{torso}: tuned on the quick board's envs, settings and budgets"
        assert raw["train"]["seeds"] == gen.TUNING_SEEDS and not set(raw["train"]["seeds"]) & set(quick["train"]["seeds"])
        assert list(raw["policies"]) == [torso] and raw["policies"][torso] == gen.policy_entry(torso)
        space = raw["tune"]["space"]
        assert space[f"policies.{torso}.learning_rate_scale"] == LEARNING_RATE_SCALE_SPACE
        own = {key.rsplit(".", 1)[-1]: spec for key, spec in space.items() if ".torso_kwargs." in key}
        assert own == TORSOS[torso].search_space and len(space) == 1 + len(own)
        settings.append({key: raw["tune"][key] for key in ("objective", "sampler", "pruner")})
    assert commands == {str(gen.TRIALS)}, "one trial count for every torso"
    assert all(s == settings[0] for s in settings) and settings[0]["pruner"] is None, "no pruning: full budgets"
    assert not set(gen.BOARD_SEEDS) & set(gen.TUNING_SEEDS)


def test_torso_options_of_every_tune_config_validate_at_both_ends(tmp_path):
    """The configs load as `dream-rl tune` loads them (every dimension at its low and its high end), here
    without the learning-rate multiple, which test_tune_configs_load_with_the_learning_rate_scale adds."""
    from dream_rl.experiments.tune import load_tune_config

    for torso in TORSOS:
        raw = read_yaml(REPO / "configs" / "tune_torsos" / f"{torso}.yaml")
        raw["tune"]["space"].pop(f"policies.{torso}.learning_rate_scale")
        if not raw["tune"]["space"]:
            continue
        raw["output_dir"] = str(tmp_path)
        path = tmp_path / f"{torso}.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        base, settings, tune_dir, name = load_tune_config(path)
        assert name == gen.study_name(torso) and settings.policy == torso and settings.objective == "final"


@needs_scale
def test_tune_configs_load_with_the_learning_rate_scale():
    from dream_rl.experiments.tune import load_tune_config

    for torso in TORSOS:
        _, settings, _, _ = load_tune_config(REPO / "configs" / "tune_torsos" / f"{torso}.yaml")
        assert f"policies.{torso}.learning_rate_scale" in {p.key for p in settings.space}


# --------------------------------------------------------------------------------------------
# The tuned board from the studies


def write_trials(path: Path, rows: list[tuple[int, str, float | None, dict]]) -> Path:
    """A trials.csv as dream-rl tune writes it: (number, state, value, params by dotted path)."""
    from dream_rl.experiments.tune import TRIALS_COLUMNS

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(TRIALS_COLUMNS)
        for number, state, value, params in rows:
            writer.writerow([number, state, "" if value is None else value, 1.0, json.dumps(params)])
    return path


def study_rows(torso: str, best_scale: float = 1.7, trials: int = gen.TRIALS) -> list:
    """``trials`` finished trials (one pruned, one failed), the best (0.9) being trial 5 with ``best_scale``
    and the first value of every option; other complete trials score less."""
    def params(scale: float, pick: int) -> dict:
        values = {f"policies.{torso}.learning_rate_scale": scale}
        for option, spec in TORSOS[torso].search_space.items():
            choices = spec["choices"] if spec["type"] == "categorical" else [spec["low"], spec["high"]]
            values[f"policies.{torso}.policy_kwargs.torso_kwargs.{option}"] = choices[pick % len(choices)]
        return values

    rows = []
    for number in range(trials):
        if number == 5:
            rows.append((number, "COMPLETE", 0.9, params(best_scale, 0)))
        elif number == 1:
            rows.append((number, "PRUNED", 0.95, params(0.5, 1)))  # a higher value, but not complete
        elif number == 2:
            rows.append((number, "FAIL", None, params(2.5, 1)))
        else:
            rows.append((number, "COMPLETE", 0.1 * number, params(0.4, 1)))
    return rows


def test_best_trial_is_the_highest_complete_one(tmp_path):
    best = gen.best_trial(write_trials(tmp_path / "trials.csv", study_rows("dream")))
    assert best.number == 5 and best.value == pytest.approx(0.9) and best.finished == gen.TRIALS
    assert best.params["policies.dream.learning_rate_scale"] == 1.7
    assert best.params["policies.dream.policy_kwargs.torso_kwargs.ltc_tau_spread"] == 1.0


def test_best_trial_ties_go_to_the_earlier_trial_and_running_trials_do_not_count(tmp_path):
    rows = [(n, "COMPLETE", 0.5, {"policies.gru.learning_rate_scale": 0.3 + n}) for n in range(gen.TRIALS)]
    rows.append((gen.TRIALS, "RUNNING", None, {"policies.gru.learning_rate_scale": 9.0}))  # left by an interrupted run
    best = gen.best_trial(write_trials(tmp_path / "trials.csv", rows))
    assert best.number == 0 and best.params == {"policies.gru.learning_rate_scale": 0.3}


@pytest.mark.parametrize(("trials", "match"), [(gen.TRIALS - 1, r"7 finished trials.*every torso 8.*--trials 1"),
                                               (gen.TRIALS + 2, r"10 finished trials.*every torso 8")])
def test_a_study_with_another_trial_count_is_refused(tmp_path, trials, match):
    path = write_trials(tmp_path / "trials.csv", study_rows("gru", trials=trials))
    with pytest.raises(ConfigError, match=match):
        gen.best_trial(path)
    assert gen.best_trial(path, trials=trials).number == 5  # --trials N: another count, for every torso alike


def test_a_study_without_a_complete_trial_or_file_is_refused(tmp_path):
    rows = [(n, "FAIL", None, {}) for n in range(gen.TRIALS)]
    with pytest.raises(ConfigError, match="no complete trial of 8"):
        gen.best_trial(write_trials(tmp_path / "trials.csv", rows))
    with pytest.raises(ConfigError, match="no such file.*dream-rl tune"):
        gen.best_trial(tmp_path / "missing" / "trials.csv")


def test_tuned_policy_takes_the_values_and_refuses_a_path_outside_the_protocol():
    entry = gen.tuned_policy("mamba", {"policies.mamba.learning_rate_scale": 0.123456,
                                       "policies.mamba.policy_kwargs.torso_kwargs.d_state": 32,
                                       "policies.mamba.policy_kwargs.torso_kwargs.dt_max": 1.23456})
    assert entry["learning_rate_scale"] == 0.123 and entry["policy_kwargs"]["torso"] == "mamba"
    assert entry["policy_kwargs"]["torso_kwargs"] == {"d_state": 32, "dt_max": 1.23}
    assert "torso_kwargs" not in gen.tuned_policy("lstm", {"policies.lstm.learning_rate_scale": 1.0})["policy_kwargs"]
    with pytest.raises(ConfigError, match="algo.learning_rate.*not in its protocol space"):
        gen.tuned_policy("lstm", {"algo.learning_rate": 1e-3})


def _studies(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    for index, torso in enumerate(TORSOS):
        write_trials(runs / gen.study_name(torso) / "trials.csv", study_rows(torso, best_scale=0.3 + 0.1 * index))
    return runs


def test_tuned_board_has_every_torsos_best_values_the_full_boards_envs_and_its_own_seeds(tmp_path):
    best = gen.read_studies(_studies(tmp_path))
    text = gen.tuned_board_text(best)
    board = yaml.safe_load(text)
    full = read_yaml(REPO / "configs" / "leaderboard.yaml")
    assert board["envs"] == full["envs"] and board["train"]["seeds"] == [0, 1, 2, 3, 4]
    assert list(board["policies"]) == list(TORSOS) and board["report"] == {"baseline": "lstm"}
    for index, torso in enumerate(TORSOS):
        policy = board["policies"][torso]
        assert policy["learning_rate_scale"] == pytest.approx(0.3 + 0.1 * index)
        options = {key.rsplit(".", 1)[-1]: value for key, value in best[torso].params.items() if ".torso_kwargs." in key}
        assert policy["policy_kwargs"].get("torso_kwargs", {}) == options
        assert f"#   {torso}: trial 5, 0.900" in text
    assert best["dream"].params["policies.dream.policy_kwargs.torso_kwargs.ltc_tau_spread"] == 1.0


@needs_scale
def test_tuned_board_validates(tmp_path):
    board = gen.tuned_board(gen.read_studies(_studies(tmp_path)))
    config = validate_config({**board, "output_dir": str(tmp_path)})
    assert set(config.policies) == set(TORSOS)


def test_main_writes_the_tuned_board_or_refuses_in_one_line(tmp_path, capsys):
    runs = _studies(tmp_path)
    assert gen.main(["--tuned", "--runs", str(runs), "--out", str(tmp_path), "--seeds", "0,1,2"]) == 0
    assert yaml.safe_load((tmp_path / "leaderboard_tuned.yaml").read_text())["train"]["seeds"] == [0, 1, 2]
    (runs / gen.study_name("tcn") / "trials.csv").unlink()
    assert gen.main(["--tuned", "--runs", str(runs), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "tune-torso-tcn" in err and "no such file" in err
    with pytest.raises(SystemExit):
        gen.main(["--tuned", "--seeds", "0,100"])  # a tuning seed cannot score the board
    assert "tuning seeds" in capsys.readouterr().err
