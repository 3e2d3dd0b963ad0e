"""``.. dream-rl-env-table::``: the environment catalogue (``dream_rl.envs.list_envs()``) as a table.

Built from the catalogue at build time, so the docs list exactly the registered suite.
"""

from __future__ import annotations

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.application import Sphinx

APPROX = "\u2248\u00a0"  # "≈" and a no-break space, so the value stays on one line
COLUMNS = (("id", 30), ("family", 12), ("random", 8), ("optimal", 8), ("description", 42))


def _row(cells: list[str]) -> nodes.row:
    row = nodes.row()
    for text in cells:
        paragraph = nodes.paragraph()
        paragraph += nodes.literal(text, text) if text.startswith("dream_rl/") else nodes.Text(text)
        entry = nodes.entry()
        entry += paragraph
        row += entry
    return row


class EnvTable(Directive):
    has_content = False

    def run(self) -> list[nodes.Node]:
        from dream_rl.envs import list_envs

        table = nodes.table(classes=["dream-rl-env-table"])
        group = nodes.tgroup(cols=len(COLUMNS))
        table += group
        for _, width in COLUMNS:
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        head += _row([name for name, _ in COLUMNS])
        group += head
        body = nodes.tbody()
        for info in list_envs():
            optimal = f"{info.optimal_return:g}" if info.optimal_exact else f"{APPROX}{info.optimal_return:g}"
            body += _row([info.id, info.family, f"{info.random_return:g}", optimal, info.description])
        group += body
        return [table]


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("dream-rl-env-table", EnvTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
