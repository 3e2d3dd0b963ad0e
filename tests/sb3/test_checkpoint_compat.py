"""Checkpoints written by dream-rl 0.1.0 still load, and the loaded policies act as they did then.

The fixtures were written by ``tests/fixtures/make_checkpoints.py`` with release 0.1.0 (before the
DREAM library moved to ``dream_rl.dream`` and the torsos were reorganised)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from sb3_contrib import RecurrentPPO

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
_spec = importlib.util.spec_from_file_location("make_checkpoints", FIXTURES / "make_checkpoints.py")
make_checkpoints = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_checkpoints)


@pytest.mark.parametrize("torso", sorted(make_checkpoints.CASES))
def test_a_0_1_checkpoint_loads_and_reproduces_its_rollout(torso):
    model = RecurrentPPO.load(FIXTURES / f"checkpoint_0_1_{torso}.zip", device="cpu")
    expected = np.load(FIXTURES / f"checkpoint_0_1_{torso}.npz")
    got = make_checkpoints.rollout(model)
    np.testing.assert_array_equal(got["obs"], expected["obs"])
    np.testing.assert_array_equal(got["actions"], expected["actions"])
    np.testing.assert_allclose(got["probabilities"], expected["probabilities"], rtol=0, atol=1e-6)
