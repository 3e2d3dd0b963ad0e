"""``.. dream-rl-help:: [SUBCOMMAND]``: the ``--help`` text of the dream-rl command, as a literal block.

The text is produced at build time by running the command, so the docs never drift from the CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

_CACHE: dict[str, str] = {}


def help_text(subcommand: str) -> str:
    """The output of ``python -m dream_rl [subcommand] --help`` at a fixed width of 100 columns."""
    if subcommand not in _CACHE:
        args = [sys.executable, "-m", "dream_rl", *([subcommand] if subcommand else []), "--help"]
        env = {**os.environ, "COLUMNS": "100", "OMP_NUM_THREADS": "1"}
        result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
        if result.returncode != 0:
            raise ExtensionError(f"`{' '.join(args[2:])}` failed: {result.stderr.strip().splitlines()[-1:]}")
        _CACHE[subcommand] = result.stdout.rstrip()
    return _CACHE[subcommand]


class DreamRLHelp(Directive):
    optional_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        subcommand = self.arguments[0] if self.arguments else ""
        prompt = f"$ dream-rl {subcommand} --help".replace("  ", " ")
        text = f"{prompt}\n{help_text(subcommand)}"
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("dream-rl-help", DreamRLHelp)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
