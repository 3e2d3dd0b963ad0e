"""Run sb3-contrib's own RecurrentPPO tests with its LSTM policies swapped for ours.

sb3-contrib ships its tests in its source distribution on PyPI. This script downloads that sdist
(the version installed here), extracts ``tests/test_lstm.py``, ``tests/test_deterministic.py`` and
``tests/test_cnn.py`` into a temporary folder, adds a conftest that maps the policy names
``MlpLstmPolicy``/``CnnLstmPolicy``/``MultiInputLstmPolicy`` to our policies with the chosen memory
(the named DREAM/GRU/LSTM policies for those torsos, ``MlpTorsoPolicy`` with ``torso=NAME`` for any other
registered torso) and makes the stock recurrent policy's constructor fail (so a missed swap cannot
pass silently), and runs pytest there. ``--seed N`` makes every ``RecurrentPPO`` the tests build use
seed N instead of the test's own: ``test_ppo_lstm_performance`` is a single learning run at seed 1,
and this measures how often it passes over seeds. Exit status: pytest's.

    python scripts/upstream_tests.py --torso dream
    python scripts/upstream_tests.py --torso ffm -- -k lstm -x
    python scripts/upstream_tests.py --torso gru --seed 3 -- -k test_ppo_lstm_performance
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

TEST_FILES = ("test_lstm.py", "test_deterministic.py", "test_cnn.py")

CONFTEST = '''
import os

import pytest
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy

import dream_rl

_TORSO = os.environ["DREAM_RL_UPSTREAM_TORSO"]
_SEED = os.environ.get("DREAM_RL_UPSTREAM_SEED", "")
_NAMED = {"dream": "Dream", "gru": "Gru", "lstm": "LstmTorso"}


def _policy(kind):
    """The named policy of this torso, or the generic torso policy with the torso fixed."""
    if _TORSO in _NAMED:
        return dream_rl.POLICIES[f"{kind}{_NAMED[_TORSO]}Policy"]
    generic = dream_rl.POLICIES[f"{kind}TorsoPolicy"]

    def __init__(self, *args, **kwargs):
        kwargs["torso"] = _TORSO  # also when a saved model is loaded with its constructor arguments
        generic.__init__(self, *args, **kwargs)

    return type(f"{kind}{_TORSO.title()}Policy", (generic,), {"__init__": __init__})


_SWAPS = {f"{kind}LstmPolicy": _policy(kind) for kind in ("Mlp", "Cnn", "MultiInput")}


def _stock_constructor_called(self, *args, **kwargs):
    raise RuntimeError("the stock LSTM policy was built: the policy swap missed this test")


@pytest.fixture(autouse=True)
def _swap_recurrent_policies(monkeypatch):
    for name, policy_class in _SWAPS.items():
        monkeypatch.setitem(RecurrentPPO.policy_aliases, name, policy_class)
    monkeypatch.setattr(RecurrentActorCriticPolicy, "__init__", _stock_constructor_called)
    if _SEED:
        build = RecurrentPPO.__init__

        def seeded(self, *args, **kwargs):
            kwargs["seed"] = int(_SEED)
            build(self, *args, **kwargs)

        monkeypatch.setattr(RecurrentPPO, "__init__", seeded)


def pytest_report_header(config):
    seed = f"; every RecurrentPPO seeded with {_SEED}" if _SEED else ""
    return "dream-rl swap: " + ", ".join(f"{k} -> {v.__name__}" for k, v in _SWAPS.items()) + seed
'''

PYTEST_INI = """[pytest]
markers =
    slow: marks tests as slow
filterwarnings =
    ignore::DeprecationWarning
"""


def fetch_tests(destination: Path) -> str:
    """Download the installed sb3-contrib version's sdist and extract its test files."""
    from importlib.metadata import version

    sb3_contrib_version = version("sb3-contrib")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
         f"sb3-contrib=={sb3_contrib_version}", "-d", str(destination)],
        check=True,
    )
    (archive,) = destination.glob("sb3_contrib-*.tar.gz")
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if Path(member.name).parent.name == "tests" and Path(member.name).name in TEST_FILES:
                member.name = Path(member.name).name
                tar.extract(member, destination / "tests", filter="data")
    return sb3_contrib_version


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from dream_rl import TORSOS

    parser.add_argument("--torso", choices=sorted(TORSOS), default="dream",
                        help="the memory (a name in dream_rl.TORSOS) whose policies replace the LSTM policies "
                             "(default: dream)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed every RecurrentPPO the tests build with this instead of the test's own "
                             "(to measure the one-seed test_ppo_lstm_performance at other seeds)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sb3c-upstream-") as tmp:
        root = Path(tmp)
        sb3_contrib_version = fetch_tests(root)
        (root / "tests" / "conftest.py").write_text(CONFTEST)
        (root / "pytest.ini").write_text(PYTEST_INI)
        print(f"sb3-contrib {sb3_contrib_version} tests {', '.join(TEST_FILES)} with the {args.torso} policies", flush=True)
        env = {**os.environ, "DREAM_RL_UPSTREAM_TORSO": args.torso,
               "DREAM_RL_UPSTREAM_SEED": "" if args.seed is None else str(args.seed)}
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", *args.pytest_args]
        return subprocess.run(command, cwd=root, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
