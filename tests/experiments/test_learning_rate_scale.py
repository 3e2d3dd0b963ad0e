"""PolicyConfig.learning_rate_scale: a per-policy multiple of each env's learning rate."""

from __future__ import annotations

import pytest

from dream_rl.experiments.config import ConfigError, apply_overrides, config_to_yaml, load_config, validate_config
from dream_rl.experiments.runner import algo_arguments, build_model, load_model, make_vec_env
from dream_rl.experiments.tune import parse_tune_section, substitute
from tests.experiments.test_experiments import base_config, write_config


def two_envs(tmp_path) -> dict:
    """base_config on two envs: the first with the top-level learning rate (1e-3), the second with its own."""
    raw = base_config(tmp_path)
    env = raw.pop("env")
    raw["envs"] = [dict(env, label="a"), dict(env, label="b", algo={"learning_rate": 4e-4})]
    return raw


def test_default_is_one_and_the_resolved_config_keeps_it(tmp_path):
    config = validate_config(base_config(tmp_path))
    assert {label: p.learning_rate_scale for label, p in config.policies.items()} == {"dream": 1.0, "lstm": 1.0, "gru": 1.0}
    assert "learning_rate_scale: 1.0" in config_to_yaml(config)
    scaled = validate_config(apply_overrides(base_config(tmp_path), ["policies.gru.learning_rate_scale=2.5"]))
    path = write_config(tmp_path, scaled.to_dict())
    assert load_config(path).policies["gru"].learning_rate_scale == 2.5  # round trip through config.yaml


@pytest.mark.parametrize("value", ["0", "-1", "abc", "true", ".inf"])
def test_a_scale_that_is_not_a_positive_number_is_one_line(tmp_path, value):
    with pytest.raises(ConfigError) as info:
        validate_config(apply_overrides(base_config(tmp_path), [f"policies.gru.learning_rate_scale={value}"]))
    message = str(info.value)
    assert message.startswith("policies.gru.learning_rate_scale: ") and "\n" not in message


def test_the_runner_multiplies_each_envs_learning_rate(tmp_path):
    raw = apply_overrides(two_envs(tmp_path), ["policies.gru.learning_rate_scale=2.5"])
    config = validate_config(raw)
    for env_label, base_rate in (("a", 1e-3), ("b", 4e-4)):
        gru, lstm = config.run("gru", 0, env_label), config.run("lstm", 0, env_label)
        assert algo_arguments(gru)["learning_rate"] == pytest.approx(2.5 * base_rate)
        assert algo_arguments(lstm)["learning_rate"] == base_rate  # 1.0: untouched
        assert gru.algo["learning_rate"] == base_rate  # the config's own values stay as written
        env = make_vec_env(gru.env, 1, seed=0)
        try:
            model = build_model(gru, env)
            assert model.learning_rate == pytest.approx(2.5 * base_rate)
            assert model.policy.optimizer.param_groups[0]["lr"] == pytest.approx(2.5 * base_rate)
            # a resumed run trains with the same scaled rate
            model.save(tmp_path / f"{env_label}.zip")
            loaded = load_model(tmp_path / f"{env_label}.zip", env, gru, "test")
            assert loaded.learning_rate == pytest.approx(2.5 * base_rate)
        finally:
            env.close()


def test_tune_may_search_the_scale_of_its_policy(tmp_path):
    raw = base_config(tmp_path)
    raw["tune"] = {"policy": "gru", "space": {"policies.gru.learning_rate_scale": {"type": "float", "low": 0.25,
                                                                                    "high": 4.0, "log": True}}}
    base, settings = parse_tune_section(raw)
    (param,) = settings.space
    assert (param.key, param.low, param.high, param.log) == ("policies.gru.learning_rate_scale", 0.25, 4.0, True)
    config = validate_config(substitute(base, {param.key: 3.0}))
    assert config.policies["gru"].learning_rate_scale == 3.0
    raw["tune"]["space"] = {"policies.lstm.learning_rate_scale": {"type": "float", "low": 0.5, "high": 2.0}}
    with pytest.raises(ConfigError, match=r"tune.space.policies.lstm.learning_rate_scale: only algo"):
        parse_tune_section(raw)
