"""`dream-rl tune`: the search-space syntax, the Optuna study, the best config."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import yaml

optuna = pytest.importorskip("optuna")

from dream_rl.cli import main  # noqa: E402
from dream_rl.experiments.config import ConfigError, apply_overrides, load_config, read_yaml  # noqa: E402
from dream_rl.experiments.tune import SearchParam, parse_tune_section, substitute  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "configs" / "tune_tmaze.yaml"

# A budget of seconds: 2 envs x 32 steps per rollout, 256 steps per run, evaluations every 64.
TINY = [
    "train.total_timesteps=256",
    "env.n_envs=2",
    "algo.n_steps=32",
    "algo.batch_size=32",
    "algo.n_epochs=2",
    "train.eval_every=64",
    "train.eval_episodes=2",
    "train.checkpoint_every=256",
    "policies.dream.policy_kwargs.lstm_hidden_size=16",
    "tune.space.policies.dream.policy_kwargs.dream_kwargs.rank.choices=[2,4]",
    "tune.space.policies.dream.policy_kwargs.net_arch.choices=[[],[16]]",
]


def test_example_config_parses_and_is_valid_without_tune():
    raw = read_yaml(EXAMPLE)
    base, settings = parse_tune_section(raw)
    assert "tune" not in base and "tune" in raw
    assert settings.policy == "dream" and settings.objective == "auc"
    keys = [p.key for p in settings.space]
    assert "algo.learning_rate" in keys and "policies.dream.policy_kwargs.dream_kwargs.rank" in keys
    lr = next(p for p in settings.space if p.key == "algo.learning_rate")
    assert lr.type == "float" and lr.log and lr.low == pytest.approx(1e-4)


def test_shipped_tune_configs_are_valid():
    from dream_rl.experiments.tune import load_tune_config

    paths = sorted((ROOT / "configs").glob("tune_*.yaml"))
    assert EXAMPLE in paths
    for path in paths:
        base, settings, tune_dir, name = load_tune_config(path)  # validates both ends of every range
        assert settings.space and tune_dir.name == name == base["name"]


def test_space_dotted_and_nested_forms_merge():
    raw = {
        "name": "x",
        "policies": {"p": {"policy": "MlpLstmPolicy"}},
        "tune": {"space": {"algo.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True}}},
    }
    # A dotted override of a bound lands in the nested form and refines the dotted entry.
    raw = apply_overrides(raw, ["tune.space.algo.learning_rate.high=1e-2", "tune.space.algo.n_epochs.type=int",
                                "tune.space.algo.n_epochs.low=1", "tune.space.algo.n_epochs.high=5"])
    _, settings = parse_tune_section(raw)
    by_key = {p.key: p for p in settings.space}
    assert by_key["algo.learning_rate"] == SearchParam("algo.learning_rate", "float", 1e-4, 1e-2, log=True)
    assert by_key["algo.n_epochs"] == SearchParam("algo.n_epochs", "int", 1, 5)
    assert settings.policy == "p"  # the only policy


@pytest.mark.parametrize(
    ("tune", "message"),
    [
        (None, "no search space: declare one in a `tune:` section"),
        ({"space": {}}, "tune.space is empty"),
        ({"space": {"algo.gamma": {"type": "normal"}}}, "tune.space.algo.gamma.type: must be float, int or categorical"),
        ({"space": {"algo.gamma": {"type": "float", "low": 1, "high": 0.5}}}, "low must be < high"),
        ({"space": {"algo.gamma": {"type": "float", "low": 0, "high": 1, "log": True}}}, "log: true needs low > 0"),
        ({"space": {"algo.gamma": {"type": "categorical", "choices": []}}}, "choices: expected a non-empty list"),
        ({"space": {"algo.gamma": 0.9}}, "tune.space.algo.gamma: expected a distribution"),
        ({"space": {"train.seeds": {"type": "int", "low": 0, "high": 3}}}, "only algo.* and policies.p.policy_kwargs.*"),
        ({"space": {"algo.gamma": {"type": "float", "low": 0.9, "high": 0.99}}, "objective": "best"}, "tune.objective"),
        ({"space": {"algo.gamma": {"type": "float", "low": 0.9, "high": 0.99}}, "policy": "q"}, "tune.policy: 'q'"),
        ({"spaces": {}}, "unknown key 'tune.spaces'"),
    ],
)
def test_bad_tune_sections(tune, message):
    raw = {"name": "x", "policies": {"p": {"policy": "MlpLstmPolicy"}}}
    if tune is not None:
        raw["tune"] = tune
    with pytest.raises(ConfigError, match=message.replace("*", r"\*").replace("(", r"\(")):
        parse_tune_section(raw)


def test_substitute_and_categorical_lists():
    raw = {"algo": {"gamma": 0.9}, "policies": {"p": {"policy": "X"}}}
    out = substitute(raw, {"algo.gamma": 0.99, "policies.p.policy_kwargs.net_arch": [64, 64]})
    assert out == {"algo": {"gamma": 0.99}, "policies": {"p": {"policy": "X", "policy_kwargs": {"net_arch": [64, 64]}}}}
    assert raw == {"algo": {"gamma": 0.9}, "policies": {"p": {"policy": "X"}}}  # untouched
    param = SearchParam("policies.p.policy_kwargs.net_arch", "categorical", choices=([], [64], [64, 64]))
    labels = param.choice_labels()
    assert labels == ["[]", "[64]", "[64, 64]"]  # Optuna stores strings for list choices
    assert param.value_of("[64]") == [64]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {json.dumps(param.suggest(study.ask())) for _ in range(20)}
    assert seen == {"[]", "[64]", "[64, 64]"}


def test_no_search_space_exits_2(tmp_path, capsys):
    assert main(["tune", str(ROOT / "configs" / "tmaze.yaml"), "--trials", "1", f"output_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "no search space" in err and "tune:" in err and "configs/tune_tmaze.yaml" in err


def test_bad_command_line_values_exit_2(tmp_path, capsys):
    for extra, message in ((["--trials", "0"], "--trials must be >= 1"), (["--trials", "1", "--workers", "0"], "--workers"),
                           (["--trials", "1", "--study-name", "a/b"], "--study-name 'a/b'")):
        assert main(["tune", str(EXAMPLE), *extra, f"output_dir={tmp_path}"]) == 2
        assert message in capsys.readouterr().err


def test_mistyped_path_fails_before_training(tmp_path, capsys):
    code = main(["tune", str(EXAMPLE), "--trials", "1", f"output_dir={tmp_path}",
                 "tune.space.algo.n_epoch.type=int", "tune.space.algo.n_epoch.low=1", "tune.space.algo.n_epoch.high=3"])
    assert code == 2
    err = capsys.readouterr().err
    assert "algo.n_epoch" in err and "did you mean 'algo.n_epochs'" in err
    assert not (tmp_path / "tune-tmaze" / "trials").exists()


def test_tune_fills_sqlite_study_and_writes_loadable_best_config(tmp_path, capsys):
    args = ["tune", str(EXAMPLE), "--trials", "3", f"output_dir={tmp_path}", *TINY]
    assert main(args) == 0
    tune_dir = tmp_path / "tune-tmaze"
    study = optuna.load_study(study_name="tune-tmaze", storage=f"sqlite:///{tune_dir / 'study.db'}")
    assert len(study.trials) == 3
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete and all(0.0 <= t.value <= 1.0 for t in complete)
    # Periodic evaluations were reported (for the pruner) at their env steps.
    assert set(complete[0].intermediate_values) <= {64, 128, 192, 256} and 256 in complete[0].intermediate_values

    best_path = tune_dir / "best_config.yaml"
    config = load_config(best_path)
    assert config.name == "tune-tmaze-best" and list(config.policies) == ["dream"]
    best = study.best_trial
    assert config.algo["learning_rate"] == pytest.approx(best.params["algo.learning_rate"])
    assert config.algo["n_epochs"] == best.params["algo.n_epochs"]
    kwargs = config.policies["dream"].policy_kwargs
    assert kwargs["dream_kwargs"]["rank"] == best.params["policies.dream.policy_kwargs.dream_kwargs.rank"]
    assert yaml.safe_dump(kwargs["net_arch"], default_flow_style=True).strip() == best.params[
        "policies.dream.policy_kwargs.net_arch"]
    assert config.train.total_timesteps == 256  # the overrides carry over
    assert "tune" not in read_yaml(best_path)

    rows = list(csv.DictReader((tune_dir / "trials.csv").open()))
    assert [int(r["number"]) for r in rows] == [0, 1, 2]
    assert json.loads(rows[0]["params"])["algo.n_epochs"] == study.trials[0].params["algo.n_epochs"]
    for number in range(3):
        run_dir = tune_dir / "trials" / "tune-tmaze" / f"trial_{number:04d}" / "dream" / "seed_0"
        assert (run_dir / "eval.csv").exists()
    out = capsys.readouterr().out
    assert "best trial" in out and "best_config.yaml" in out

    # Running again adds trials to the same study; the sampler does not repeat the first points.
    assert main([*args[:2], "--trials", "1", *args[4:]]) == 0
    study = optuna.load_study(study_name="tune-tmaze", storage=f"sqlite:///{tune_dir / 'study.db'}")
    assert len(study.trials) == 4
    assert study.trials[3].params != study.trials[0].params


def test_pruning_stops_trials_below_the_median(tmp_path):
    """A finished trial planted in the study scored 1.01 at every step (above any normalized
    score), so with the pruner's startup at 1 trial every new trial is pruned at its first
    evaluation after training starts, and its run stops there."""
    tune_dir = tmp_path / "tune-tmaze"
    tune_dir.mkdir()
    storage = f"sqlite:///{tune_dir / 'study.db'}"
    study = optuna.create_study(study_name="tune-tmaze", storage=storage, direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=1.01, intermediate_values={s: 1.01 for s in (64, 128, 192, 256)}))
    args = ["tune", str(EXAMPLE), "--trials", "2", f"output_dir={tmp_path}", *TINY,
            "tune.pruner.n_startup_trials=1", "tune.pruner.n_warmup_steps=0", "tune.objective=final"]
    assert main(args) == 0
    trials = optuna.load_study(study_name="tune-tmaze", storage=storage).trials
    assert [t.state for t in trials[1:]] == [optuna.trial.TrialState.PRUNED] * 2
    for trial in trials[1:]:
        assert list(trial.intermediate_values) == [64]
        run = tune_dir / "trials" / "tune-tmaze" / f"trial_{trial.number:04d}" / "dream" / "seed_0"
        info = json.loads((run / "run_info.json").read_text())
        assert info["status"] == "pruned" and info["timesteps"] < 256
        with (run / "eval.csv").open() as file:
            assert [int(r["timesteps"]) for r in csv.DictReader(file)] == [0, 64]


@pytest.mark.slow
def test_workers_share_a_journal_study(tmp_path):
    journal = tmp_path / "study.log"
    args = ["tune", str(EXAMPLE), "--trials", "4", "--workers", "2", "--storage", str(journal),
            "--study-name", "shared", f"output_dir={tmp_path}", *TINY]
    assert main(args) == 0
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.load_study(study_name="shared", storage=storage)
    assert len(study.trials) == 4
    assert load_config(tmp_path / "tune-tmaze" / "best_config_shared.yaml").name == "tune-tmaze-best"


def test_python_m_entry_point_has_tune():
    import subprocess

    result = subprocess.run([sys.executable, "-m", "dream_rl", "tune", "--help"], capture_output=True, text=True,
                            cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert result.returncode == 0 and "--trials" in result.stdout and "--storage" in result.stdout


def test_storage_forms(tmp_path):
    from dream_rl.experiments.tune import resolve_storage

    text, storage = resolve_storage(None, tmp_path / "exp")
    assert text == f"sqlite:///{(tmp_path / 'exp' / 'study.db').resolve()}"
    assert isinstance(storage, optuna.storages.RDBStorage)
    text, storage = resolve_storage(str(tmp_path / "other.db"), tmp_path)
    assert text.startswith("sqlite:///") and text.endswith("other.db")
    for journal in (str(tmp_path / "j" / "study.log"), f"journal:{tmp_path / 'study.txt'}"):
        text, storage = resolve_storage(journal, tmp_path)
        assert text.startswith("journal file") and isinstance(storage, optuna.storages.JournalStorage)
    with pytest.raises(ConfigError, match="--storage nosuchdb://x: cannot open it"):
        resolve_storage("nosuchdb://x", tmp_path)
