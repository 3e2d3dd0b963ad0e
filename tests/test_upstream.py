"""sb3-contrib's own RecurrentPPO tests, run with our policies in place of its LSTM ones.

Slow (several minutes per family) and fetches the sb3-contrib sdist from PyPI:
``pytest -m slow tests/test_upstream.py`` or ``python scripts/upstream_tests.py --torso dream``.
"""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "upstream_tests.py"


@pytest.mark.slow
@pytest.mark.parametrize("torso", ["dream", "gru"])
def test_upstream_recurrent_ppo_suite(torso):
    result = subprocess.run([sys.executable, str(SCRIPT), "--torso", torso], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
