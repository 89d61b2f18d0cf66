"""The review page: one self-contained HTML file (styles and script inlined) plus poster thumbnails.

It lives at ``<output_dir>/review/index.html`` and names every video, take and
thumbnail by a path relative to itself, so it works from file://, from
``lipbatch review --serve`` (which serves the output folder at its root) and
from a zip of the folder sent to a client. Nothing is fetched from anywhere
else. The grid is plain HTML; the script only filters, moves the selection,
plays and, when served, posts decisions.
"""

from __future__ import annotations

import json
from html import escape
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from lipbatch.model import Project
from lipbatch.paths import REVIEW_DIR
from lipbatch.review.decisions import decisions_path, read_decisions
from lipbatch.review.grid import NO_LANGUAGE, Cell, Grid, Group, Take, build_grid
from lipbatch.review.judging import UNDECIDED
from lipbatch.state import atomic_write_bytes
from lipbatch.state.backend import read_backend

THUMBS_DIR = "thumbs"
DECISION_FILTERS = ("approved", "rejected", UNDECIDED, "no take")


def review_dir(project: Project) -> Path:
    return project.output_dir / REVIEW_DIR


def load_grid(project: Project, *, sandbox: bool, url: str | None = None) -> Grid:
    """Read the state (``url``: a shared one, without claiming) and decisions and make the posters (blocks: PyAV)."""
    decisions = read_decisions(decisions_path(project.manifest_path, sandbox=sandbox))
    return build_grid(project, read_backend(project, url).loaded, decisions, review_dir(project) / THUMBS_DIR,
                      rehearsal=sandbox)


def write_page(project: Project, *, sandbox: bool, url: str | None = None) -> Path:
    """Write ``<output_dir>/review/index.html`` (and its thumbnails); drop thumbnails no take uses now."""
    grid = load_grid(project, sandbox=sandbox, url=url)
    folder = review_dir(project)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "index.html"
    atomic_write_bytes(target, render_page(grid, served=False).encode("utf-8"))
    used = {take.preview.poster for cell in grid.cells() for take in (cell.current, *cell.earlier) if take}
    thumbs = folder / THUMBS_DIR
    for old in thumbs.iterdir() if thumbs.is_dir() else ():
        if old.is_file() and old.name not in used:
            old.unlink()
    return target


def _asset(name: str) -> str:
    return resources.files("lipbatch.review").joinpath("assets", name).read_text(encoding="utf-8")


def _url(path: str) -> str:
    """A path under the output folder, as seen from review/index.html."""
    return "../" + quote(path, safe="/")


def _amount(value: float) -> str:
    return f"{value:,.10g}" if value != int(value) else f"{int(value):,}"


def render_page(grid: Grid, *, served: bool) -> str:
    """The page's HTML; ``served`` pages post decisions, file pages say how to record them."""
    name = grid.project.manifest_path.name
    config = {"served": served, "command": f"lipbatch review {name}" + (" --sandbox" if grid.rehearsal else "")}
    body = "".join(_group(group, grid.columns) for group in grid.groups)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>Review: {escape(name)}</title>
<style>{_asset("review.css")}</style>
</head>
<body class="{"served" if served else "file"}">
{_header(grid)}
<main>{body}</main>
<dialog id="reject-dialog"><form method="dialog">
<p>Reject <strong id="reject-what"></strong>: what is wrong?</p>
<input id="reject-note" name="note" maxlength="500" required autocomplete="off" placeholder="e.g. lips drift after 2 s">
<menu><button type="button" value="cancel">Cancel</button><button value="reject" id="reject-confirm">Reject</button></menu>
</form></dialog>
<div id="toast" role="status" hidden></div>
<script type="application/json" id="review-config">{_json(config)}</script>
<script>{_asset("review.js")}</script>
</body>
</html>
"""


def _header(grid: Grid) -> str:
    """Title, counts per status (click: filter), credits per account, filters and the keys."""
    counts = grid.counts()
    options = {"lang": grid.columns, "account": [group.account for group in grid.groups], "status": sorted(counts),
               "decision": list(DECISION_FILTERS)}
    filters = "".join(
        f'<label>{name} <select id="filter-{name}" data-filter="{name}"><option value="">all</option>'
        + "".join(f'<option value="{escape(v)}">{escape(v)}</option>' for v in values) + "</select></label>"
        for name, values in options.items())
    chips = "".join(f'<button type="button" class="chip s-{_css(name)}" data-status-chip="{escape(name)}">'
                    f"{count} {escape(name)}</button>" for name, count in sorted(counts.items()))
    credits = " · ".join(f'<span data-credits="{escape(g.account)}">{escape(g.account)} {_amount(g.credits)}</span>'
                         for g in grid.groups if g.credits)
    unreported = [g.account for g in grid.groups if not g.credits]
    if unreported:
        credits += f' <span class="unreported">(none reported: {escape(", ".join(unreported))})</span>'
    rehearsal = '<span class="badge rehearsal">REHEARSAL (sandbox)</span>' if grid.rehearsal else ""
    return f"""<header>
<h1>{escape(grid.project.manifest_path.name)} {rehearsal}<span class="total">{sum(counts.values())} jobs</span></h1>
<div class="summary"><span class="label">status</span> {chips}
<span class="label">credits charged</span> <span class="credits">{credits}</span></div>
<form class="filters" onsubmit="return false">{filters}<span id="shown"></span>
<span class="keys">←↑↓→ / j k move · space play · a approve · r reject</span></form>
</header>"""


def _json(data: object) -> str:
    return json.dumps(data, ensure_ascii=False).replace("</", "<\\/")


def _css(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name)


def _group(group: Group, columns: list[str]) -> str:
    used = [c for c in columns if any(c in row.cells for row in group.rows)]
    jobs = sum(len(row.cells) for row in group.rows)
    head = "".join(f'<th scope="col" data-column="{escape(c)}">{escape(c)}</th>' for c in used)
    rows = []
    for row in group.rows:
        slots = "".join(
            f'<td data-column="{escape(c)}">{_cell(row.cells[c])}</td>' if c in row.cells
            else f'<td data-column="{escape(c)}" class="empty"></td>' for c in used)
        rows.append(f'<tr><th scope="row"><span class="clip">{escape(row.clip)}</span>'
                    f'<span class="what">{escape(row.what)}</span></th>{slots}</tr>')
    credits = f" · {_amount(group.credits)} credits charged" if group.credits else ""
    return (f'<section class="group" data-account="{escape(group.account)}">'
            f'<h2>{escape(group.account)} <small>{escape(group.kind)} · {jobs} jobs{credits}</small></h2>'
            f'<table class="grid"><thead><tr><th></th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            "</section>")


def _cell(cell: Cell) -> str:
    job = cell.job
    earlier = "".join(_take(t, "earlier") for t in reversed(cell.earlier))
    if cell.current is not None:
        takes = _take(cell.current, "current" if earlier else "") + earlier
    else:
        takes = f'<div class="no-take">{"failed" if cell.status == "failed" else "no take yet"}</div>{earlier}'
    facts = [f"take {cell.take}" if cell.take is not None else None,
             f"{cell.current.preview.duration:.1f} s" if cell.current and cell.current.preview.duration else None,
             f"{_amount(cell.credits)} credits" if cell.credits is not None else None,
             f'<code>{job.key[:12]}</code>']
    copies = f' <span class="copies">+{len(job.outputs) - 1} copies</span>' if len(job.outputs) > 1 else ""
    decision = cell.decision or "no take"
    judged = cell.current.decision if cell.current is not None else None
    note = ""
    if judged is not None:
        note = (f'<p class="note">{escape(judged.decision)} by {escape(judged.by)} {escape(judged.at[:10])}'
                + (f": {escape(judged.note)}" if judged.note else "") + "</p>")
    error = f'<p class="error">{escape(cell.error)}</p>' if cell.error and cell.status != "done" else ""
    actions = ""
    if cell.current is not None and cell.current.sha256:
        actions = ('<div class="actions"><button type="button" class="approve" tabindex="-1">Approve <kbd>a</kbd>'
                   '</button><button type="button" class="reject" tabindex="-1">Reject <kbd>r</kbd></button></div>')
    attrs = {"key": job.key, "clip": job.clip, "lang": job.lang or NO_LANGUAGE, "account": job.account, "kind": job.kind,
             "status": cell.status, "decision": decision, "output": job.output,
             "sha256": cell.current.sha256 if cell.current else "", "title": f"{job.clip} · {job.script or job.voice}"
             f" · {job.lang or 'voice swap'} ({job.account})"}
    data = " ".join(f'data-{name}="{escape(str(value))}"' for name, value in attrs.items())
    return (f'<div class="cell" tabindex="-1" {data}><div class="takes">{takes}</div>'
            f'<div class="meta"><span class="status s-{_css(cell.status)}">{escape(cell.status)}</span>'
            f'<span class="decision d-{_css(decision)}">{escape(decision)}</span>'
            f'<span class="who">{escape(job.account)} · {escape(job.kind)}</span>'
            f'<span class="facts">{" · ".join(f for f in facts if f)}</span>'
            f'<span class="path" title="{escape(job.output)}">{escape(job.output)}{copies}</span></div>'
            f"{error}{note}{actions}</div>")


def _take(take: Take, which: str) -> str:
    poster = f' poster="{THUMBS_DIR}/{quote(take.preview.poster)}"' if take.preview.poster else ""
    caption = ""
    if which:  # a take shown beside others says which it is
        label = f"take {take.number}" + (" (current)" if which == "current" else f" ({escape(take.superseded or '')})")
        if take.decision is not None and which == "earlier":  # what the reviewer said about it
            label = (f'take {take.number} · <span class="d-{take.decision.decision}" '
                     f'title="{escape(take.decision.note)}">{escape(take.decision.decision)}</span>')
        caption = f"<figcaption>{label}</figcaption>"
    role = "earlier" if which == "earlier" else "current"
    return (f'<figure class="take {role}" data-take="{take.number}">'
            f'<video controls playsinline preload="none" src="{_url(take.path)}"{poster}></video>{caption}</figure>')
