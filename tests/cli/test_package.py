"""The `dream-rl` command line as a package: --help stays light, every subcommand explains itself,
`diagnose` writes the memory diagnostics, and names that moved stay importable."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from dream_rl.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("train", "compare", "report", "evaluate", "tune", "diagnose", "envs")
HEAVY = ("torch", "stable_baselines3", "sb3_contrib", "matplotlib", "optuna")


def _modules_after(code: str) -> dict[str, bool]:
    """Which of HEAVY a fresh interpreter has imported after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120,
                            env={"PYTHONPATH": str(ROOT), "PATH": "", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_help_of_every_command_imports_neither_torch_nor_sb3():
    code = ("import contextlib, io\nfrom dream_rl.cli import main\n"
            f"for args in [['--help']] + [[c, '--help'] for c in {COMMANDS!r}]:\n"
            "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "        main(args)")
    assert _modules_after(code) == dict.fromkeys(HEAVY, False)


def test_python_m_dream_rl_help_imports_no_torch():
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "dream_rl", "--help"], capture_output=True,
                            text=True, cwd=ROOT, timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert result.returncode == 0 and all(command in result.stdout for command in COMMANDS)
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "dream_rl.cli" in imported and not imported & set(HEAVY)


def test_import_dream_rl_is_light_and_names_resolve_on_first_use():
    assert _modules_after("import dream_rl") == dict.fromkeys(HEAVY, False)
    loaded = _modules_after("from dream_rl import DREAM, TORSOS\nassert DREAM.__name__ == 'DREAM' and 'gru' in TORSOS")
    assert loaded["torch"] and not loaded["stable_baselines3"]
    loaded = _modules_after("import dream_rl\nassert dream_rl.MlpDreamPolicy.__name__ == 'MlpDreamPolicy'\n"
                            "assert dream_rl.torsos.GruTorso is dream_rl.GruTorso")
    assert loaded["stable_baselines3"]


def test_every_subcommand_has_a_description(capsys):
    parser = build_parser()
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([command, "--help"])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: dream-rl {command}") and len(out.splitlines()) > 5, command


# --------------------------------------------------------------------------------------------
# diagnose

SCORES = """env,policy,seed,final_score
A-v0,mlp,0,0.2
A-v0,mlp,1,0.4
AFullObs-v0,mlp,0,0.9
AFullObs-v0,mlp,1,0.7
A-v0,gru,0,0.55
A-v0,gru,1,0.55
TMaze-L5,gru,0,1
TMaze-L5,gru,1,1
TMaze-L10,gru,0,0.5
TMaze-L10,gru,1,0.6
"""


def test_diagnose_writes_the_tables_next_to_the_scores(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    (results / "scores.csv").write_text(SCORES)
    assert main(["diagnose", str(results)]) == 0
    out = capsys.readouterr().out
    assert "## Observability gap" in out and "## Memory length" in out and "Written:" in out
    written = {path.name for path in (results / "diagnostics").iterdir()}
    assert {"diagnostics.md", "gap.csv", "recovered.csv", "memory_length.csv", "memory_length.png"} <= written

    # --out and --threshold: at 0.5 both lengths count as solved
    assert main(["diagnose", str(results / "scores.csv"), "--out", str(tmp_path / "d"), "--threshold", "0.5"]) == 0
    summary = (tmp_path / "d" / "memory_length_summary.csv").read_text().splitlines()
    assert summary[1].startswith("gru,10,")


def _exit_status(args: list[str]) -> int:
    """main's return value, or the status of an argparse exit."""
    try:
        return main(args)
    except SystemExit as exit_info:
        return int(exit_info.code)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-folder"], "no-such-folder"),
        (["SCORES", "--threshold", "2"], "--threshold: expected a number in [0, 1]"),
        (["SCORES", "--baseline", "lstm"], "no diagnostics in these scores"),
    ],
)
def test_diagnose_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scores.csv").write_text("\n".join(line for line in SCORES.splitlines() if "TMaze" not in line))
    args = [str(tmp_path / "scores.csv") if arg == "SCORES" else arg for arg in args]
    assert _exit_status(["diagnose", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


# --------------------------------------------------------------------------------------------
# moved names


def test_moved_names_stay_importable():
    from dream_rl.cli.tune import add_tune_command
    from dream_rl.experiments import launch, parallel, runner, tune
    from dream_rl.experiments.outcomes import Outcome, RunsFailed, TrainingInterrupted

    assert runner.TrainingInterrupted is TrainingInterrupted and parallel.Outcome is Outcome
    assert parallel.RunsFailed is RunsFailed
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert runner.run_experiment is launch.run_experiment
        assert runner.prepare_experiment is launch.prepare_experiment
        assert runner.check_experiment_folder is launch.check_experiment_folder
        assert tune.add_tune_command is add_tune_command
    assert len(caught) == 4 and all(issubclass(w.category, DeprecationWarning) for w in caught)
    with pytest.raises(AttributeError):
        runner.no_such_name  # noqa: B018
