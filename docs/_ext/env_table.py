"""``.. dream-rl-env-table::``: the environment catalogue (``dream_rl.envs.list_envs()``) as a table.

With the ``:twins:`` flag, the fully observable twins (``dream_rl.envs.TWINS``) instead. Built from the
catalogue at build time, so the docs list exactly the registered envs.
"""

from __future__ import annotations

from docutils import nodes
from docutils.parsers.rst import Directive, directives
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
    option_spec = {"twins": directives.flag}

    def run(self) -> list[nodes.Node]:
        if "twins" in self.options:
            return [self._twins()]
        return [self._suite()]

    def _twins(self) -> nodes.table:
        from dream_rl.envs import TWINS

        table = nodes.table(classes=["dream-rl-env-table"])
        group = nodes.tgroup(cols=2)
        table += group
        group += nodes.colspec(colwidth=35)
        group += nodes.colspec(colwidth=65)
        head = nodes.thead()
        head += _row(["id", "description"])
        group += head
        body = nodes.tbody()
        for info in TWINS:
            body += _row([info.id, info.description])
        group += body
        return table

    def _suite(self) -> nodes.table:
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
        return table


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("dream-rl-env-table", EnvTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
