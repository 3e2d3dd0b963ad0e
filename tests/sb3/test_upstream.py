"""sb3-contrib's own RecurrentPPO tests, run with our policies in place of its LSTM ones.

Slow (several minutes per torso) and fetches the sb3-contrib sdist from the package index:
``pytest -m slow tests/sb3/test_upstream.py`` or ``python scripts/upstream_tests.py --torso dream``.
The contract tests and sb3-contrib's one learning run (``test_ppo_lstm_performance``: seed 1 only,
a return above 450 after 50k steps) are run apart: the learning run is a pass or a miss that float
rounding decides for some memories (README, "Memory zoo").
"""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "upstream_tests.py"
PERFORMANCE = "test_ppo_lstm_performance"


def run_upstream(torso: str, selection: str) -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--torso", torso, "--", "-k", selection],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("torso", ["dream", "gru"])
def test_upstream_recurrent_ppo_contract(torso):
    run_upstream(torso, f"not {PERFORMANCE}")


@pytest.mark.slow
@pytest.mark.parametrize("torso", [
    "dream",
    pytest.param("gru", marks=pytest.mark.xfail(
        reason="the fused GRU misses 450 at seed 1 on the development machine (passes 7 of seeds 0-7; "
               "nn.GRU itself misses seeds 0 and 4): README, Memory zoo")),
])
def test_upstream_learning_run(torso):
    run_upstream(torso, PERFORMANCE)
