"""Pictures of an evaluation, for people: each row's reliability diagram and confusion matrix as PNG, and
report.html, a self-contained page that shows them beside the metrics (`vidsent evaluate --out DIR`).

matplotlib draws on Figure objects of its own with the Agg renderer (headless: no display, no pyplot and its global
figures). The page has no script and loads nothing from outside: the pictures sit beside it, named by relative path.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

READINGS = {
    "reliability": "top label: the confidence of the predicted class",
    "posneg_reliability": "P(positive) read as positive vs negative (polar items)",
}
HOW_TO_READ = (
    "How to read a reliability diagram: the predictions are put in bins by the confidence they stated (x axis), and "
    "each bar is the share of a bin's predictions that were right (y axis); the dots are the bins' mean confidence. "
    "A calibrated scorer's bars reach the dashed diagonal: of the predictions made with 80 % confidence, 80 % are "
    "right. A bar below the diagonal is over-confidence, above it under-confidence; the ECE is the mean gap between "
    "dot and bar, weighted by how many predictions each bin holds (the counts under the diagram). A bin with few "
    "predictions says little."
)
BAR, DOT, GAP = "#4c72b0", "#dd8452", "#c44e52"


def file_stem(index: int, name: str) -> str:
    """A file name for a row of the table, safe on any file system whatever the row is called: its position (so two
    rows never share one) and its name in lower-case letters, digits and dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60].strip("-")
    return f"{index + 1:02d}-{slug or 'row'}"


def row_diagram(row: dict[str, Any]) -> tuple[str, list[dict[str, Any]], float] | None:
    """The reliability diagram a row is drawn with (the one behind its ECE in the table: top-label where the row has
    class probabilities, else positive vs negative), its key and its ECE; None when the row states no probability."""
    for key, ece in (("reliability", "ece"), ("posneg_reliability", "posneg_ece")):
        if row.get(key):
            return key, row[key], float(row[ece])
    return None


def reliability_png(path: Path, diagram: Sequence[dict[str, Any]], *, title: str, ece: float, reading: str) -> None:
    """Observed accuracy per confidence bin as bars against the diagonal, each bin's mean confidence as a dot with
    its gap to the diagonal, and the bins' counts in a strip below."""
    fig = Figure(figsize=(5.6, 6.0), dpi=100)  # fixed margins: a third faster than a layout engine, labels fixed
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3.2, 1], "left": 0.12, "right": 0.97,
                                                               "top": 0.86, "bottom": 0.09, "hspace": 0.12})
    lower = np.array([b["lower"] for b in diagram], dtype=np.float64)
    width = np.array([b["upper"] - b["lower"] for b in diagram], dtype=np.float64)
    accuracy = np.array([b["accuracy"] for b in diagram], dtype=np.float64)
    confidence = np.array([b["confidence"] for b in diagram], dtype=np.float64)
    count = np.array([b["count"] for b in diagram], dtype=np.int64)
    top.plot([0, 1], [0, 1], ls="--", lw=1, color="grey", label="calibrated (accuracy = confidence)")
    top.bar(lower, accuracy, width=width, align="edge", color=BAR, alpha=0.75, edgecolor="white",
            label="observed accuracy of the bin")
    top.vlines(confidence, np.minimum(confidence, accuracy), np.maximum(confidence, accuracy), color=GAP, lw=1.5,
               label="gap (what ECE averages)")
    top.plot(confidence, accuracy, "o", color=DOT, ms=5, label="the bin at its mean confidence")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1.02)
    top.set_ylabel("observed accuracy")
    top.legend(loc="upper left", fontsize=7.5, framealpha=0.85, edgecolor="none")
    top.set_title(f"{title}\nECE {ece:.3f} · n {int(count.sum())}\n{reading}", fontsize=9)
    bottom.bar(lower, count, width=width, align="edge", color="#8c8c8c", edgecolor="white")
    for x, w, c in zip(lower, width, count):
        bottom.annotate(str(c), (float(x + w / 2), float(c)), ha="center", va="bottom", fontsize=7, xytext=(0, 1),
                        textcoords="offset points")
    bottom.set_ylim(0, max(int(count.max()), 1) * 1.3)
    bottom.set_ylabel("count")
    bottom.yaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.set_xlabel("stated confidence")
    fig.savefig(path, format="png")


def confusion_png(path: Path, confusion: Sequence[Sequence[int]], classes: Sequence[str], *, title: str) -> None:
    """The confusion matrix as a heat map with its counts: rows the true class, columns the predicted one."""
    matrix = np.asarray(confusion, dtype=np.int64)
    k = len(classes)
    fig = Figure(figsize=(1.1 * k + 2.6, 1.0 * k + 1.9), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(int(matrix.max()), 1))
    for i in range(k):
        for j in range(k):
            dark = matrix[i, j] > matrix.max() / 2
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=10,
                    color="white" if dark else "black")
    ax.set_xticks(range(k), labels=list(classes), fontsize=8)
    ax.set_yticks(range(k), labels=list(classes), fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = np.trace(matrix) / max(int(matrix.sum()), 1)
    ax.set_title(f"{title}\nn {int(matrix.sum())} · accuracy {accuracy:.3f}", fontsize=9)
    fig.savefig(path, format="png")


def write_pictures(out: Path, table: Sequence[dict[str, Any]], classes: Sequence[str]) -> list[dict[str, Any]]:
    """Each row's pictures in `out`, and what the report says of it: {"row", "stem", "reliability", "confusion",
    "why"} (file names relative to `out`, None for a picture not drawn; `why` says why not)."""
    pictures: list[dict[str, Any]] = []
    for index, row in enumerate(table):
        stem = file_stem(index, row["name"])
        entry: dict[str, Any] = {"row": row, "stem": stem, "reliability": None, "confusion": None, "why": []}
        pictures.append(entry)
        if not row.get("n"):
            entry["why"].append("no picture: this row scored none of the items (its scorer gave no score for any "
                                "of them)")
            continue
        found = row_diagram(row)
        if found is None:
            entry["why"].append("no reliability diagram: this row states no probability for its predictions here")
        else:
            key, diagram, ece = found
            name = f"{stem}-reliability.png"
            reliability_png(out / name, diagram, title=row["name"], ece=ece, reading=READINGS[key])
            entry["reliability"] = name
        if row.get("confusion"):
            row_classes = classes if len(row["confusion"]) == len(classes) else ["negative", "positive"]
            name = f"{stem}-confusion.png"
            confusion_png(out / name, row["confusion"], row_classes, title=row["name"])
            entry["confusion"] = name
    return pictures


def write_report(out: Path, table: Sequence[dict[str, Any]], meta: dict[str, Any],
                 metrics: tuple[Sequence[str], Sequence[Sequence[Any]]]) -> Path:
    """DIR/report.html and its pictures: the metrics table (`metrics`: header and cells, as in summary.md), then each
    row's reliability diagram and confusion matrix side by side. Returns the page's path."""
    out.mkdir(parents=True, exist_ok=True)
    pictures = write_pictures(out, table, meta["classes"])
    e = html.escape
    header, cells = metrics
    head_cells = "".join(f"<th>{e(str(h))}</th>" for h in header)
    body_rows = []
    for entry, line in zip(pictures, cells):
        first = f'<td><a href="#{e(entry["stem"])}">{e(str(line[0]))}</a></td>'
        body_rows.append("<tr>" + first + "".join(f"<td>{e(str(c))}</td>" for c in line[1:]) + "</tr>")
    sections = []
    for entry in pictures:
        row = entry["row"]
        facts = [f"n {row.get('n', 0)}"]
        facts += [f"{label} {row[key]}" for key, label in (("coverage", "coverage"), ("accuracy", "accuracy"),
                                                           ("macro_f1", "macro F1"), ("ece", "ECE"),
                                                           ("posneg_accuracy", "pos-vs-neg accuracy"),
                                                           ("posneg_ece", "pos-vs-neg ECE")) if key in row]
        figures = []
        for kind, alt in (("reliability", "reliability diagram"), ("confusion", "confusion matrix")):
            if entry[kind]:
                figures.append(f'<figure><img src="{e(entry[kind])}" alt="{e(row["name"])}: {alt}">'
                               f"<figcaption>{alt}</figcaption></figure>")
        notes = "".join(f'<p class="why">{e(w)}</p>' for w in entry["why"])
        sections.append(f'<section id="{e(entry["stem"])}"><h3>{e(row["name"])} <small>{e(row.get("kind", ""))}'
                        f'</small></h3>'
                        f'<p class="facts">{e(" · ".join(facts))}</p>{notes}'
                        f'<div class="pictures">{"".join(figures)}</div></section>')
    about = [("manifest", meta["manifest"]), ("modality", meta["modality"]), ("items", meta["n_items"]),
             ("classes", ", ".join(meta["classes"])), ("heads", meta["heads"]), ("fusion", meta["fusion"])]
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vidsent evaluation: {e(str(meta["manifest"]))}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 78em; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
th {{ background: #f2f2f2; }}
dl {{ display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }}
dt {{ font-weight: 600; }} dd {{ margin: 0; overflow-wrap: anywhere; }}
section {{ border-top: 1px solid #ddd; padding: 0.5em 0 1em; }}
.pictures {{ display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }}
figure {{ margin: 0; }} figure img {{ max-width: 100%; height: auto; }}
figcaption {{ font-size: 0.85em; color: #555; }}
.facts {{ color: #444; }} .why {{ color: #8a4b00; }}
h3 small {{ color: #777; font-weight: normal; }}
.howto {{ background: #f6f8fa; padding: 0.8em 1em; border-left: 4px solid #4c72b0; }}
</style>
</head>
<body>
<h1>vidsent evaluation</h1>
<dl>{"".join(f"<dt>{e(k)}</dt><dd>{e(str(v))}</dd>" for k, v in about)}</dl>
<p class="howto">{e(HOW_TO_READ)}</p>
<h2>Metrics</h2>
<table>
<thead><tr>{head_cells}</tr></thead>
<tbody>
{chr(10).join(body_rows)}
</tbody>
</table>
<p>ECE is top-label where the row gives class probabilities, else that of P(positive) read as positive vs negative.
Confusion matrices: rows are the true class, columns the predicted one.</p>
<h2>Each row</h2>
{chr(10).join(sections)}
</body>
</html>
"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
