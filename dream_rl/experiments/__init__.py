"""Experiments from YAML configs; the ``dream-rl`` command line (:mod:`dream_rl.cli`) drives them.

- Configs: :mod:`.config` (load, override, validate; every name importable from there), split by
  concern into :mod:`.schema`, :mod:`.fields`, :mod:`.checks`, :mod:`.names`, :mod:`.problems`,
  :mod:`.yamlio` and :mod:`.overrides`.
- Running: :mod:`.runner` (one run: train, resume, evaluate), :mod:`.callbacks` (its evaluations and
  checkpoints), :mod:`.launch` (every run of an experiment), :mod:`.parallel` (many at once: the process
  pool shared with tuning, and Ray), :mod:`.outcomes`, :mod:`.runlock`, :mod:`.records`,
  :mod:`.safe_load`, :mod:`.machine`.
- Tuning: :mod:`.tune_space` (the ``tune:`` section) and :mod:`.tune` (the Optuna study).
- Analysis: :mod:`.report` (tables and plots), :mod:`.stats` (aggregate statistics),
  :mod:`.diagnostics` (memory diagnostics).
"""

from dream_rl.experiments.config import ConfigError, ExperimentConfig, load_config, validate_config

__all__ = ["ConfigError", "ExperimentConfig", "load_config", "validate_config"]
