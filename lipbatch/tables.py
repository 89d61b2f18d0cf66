"""Listings (``status``, ``voices``, ``avatars``) that never cut a word or a path.

A rich table squeezed into 80 columns folds long cells mid-word: an output path
or a voice id cut in two cannot be copied back into a manifest. So:

- Piped (not a terminal): one record per line, tab-separated under a header
  line, whatever the length (``cut -f``, ``grep`` and spreadsheets read it).
- On a terminal, a table when every column fits whole (prose columns may wrap,
  at spaces only); otherwise one block per record, ``name: value`` per line,
  prose wrapped at spaces and anything longer left to the terminal.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

_CELL_OVERHEAD = 3  # a border and a space either side per column, plus one closing border


def cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def _min_width(values: Sequence[str], prose: bool) -> int:
    words = [word for value in values for word in value.split()] if prose else list(values)
    return max((cell_len(word) for word in words), default=0)


def fits(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], width: int,
         prose: frozenset[str] = frozenset()) -> bool:
    """True when a table shows every cell without cutting a word (prose columns wrap at spaces)."""
    needed = 1
    for column in columns:
        values = [cell(row.get(column)) for row in rows] + [column]
        needed += _min_width(values, column in prose) + _CELL_OVERHEAD
    return needed <= width


def print_listing(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, title: str | None = None,
                  prose: Sequence[str] = (), console: Console | None = None) -> None:
    """``rows`` under ``columns``: TSV when piped, a table or record blocks on a terminal."""
    console = console or Console()
    prose_set = frozenset(prose)
    if not console.is_terminal:
        out = console.file
        if title:
            print(f"# {title}", file=out)
        print("\t".join(columns), file=out)
        for row in rows:
            print("\t".join(cell(row.get(c)).replace("\t", " ").replace("\n", " ") for c in columns), file=out)
        return
    if title:
        console.print(Text(title, style="bold"))
    if fits(rows, columns, console.width, prose_set):
        table = Table()
        for column in columns:
            table.add_column(column, no_wrap=column not in prose_set, overflow="fold")
        for row in rows:
            table.add_row(*(cell(row.get(c)) for c in columns))
        console.print(table)
        return
    width = max(20, console.width - 4)
    for row in rows:
        console.print(Text(cell(row.get(columns[0])), style="bold"), soft_wrap=True)
        for column in columns[1:]:
            text = f"{column}: {cell(row.get(column))}"
            lines = textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False,
                                  subsequent_indent="    ") or [text]
            for line in lines:
                console.print(Text("  " + line), soft_wrap=True)
