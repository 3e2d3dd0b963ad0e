"""The security model (docs/security.md): a config, an override, a results folder or a model file
makes dream-rl import or call nothing outside dream_rl, gymnasium's registry and the names a user
registers in Python. Each test plants a payload that would create a file and checks that the file
is never created."""

from __future__ import annotations

import base64
import json
import pickle
import time
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
import yaml

import dream_rl  # noqa: F401  (registers the suite)
from dream_rl.cli import main
from dream_rl.envs.wrappers import BUILDS_ENV_BY_NAME, check_registered_id
from dream_rl.errors import ConfigError, EnvError
from dream_rl.experiments.config import apply_overrides, load_config, parse_override, read_yaml, validate_config
from dream_rl.experiments.runner import build_model, evaluate_run, make_vec_env
from dream_rl.experiments.safe_load import REPLACED_ENTRIES, pickled_entries
from tests.experiments.test_experiments import base_config, write_config


def one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI; it must exit 2 with one line on stderr and no traceback. Returns that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# --------------------------------------------------------------------------------------------
# BUG 1: a config's RL2 `env` (and any env id) never names code


def rl2_payload(marker: Path, target: str = "os:system") -> list[str]:
    kwargs = {"env": target, "env_kwargs": {"command": f"touch {marker}", "cmd": f"touch {marker}"}}
    return ["env.id=dream_rl/RL2-v0", "env.kwargs=" + json.dumps(kwargs), "env.n_envs=1"]


@pytest.mark.parametrize("target", ["os:system", "subprocess:getoutput"])
def test_rl2_env_entry_point_in_a_config_runs_nothing(tmp_path, capsys, target):
    marker = tmp_path / "PWNED"
    path = write_config(tmp_path, base_config(tmp_path))
    err = one_line_exit_2(["train", str(path), "--dry-run", *rl2_payload(marker, target)], capsys)
    assert target in err and "registered gymnasium id" in err and "'module:callable' entry points are not accepted" in err
    assert not marker.exists()


def test_rl2_env_from_a_module_of_the_working_directory_is_not_imported(tmp_path, capsys, monkeypatch):
    marker = tmp_path / "IMPORTED"
    (tmp_path / "evilmod_21.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Foo:\n    pass\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_config(tmp_path, base_config(tmp_path))
    one_line_exit_2(["train", str(path), "--dry-run", "env.id=dream_rl/RL2-v0", "env.kwargs={env: 'evilmod_21:Foo'}"], capsys)
    # gymnasium's make("module:Name-v0") imports `module` first: an env id with ':' is refused before that
    err = one_line_exit_2(["train", str(path), "--dry-run", "env.id=evilmod_21:Foo-v0"], capsys)
    assert "'evilmod_21:Foo-v0' is not a registered gymnasium environment" in err
    assert not marker.exists()


@pytest.mark.parametrize("value", ["os:system", "NoSuchEnv-v9", "dream_rl.envs.bandit:BanditEnv", 3, None])
def test_rl2_env_must_be_a_registered_id(value):
    kwargs = {} if value is None else {"env": value}
    if value is None:  # the default: the plain 5-armed bandit
        env = gym.make("dream_rl/RL2-v0", **kwargs)
        assert env.observation_space.shape == (7,)
        return
    with pytest.raises(EnvError, match=r"must be a registered gymnasium id .*got " + repr(value).replace(".", r"\.")):
        gym.make("dream_rl/RL2-v0", **kwargs)


def test_an_env_the_user_registers_in_python_is_accepted():
    from dream_rl.envs.bandit import BanditEnv

    gym.register("MyBandit21-v0", entry_point=BanditEnv, kwargs={"n_arms": 3})
    try:
        env = gym.make("dream_rl/RL2-v0", env="MyBandit21-v0", episodes_per_trial=2)
        assert env.observation_space.shape == (5,)  # 3 arms + reward + flag
        config = validate_config(apply_overrides(base_config(), [
            "env.id=dream_rl/RL2-v0", "env.kwargs={env: MyBandit21-v0}", "policies={lstm: MlpLstmPolicy}"]))
        assert config.env.kwargs == {"env": "MyBandit21-v0"}
    finally:
        del gym.registry["MyBandit21-v0"]


@pytest.mark.parametrize("env_id", sorted(BUILDS_ENV_BY_NAME))
def test_ids_that_build_an_env_by_name_are_refused(env_id):
    with pytest.raises(EnvError, match="builds an env named in its kwargs"):
        check_registered_id(env_id)
    with pytest.raises(ConfigError, match="builds an env named in its kwargs"):
        validate_config(apply_overrides(base_config(), [f"env.id={env_id}", "env.kwargs={}"]))


def test_popgym_id_kwarg_is_not_an_import(tmp_path, monkeypatch):
    pytest.importorskip("popgym")
    marker = tmp_path / "IMPORTED"
    (tmp_path / "evilpop_21.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(EnvError, match="popgym_id must be one of POPGym's registered ids"):
        gym.make("popgym/RepeatPreviousEasy-v0", popgym_id="evilpop_21:Foo-v0")
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# BUG 2: `report` reads files only; `evaluate` builds envs only from registered ids


class TouchingEnv(gym.Env):
    """A registered env whose constructor leaves a mark: building it is visible."""

    marker: Path | None = None

    def __init__(self, **kwargs: Any) -> None:
        if TouchingEnv.marker is not None:
            TouchingEnv.marker.touch()
        self.observation_space = gym.spaces.Box(0, 1, (2,))
        self.action_space = gym.spaces.Discrete(2)


def results_folder(tmp_path: Path, env: dict[str, Any]) -> Path:
    """runs/shared/: a finished run's files as a colleague would share them, its config naming ``env``."""
    raw = {"name": "shared", "env": env, "policies": {"lstm": {"policy": "MlpLstmPolicy"}},
           "train": {"total_timesteps": 64}, "output_dir": str(tmp_path / "runs")}
    experiment = tmp_path / "runs" / "shared"
    run_dir = experiment / "lstm" / "seed_0"
    run_dir.mkdir(parents=True)
    for folder in (experiment, run_dir):
        (folder / "config.yaml").write_text(yaml.safe_dump(raw))
    (run_dir / "eval.csv").write_text(
        "timesteps,mean_return,std_return,mean_score,std_score,mean_length,episodes,seconds\n0,1,0,,,5,4,0.1\n64,2,0,,,5,4,0.1\n")
    (run_dir / "run_info.json").write_text('{"status": "completed", "timesteps": 64, "steps_per_second": 100}')
    return experiment


def test_report_on_a_results_folder_builds_no_env(tmp_path, capsys):
    marker = tmp_path / "BUILT"
    gym.register("Touching21-v0", entry_point=TouchingEnv)
    TouchingEnv.marker = marker
    try:
        experiment = results_folder(tmp_path, {"id": "Touching21-v0", "n_envs": 1})
        assert main(["report", str(experiment)]) == 0
        assert "| lstm (`MlpLstmPolicy`) |" in capsys.readouterr().out
        assert (experiment / "comparison.md").exists()
        assert not marker.exists(), "report built the env"
    finally:
        TouchingEnv.marker = None
        del gym.registry["Touching21-v0"]


def test_report_of_a_folder_writes_only_into_that_folder(tmp_path, capsys, monkeypatch):
    """A results folder's config.yaml names an output_dir (where it was trained, or anywhere): a
    report of the folder reads and writes the folder it is given, wherever it was copied to."""
    experiment = results_folder(tmp_path / "theirs", {"id": "dream_rl/TMaze-v0", "n_envs": 1})
    elsewhere = tmp_path / "elsewhere"
    for config in experiment.rglob("config.yaml"):
        raw = yaml.safe_load(config.read_text())
        raw["output_dir"] = str(elsewhere)
        config.write_text(yaml.safe_dump(raw))
    copy = tmp_path / "mine" / "shared-copy"
    import shutil

    shutil.copytree(experiment, copy)
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(copy.relative_to(tmp_path))]) == 0
    assert (copy / "comparison.md").exists() and not elsewhere.exists()
    (copy / "comparison.md").unlink()
    assert main(["report", str(copy / "lstm" / "seed_0")]) == 0  # a run folder: its experiment's report
    assert (copy / "comparison.md").exists() and not elsewhere.exists()


def test_report_and_evaluate_of_a_planted_rl2_payload_run_nothing(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    experiment = results_folder(tmp_path, {"id": "dream_rl/RL2-v0", "n_envs": 1, "kwargs": {
        "env": "os:system", "env_kwargs": {"command": f"touch {marker}"}}})
    assert main(["report", str(experiment)]) == 0  # the data is fine; nothing named in it is called
    capsys.readouterr()
    (experiment / "lstm" / "seed_0" / "final_model.zip").write_bytes(b"PK")
    err = one_line_exit_2(["evaluate", str(experiment)], capsys)
    assert "cannot be built" in err and "'os:system'" in err
    assert not marker.exists()


def test_evaluate_builds_only_registered_ids(tmp_path):
    run_dir = results_folder(tmp_path, {"id": "NotRegistered21-v0", "n_envs": 1}) / "lstm" / "seed_0"
    with pytest.raises(ConfigError, match="'NotRegistered21-v0' is not a registered gymnasium environment"):
        evaluate_run(run_dir)
    config = validate_config(base_config(tmp_path))
    forged = config.env.model_construct(id="evilmod_21:Foo-v0", kwargs={}, n_envs=1, vec_env="dummy")
    with pytest.raises(ConfigError, match="must be a registered gymnasium id"):
        make_vec_env(forged, n_envs=1, seed=0)


# --------------------------------------------------------------------------------------------
# Model files: loaded without unpickling anything


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def saved_model(tmp_path: Path) -> tuple[Path, Any]:
    config = validate_config(base_config(tmp_path))
    run = config.run("gru", 0)
    env = make_vec_env(run.env, n_envs=1, seed=0)
    path = tmp_path / "model.zip"
    build_model(run, env).save(path)
    env.close()
    return path, config


def rewrite_data(path: Path, change: Any) -> None:
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(members["data"])
    change(data)
    members["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)


def pickled(obj: Any) -> dict[str, str]:
    return {":type:": "<class 'object'>", ":serialized:": base64.b64encode(pickle.dumps(obj)).decode()}


def test_a_saved_model_pickles_only_entries_dream_rl_rebuilds(tmp_path):
    path, _ = saved_model(tmp_path)
    assert set(pickled_entries(path)) <= set(REPLACED_ENTRIES)


@pytest.mark.parametrize("entry", ["policy_class", "observation_space", "lr_schedule"])
def test_a_pickled_payload_in_a_model_file_is_never_unpickled(tmp_path, capsys, entry):
    marker = tmp_path / "PWNED"
    path, config = saved_model(tmp_path)
    rewrite_data(path, lambda data: data.__setitem__(entry, pickled(Payload(marker))))
    run_dir = config.run("gru", 0).run_dir
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.run("gru", 0).config.to_dict()))
    (run_dir / "run_info.json").write_text("{}")
    assert main(["evaluate", str(run_dir), "--model", str(path), "--episodes", "1"]) == 0  # the entry is rebuilt
    assert not marker.exists()


def test_a_model_file_with_an_unknown_pickled_entry_is_refused(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    path, config = saved_model(tmp_path)
    rewrite_data(path, lambda data: data.__setitem__("extra_entry", pickled(Payload(marker))))
    run_dir = config.run("gru", 0).run_dir
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.run("gru", 0).config.to_dict()))
    (run_dir / "run_info.json").write_text("{}")
    err = one_line_exit_2(["evaluate", str(run_dir), "--model", str(path)], capsys)
    assert "pickled entries that dream-rl does not unpickle (extra_entry)" in err
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# YAML: tags, alias bombs, nesting


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    lines = ["a0: &a0 [x,x,x,x,x,x,x,x,x]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ",".join([f"*a{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_the_alias_bomb_is_refused_within_a_second(tmp_path, capsys):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    assert len(path.read_bytes()) < 450
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="expands to more than 100,000 values"):
        read_yaml(path)
    with pytest.raises(ConfigError, match="expands to more than"):
        parse_override("train.seeds=" + "{" + alias_bomb().replace("\n", ", ").rstrip(", ") + "}")
    assert time.perf_counter() - start < 1.0
    one_line_exit_2(["train", str(path), "--dry-run"], capsys)


def test_shared_aliases_that_stay_small_are_fine(tmp_path):
    text = "d: &d {a: 1, b: [1, 2, 3]}\n" + "".join(f"k{i}: *d\n" for i in range(200)) + "m: {<<: *d, b: 2}\n"
    path = tmp_path / "ok.yaml"
    path.write_text(text)
    data = read_yaml(path)
    assert data["k199"] == {"a": 1, "b": [1, 2, 3]} and data["m"] == {"a": 1, "b": 2}


@pytest.mark.parametrize("text", ["x: " + "[" * 5000 + "]" * 5000, "x: " + "{a: " * 3000 + "1" + "}" * 3000,
                                  "".join(" " * i + "a:\n" for i in range(1200)) + " " * 1200 + "1\n"])
def test_deep_nesting_is_a_one_line_error_within_a_second(tmp_path, text):
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="nests"):
        read_yaml(path)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("value", ["!!python/object/apply:os.system ['touch PWNED']", "!!python/name:os.system", "!custom 1"])
def test_a_tag_in_an_override_gets_a_hint_and_runs_nothing(tmp_path, capsys, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    path = write_config(tmp_path, base_config(tmp_path))
    err = one_line_exit_2(["train", str(path), "--dry-run", f"algo.gamma={value}"], capsys)
    assert "is not allowed: a config holds plain values only" in err
    assert not (tmp_path / "PWNED").exists()


def test_class_names_resolve_through_fixed_tables_only(tmp_path):
    for value in ("os.system", "torch.nn.ReLU", "builtins:eval", "nn.ReLU"):
        with pytest.raises(ConfigError, match="unknown class"):
            validate_config(apply_overrides(base_config(tmp_path), [f"policies.gru.policy_kwargs.activation_fn={value}"]))
    with pytest.raises(ConfigError, match="unknown policy"):
        validate_config(apply_overrides(base_config(tmp_path), ["policies.gru.policy=os:system"]))
    with pytest.raises(ConfigError, match="unknown torso"):
        validate_config(apply_overrides(base_config(tmp_path), [
            "policies.gru={policy: MlpTorsoPolicy, policy_kwargs: {torso: 'os:system'}}"]))


def test_tune_sampler_arguments_that_take_functions_are_refused(tmp_path, capsys):
    pytest.importorskip("optuna")
    raw = base_config(tmp_path)
    raw["policies"] = {"gru": raw["policies"]["gru"]}
    raw["tune"] = {"space": {"algo.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-3}},
                   "sampler": {"constraints_func": "os:system"}}
    path = write_config(tmp_path, raw)
    err = one_line_exit_2(["tune", str(path), "--trials", "1"], capsys)
    assert "tune.sampler.constraints_func: TPESampler's constraints_func takes a function" in err
    assert load_config  # (the config itself is valid: only its tune section is refused)
