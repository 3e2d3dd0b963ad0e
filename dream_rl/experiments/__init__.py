"""Experiments from YAML: config validation (:mod:`.config`), training runs (:mod:`.runner`) and
the comparison table and plot (:mod:`.report`). The ``dream-rl`` command line drives them."""

from dream_rl.experiments.config import ConfigError, ExperimentConfig, load_config, validate_config

__all__ = ["ConfigError", "ExperimentConfig", "load_config", "validate_config"]
