"""`vidsent analyze FILE --report PATH`: one file's analysis as a self-contained HTML page for an analyst.

The page (commands/report.html, its slots filled here) shows the verdict and how certain it is, the timeline of
the rolling, fused and per-modality scores drawn with the uPlot the dashboard vendors (inlined, its licence kept),
over the label bands and grade lines of models.fusion.sentiment_scale; the transcript coloured by each window's
text score; the key words that moved the text score; the frames whose faces were the strongest evidence
(re-decoded from the file with PyAV, cropped and embedded as JPEG data URIs); and every window. Nothing on it is
fetched: it opens from disk, offline. A file that could not be analysed still gets a page that says why.

All text from the analysis (file names, transcripts, reasons) is user data: it is escaped with html.escape, and the
chart's JSON sits in a `<script type="application/json">` block with every `<` escaped.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeGuard

from models.base import MODALITIES, label_for
from models.fusion import sentiment_scale
from models.images import jpeg_data_uri

TEMPLATE = Path(__file__).with_name("report.html")
UPLOT_DIR = Path(__file__).resolve().parents[1] / "client" / "dashboard" / "vendor" / "uplot"
# languages written right to left, and scripts that are: as client/dashboard/language.js decides `dir`
RTL_LANGUAGES = {"ar", "he", "fa", "ur", "yi", "ps", "sd", "ug", "dv", "iw", "ji"}
RTL_SCRIPTS = {"arab", "hebr", "thaa", "syrc", "nkoo", "adlm", "rohg", "mand", "samr"}
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{1,8})*$", re.IGNORECASE)
MAX_KEY_WORDS = 24
MAX_FACES = 6
FACE_PX = 160  # the side of an embedded face crop
THUMB_PX = 240  # the longer side of a whole-frame thumbnail (no face found in the frame again)
WINDOW_TABLE_OPEN = 40  # the window table starts open up to this many windows


# -- where the pages go ------------------------------------------------------------------------------------------

def report_paths(target: str, files: Sequence[str]) -> list[Path]:
    """The page for each file. One file: `target` itself (a folder, existing or written with a trailing slash,
    gets FILE-NAME.html inside it). Several files: `target` is a folder (made when missing), one FILE-NAME.html per
    file (`-2`, `-3` … where two files share a name). Raises ValueError, before any analysis, when several files
    would go to one page."""
    path = Path(target)
    folder = path.is_dir() or target.endswith(("/", os.sep))
    if len(files) > 1 and not folder:
        if path.exists() or path.suffix.lower() in (".html", ".htm"):
            raise ValueError(f"--report {target} names one page, but {len(files)} files were given: name a folder "
                             f"(e.g. --report reports/) to get one page per file")
        folder = True
    if not folder:
        return [path]
    pages: list[Path] = []
    taken: set[str] = set()
    for file in files:
        stem = Path(file).stem or "report"
        name, n = f"{stem}.html", 1
        while name.lower() in taken:
            n += 1
            name = f"{stem}-{n}.html"
        taken.add(name.lower())
        pages.append(path / name)
    return pages


def write_reports(pages: Sequence[Path], results: Sequence[dict], face_detector: str = "full") -> int:
    """Each result's page (report_paths' order); prints where each went. Returns how many could not be written."""
    failed = 0
    for page, result in zip(pages, results):
        try:
            text = build_report(result, face_detector=face_detector)
        except OSError as exc:  # the template or uPlot's files missing from this installation
            failed += 1
            print(f"✗ report for {result.get('file')}: cannot build it ({exc})")
            continue
        try:
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(text, encoding="utf-8")
        except OSError as exc:
            failed += 1
            print(f"✗ report for {result.get('file')}: cannot write {page} ({exc.strerror or exc})")
            continue
        print(f"wrote {page}")
    return failed


# -- small helpers -----------------------------------------------------------------------------------------------

def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def is_num(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def num(value: object, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if is_num(value) else "—"


def clock(seconds: object) -> str:
    """Media seconds as m:ss (m:ss.s off whole seconds)."""
    if not is_num(seconds):
        return "—"
    s = float(seconds)
    minutes = int(s // 60)
    rest = s - 60 * minutes
    if abs(rest - round(rest)) < 0.05:
        return f"{minutes}:{int(round(rest)):02d}"
    return f"{minutes}:{rest:04.1f}"


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def span(t0: object, t1: object) -> str:
    return f"{clock(t0)}–{clock(t1)}"


def language_code(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    code = value.strip().replace("_", "-")
    return code if LANGUAGE_CODE.match(code) else None


def direction_of(code: str | None) -> str:
    """`dir` for text in this language: rtl for the right-to-left ones, ltr for the others, auto when unknown."""
    if not code:
        return "auto"
    base, *subtags = code.lower().split("-")
    return "rtl" if base in RTL_LANGUAGES or any(s in RTL_SCRIPTS for s in subtags) else "ltr"


def lang_attrs(code: object) -> str:
    c = language_code(code)
    return (f' lang="{esc(c)}"' if c else "") + f' dir="{direction_of(c)}"'


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    t = min(max(t, 0.0), 1.0)
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t))


GREY, RED, GREEN = (75, 85, 99), (185, 28, 28), (21, 128, 61)


def sentiment_rgb(score: float, scale: dict) -> tuple[tuple[int, int, int], float]:
    """The colour of a P(positive), and how far it lies towards red or green: red at 0 through grey over the
    neutral band to green at 1, by the scale's label thresholds (inside the neutral band only a hint of either)."""
    s = float(score)
    positive, negative = scale["labels"]["positive"], scale["labels"]["negative"]
    if s >= positive:
        target, t = GREEN, 0.5 + 0.5 * (s - positive) / max(1 - positive, 1e-6)
    elif s <= negative:
        target, t = RED, 0.5 + 0.5 * (negative - s) / max(negative, 1e-6)
    else:
        middle = (positive + negative) / 2
        half = max((positive - negative) / 2, 1e-6)
        target, t = (GREEN if s >= middle else RED), 0.3 * abs(s - middle) / half
    return _mix(GREY, target, t), t


def sentiment_style(score: object, scale: dict) -> str:
    """Text in the colour of a P(positive) (sentiment_rgb) on a light background of it."""
    if not is_num(score):
        return "color: rgb(100,116,139)"
    (r, g, b), t = sentiment_rgb(score, scale)
    return f"color: rgb({r},{g},{b}); background: rgba({r},{g},{b},{0.05 + 0.12 * t:.3f})"


def pill(label: object, text: object = None) -> str:
    cls = label if label in ("positive", "negative", "neutral") else ""
    return f'<span class="pill {cls}">{esc(text if text is not None else label)}</span>'


def json_for_script(data: object) -> str:
    """JSON that cannot end its <script> block: every `<` (so `</script` and `<!--`) as \\u003c."""
    return json.dumps(data, ensure_ascii=False, allow_nan=False).replace("<", "\\u003c")


def modality(window: dict, m: str) -> dict:
    return (window.get("modalities") or {}).get(m) or {}


def present_score(window: dict, m: str) -> float | None:
    s = modality(window, m)
    return s.get("score") if s.get("available") and is_num(s.get("score")) else None


def verdict_certainty(verdict: object) -> dict | None:
    """How sure a verdict (a window's or the summary's `fused`, or `rolling`) says it is: its certainty, disagreement,
    uncertain and doubts fields (protocol v1's additions, models.fusion.certainty_of); None when it has no certainty
    (no modality, or a history written before those fields)."""
    if not isinstance(verdict, dict) or not is_num(verdict.get("certainty")):
        return None
    return {k: verdict.get(k) for k in ("certainty", "disagreement", "uncertain", "doubts")}


def window_certainty(window: dict) -> dict | None:
    return verdict_certainty(window.get("fused"))


def file_certainty(result: dict) -> tuple[dict, str] | None:
    """The file's certainty and what it is of: its fused verdict's, else the rolling verdict's at the end."""
    for key, what in (("fused", "certainty"), ("rolling", "certainty (rolling, at the end)")):
        found = verdict_certainty(result.get(key))
        if found is not None:
            return found, what
    return None


def certainty_html(found: dict) -> str:
    """A certainty, its disagreement, an `uncertain` badge where the verdict says so, and its doubts."""
    out = esc(num(found["certainty"]))
    if is_num(found.get("disagreement")):
        out = f"certainty {out} · disagreement {esc(num(found['disagreement']))}"
    if found.get("uncertain"):
        out += ' <span class="pill uncertain">uncertain</span>'
    doubts = [d for d in found.get("doubts") or [] if isinstance(d, str)]
    if doubts:
        out += f' <span class="note">{esc("; ".join(doubts))}</span>'
    return out


def agreement(window: dict) -> tuple[int, int, float | None]:
    """(present modalities whose label is the fused label, present modalities, their mean confidence)."""
    fused = window.get("fused") or {}
    used = [m for m in fused.get("used") or [] if modality(window, m).get("available")]
    agree = sum(1 for m in used if modality(window, m).get("label") == fused.get("label"))
    confidences = [modality(window, m).get("confidence") for m in used]
    values = [float(c) for c in confidences if is_num(c)]
    return agree, len(used), (sum(values) / len(values) if values else None)


# -- the sections ------------------------------------------------------------------------------------------------

def missing_reasons(windows: list[dict]) -> dict[str, list[str | None]]:
    """Per modality, each window's reason for missing it (None where it was there)."""
    out: dict[str, list[str | None]] = {}
    for m in MODALITIES:
        out[m] = [None if present_score(w, m) is not None else (modality(w, m).get("reason") or "missing")
                  for w in windows]
    return out


def gap_runs(windows: list[dict], reasons: list[str | None]) -> list[tuple[float, float, str, int]]:
    """Consecutive windows missing a modality for the same reason: (t_start, t_end, reason, windows)."""
    runs: list[tuple[float, float, str, int]] = []
    for w, reason in zip(windows, reasons):
        if reason is None:
            continue
        if runs and runs[-1][2] == reason and w["t_start"] <= runs[-1][1]:
            t0, _, _, n = runs[-1]
            runs[-1] = (t0, w["t_end"], reason, n + 1)
        else:
            runs.append((w["t_start"], w["t_end"], reason, 1))
    return runs


def chart_data(result: dict, scale: dict) -> dict:
    windows = result.get("windows") or []
    def finite(value: object) -> object:
        return value if is_num(value) else None

    data: dict[str, Any] = {
        "x": [w["t_end"] for w in windows],
        "t_start": [w["t_start"] for w in windows],
        "rolling": [finite((w.get("rolling") or {}).get("score")) for w in windows],
        "fused": [finite((w.get("fused") or {}).get("score")) for w in windows],
        "scale": scale,
        "duration": result.get("duration") if is_num(result.get("duration")) else None,
        "missing": missing_reasons(windows),
    }
    for m in MODALITIES:
        data[m] = [present_score(w, m) for w in windows]
    return data


def section_verdict(result: dict, scale: dict) -> str:
    windows = result.get("windows") or []
    label = result.get("label")
    badge_class = label if label in ("positive", "negative", "neutral") else "none"
    rolling = result.get("rolling") or {}
    out = ['<section id="verdict"><h2>Verdict</h2><div class="verdict">',
           f'<div class="badge {badge_class}"><div class="label">{esc(label or "no verdict")}</div>',
           f'<div class="graded">{esc(result.get("graded") or "no grade")}</div>',
           f'<div class="score">overall score {num(result.get("score"))} '
           f'· rolling at the end {num(rolling.get("score"))}</div></div>']
    facts = [("file", esc(result.get("file"))),
             ("duration", f"{num(result.get('duration'), 1)} s" if is_num(result.get("duration")) else "—"),
             ("windows", str(len(windows)))]
    languages = result.get("languages") or {}
    if languages:
        facts.append(("speech", ", ".join(
            f'<span data-language-name="{esc(c)}">{esc(c)}</span> {share:.0%}' if language_code(c) else
            f"{esc(c)} {share:.0%}" for c, share in languages.items() if is_num(share))))
    else:
        facts.append(("speech", '<span class="missing">no language identified (no speech)</span>'))
    certainty = file_certainty(result)
    if certainty is not None:
        facts.append((certainty[1], certainty_html(certainty[0])))
    if windows:
        agreeing = [agreement(w) for w in windows if agreement(w)[1]]
        confidences = [c for _, _, c in agreeing if c is not None]
        if agreeing:
            full = sum(1 for a, n, _ in agreeing if a == n)
            share = sum(a / n for a, n, _ in agreeing) / len(agreeing)
            facts.append(("agreement", f"{share:.0%} of the present modalities agree with their window’s fused "
                                       f"label on average; all of them in {full} of {len(agreeing)} windows"))
        if confidences:
            facts.append(("confidence", f"mean {num(sum(confidences) / len(confidences))} "
                                        f"(the modalities' own, over the windows)"))
        methods = sorted({str((w.get("fused") or {}).get("method")) for w in windows if w.get("fused")})
        if methods:
            facts.append(("fusion", esc(", ".join(methods))))
    people = result.get("people") or []
    if people:
        facts.append(("faces", f"{len(people)} tracked face(s)"))
    out.append('<div><dl class="facts">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>")
    out.append('<table class="mods"><thead><tr><th>modality</th><th class="num">score</th><th>label</th>'
               '<th>over the file</th></tr></thead><tbody>')
    for m in MODALITIES:
        s = (result.get("modalities") or {}).get(m) or {}
        if s.get("available") and is_num(s.get("score")):
            width = max(2, round(80 * s["score"]))
            over = f'{esc((s.get("details") or {}).get("windows", "?"))} of {len(windows)} windows'
            colour = sentiment_rgb(s["score"], scale)[0]
            out.append(f'<tr><td>{m}</td><td class="num">{num(s["score"])}</td><td>'
                       f'<span class="bar" style="width:{width}px; background: rgb{colour}"></span>'
                       f'{pill(s.get("label") or label_for(s["score"]))}</td><td>{over}</td></tr>')
        else:
            out.append(f'<tr><td>{m}</td><td class="num">—</td><td class="missing">missing</td>'
                       f'<td class="missing">{esc(s.get("reason") or "missing")}</td></tr>')
    out.append("</tbody></table></div></div></section>")
    return "".join(out)


def section_error(result: dict) -> str:
    error = result.get("error")
    if not error:
        return ""
    windows = result.get("windows") or []
    what = ("This file could not be analysed" if not windows
            else f"The analysis stopped early, after {len(windows)} window(s)")
    return (f'<section id="problem"><h2>Problem</h2><div class="why error"><strong>{what}:</strong> '
            f'{esc(error.get("message"))} <code>[{esc(error.get("code"))}]</code></div></section>')


def section_timeline(result: dict, data: dict) -> str:
    windows = result.get("windows") or []
    if not windows:
        return ('<section id="timeline-section"><h2>Timeline</h2><div class="why">No windows: there is nothing to '
                'draw.</div></section>')
    keys = ('<span><i style="background: rgba(22,163,74,0.25)"></i>positive label band</span>'
            '<span><i style="background: rgba(220,38,38,0.22)"></i>negative label band</span>'
            '<span><i style="border-top: 2px dashed rgba(100,116,139,0.6); height: 0"></i>grade band edges</span>'
            '<span><i style="background: rgba(148,163,184,0.55)"></i>a modality missing (named along the '
            'bottom)</span>')
    gaps = []
    for m in MODALITIES:
        for t0, t1, reason, n in gap_runs(windows, data["missing"][m]):
            gaps.append(f'<li><strong>{m}</strong> missing {span(t0, t1)} ({n} of {len(windows)} windows): '
                        f'<span class="reason">{esc(reason)}</span></li>')
    gap_html = (f'<p class="note">Gaps in the lines:</p><ul class="gaps">{"".join(gaps)}</ul>' if gaps
                else '<p class="note">Every window had all three modalities.</p>')
    return (f'<section id="timeline-section"><h2>Timeline</h2>'
            f'<div id="timeline" class="chart" data-points="0" role="img" aria-label="sentiment over media time: '
            f'rolling, fused and per-modality scores of each window"></div>'
            f'<div class="keys">{keys}</div>{gap_html}</section>')


def _tokens(text: str) -> list[str]:
    return text.split()


def new_text(previous: str, current: str) -> str:
    """What `current` adds to `previous`: windows overlap (4 s long, 2 s hop by default) and a word is in every
    window its middle falls in, so a window's words start with the ones the previous window ended with. The longest
    run of the previous window's last words that the current one starts with is cut (whole words; characters for
    the scripts written without spaces)."""
    if not previous or not current:
        return current
    a, b = _tokens(previous), _tokens(current)
    if len(a) > 1 or len(b) > 1:
        for k in range(min(len(a), len(b)), 0, -1):
            if a[-k:] == b[:k]:
                return " ".join(b[k:])
        return current
    # one token each: maybe a script without spaces (Chinese, Japanese, Thai): the longest character overlap
    for k in range(min(len(previous), len(current)), 1, -1):
        if previous.endswith(current[:k]):
            return current[k:]
    return current


def section_transcript(result: dict, scale: dict) -> str:
    windows = result.get("windows") or []
    spoken = [w for w in windows if (w.get("transcript") or "").strip()]
    head = '<section id="transcript" class="transcript"><h2>Transcript, coloured by each window’s text score</h2>'
    if not spoken:
        reasons = sorted({modality(w, "text").get("reason") or "no speech" for w in windows})
        why = "; ".join(reasons) if reasons else "no windows"
        return head + f'<div class="why">No words were heard ({esc(why)}).</div></section>'
    key = ('<div class="scale-key"><span>negative</span><span class="grad"></span><span>positive</span>'
           '<span>· each stretch: the words a window added, from the time shown; hover for the window</span></div>')
    paragraphs: list[tuple[str | None, list[str]]] = []
    previous, previous_end = "", 0.0
    for w in windows:
        text = (w.get("transcript") or "").strip()
        if not text:
            previous = ""
            continue
        added = new_text(previous, text).strip()
        # the words a window adds after one with words start where that one ended (they share the rest)
        start = max(w.get("t_start", 0.0), previous_end) if previous else w.get("t_start", 0.0)
        previous, previous_end = text, w.get("t_end", 0.0)
        if not added:
            continue
        code = language_code(w.get("language"))
        score = present_score(w, "text")
        text_info = modality(w, "text")
        title = (f"window {w.get('index')} · {span(w.get('t_start'), w.get('t_end'))} · text "
                 + (f"{num(score)} {label_for(score)}" if score is not None
                    else f"missing: {text_info.get('reason') or 'no score'}"))
        segment = (f'<span class="seg" data-window="{esc(w.get("index"))}" data-score="{num(score, 4)}"'
                   f' style="{sentiment_style(score, scale)}" title="{esc(title)}"{lang_attrs(code)}>'
                   f'<span class="t" aria-hidden="true">{clock(start)}</span>'
                   f'<span class="words">{esc(added)}</span></span> ')
        if paragraphs and paragraphs[-1][0] == code:
            paragraphs[-1][1].append(segment)
        else:
            paragraphs.append((code, [segment]))
    body = "".join(f'<p{lang_attrs(code)}>{"".join(segments)}</p>' for code, segments in paragraphs)
    return head + key + body + "</section>"


@dataclass
class KeyWord:
    word: str
    effects: list[float]
    times: list[float]
    language: str | None

    @property
    def total(self) -> float:
        return sum(self.effects)


def key_words(windows: Iterable[dict]) -> list[KeyWord]:
    """The text evidence gathered over the windows: each key word's effects on its windows' text scores, strongest
    (largest summed effect either way) first."""
    found: dict[str, KeyWord] = {}
    for w in windows:
        for item in (modality(w, "text").get("details") or {}).get("key_words") or []:
            word, effect = item.get("word"), item.get("effect")
            if not isinstance(word, str) or not word.strip() or not is_num(effect):
                continue
            key = word.strip().casefold()
            entry = found.setdefault(key, KeyWord(word.strip(), [], [], language_code(w.get("language"))))
            entry.effects.append(float(effect))
            entry.times.append(w.get("t_start", 0.0))
    return sorted(found.values(), key=lambda k: (-abs(k.total), k.word))


def section_key_words(result: dict) -> str:
    windows = result.get("windows") or []
    head = '<section id="key-words"><h2>Key words</h2>'
    spoken = [w for w in windows if present_score(w, "text") is not None]
    computed = [w for w in spoken if "key_words" in (modality(w, "text").get("details") or {})]
    if not spoken:
        return head + '<div class="why">No window had a text score (no words were heard), so no word moved it.</div>' \
            + "</section>"
    if not computed:
        return head + ('<div class="why">Key words were not computed for this analysis (<code>vidsent analyze '
                       '--fast</code> leaves them out).</div></section>')
    words = key_words(computed)
    if not words:
        return head + ('<div class="why">No single word moved a window’s text score by 0.02 or more.</div>'
                       '</section>')
    chips = []
    for k in words[:MAX_KEY_WORDS]:
        direction = "up" if k.total > 0 else "down"
        times = ", ".join(clock(t) for t in sorted(set(k.times))[:4]) + ("…" if len(set(k.times)) > 4 else "")
        title = (f"{'raised' if k.total > 0 else 'lowered'} the text score by {abs(k.total):.2f} in all, "
                 f"in {len(k.effects)} window(s) from {times}")
        chips.append(f'<span class="kw {direction}" title="{esc(title)}"{lang_attrs(k.language)}>{esc(k.word)}'
                     f'<small dir="ltr">{k.total:+.2f} · {len(k.effects)}×</small></span>')
    return (head + '<p class="note">The words whose removal changed a window’s text score most (effect = the score '
            'with the word − without it, summed over the windows it was key in; green raised the score, red lowered '
            'it), strongest first.</p>' + f'<div class="kwlist">{"".join(chips)}</div></section>')


# -- the strongest faces -----------------------------------------------------------------------------------------

@dataclass
class FaceMoment:
    t: float
    strength: float
    score: float | None
    emotion: str | None
    person: object
    window: dict
    image: str | None = None  # a data: URI
    what: str = ""  # "face" (a crop), "frame" (the whole frame), "" (no picture)


def face_moments(windows: list[dict], limit: int = MAX_FACES) -> list[FaceMoment]:
    """The frames whose faces were the strongest evidence: each window with a face, at its strongest frame's
    time, by how far that frame's score (the face's valence where a face was the strongest evidence, else the
    window's pooled face valence) lies from neutral; one per frame, strongest first."""
    found: dict[float, FaceMoment] = {}
    for w in windows:
        visual = modality(w, "visual")
        details = visual.get("details") or {}
        if not visual.get("available") or not details.get("frames_with_faces") or not is_num(
                details.get("strongest_t")):
            continue
        if details.get("strongest_source") == "face" and is_num(details.get("strongest_score")):
            score, emotion = details["strongest_score"], details.get("strongest_emotion")
        else:
            score, emotion = details.get("face_valence"), details.get("top_emotion")
        strength = abs(score - 0.5) if is_num(score) else 0.0
        t = round(float(details["strongest_t"]), 2)
        if t not in found or strength > found[t].strength:
            found[t] = FaceMoment(t, strength, score if is_num(score) else None, emotion,
                                  details.get("strongest_person"), w)
    return sorted(found.values(), key=lambda f: -f.strength)[:limit]


def decode_frames(path: str | Path, times: Sequence[float]) -> dict[float, Any]:
    """RGB frames (numpy, scaled and turned upright as the pipeline samples them) at these media times: for each,
    the decoded frame nearest to it. Media time counts from the file's first media, as the pipeline's does."""
    import av

    from stream.decoding import frame_image

    frames: dict[float, Any] = {}
    with av.open(str(path)) as container:
        if not container.streams.video:
            return frames
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        starts = [float(s.start_time * s.time_base) for s in container.streams
                  if s.type in ("audio", "video") and s.start_time is not None and s.time_base]
        origin = min(starts) if starts else 0.0
        time_base = stream.time_base
        for t in sorted(set(times)):
            target = origin + t
            if time_base:
                container.seek(max(0, int(target / time_base)), stream=stream, backward=True)
            best, best_gap = None, math.inf
            for frame in container.decode(stream):
                if frame.pts is None or frame.time_base is None:
                    continue
                ft = float(frame.pts * frame.time_base)
                gap = abs(ft - target)
                if gap < best_gap:
                    best, best_gap = frame, gap
                if ft > target + 0.05:
                    break
            if best is None:
                continue
            frames[t] = frame_image(best)
    return frames


def picture_faces(path: str | Path, moments: list[FaceMoment], detector_kind: str = "full") -> str | None:
    """Fills each moment's image: its frame decoded again, the largest face the detector finds in it cropped (the
    whole frame where it finds none). Returns why there are no pictures, or None."""
    try:
        frames = decode_frames(path, [m.t for m in moments])
    except Exception as exc:  # the file changed or went away since the analysis: the faces are listed without
        return f"the frames could not be decoded again ({exc})"
    detector = None
    try:
        from models.faces import FaceDetector, face_crop

        detector = FaceDetector(detector_kind)
    except Exception:  # no face model here: whole frames instead of crops
        pass
    for moment in moments:
        image = frames.get(moment.t)
        if image is None:
            continue
        boxes = detector.detect(image) if detector is not None else []
        if boxes:
            box = max(boxes, key=lambda b: (b.box[2] - b.box[0]) * (b.box[3] - b.box[1]) * b.score).box
            moment.image, moment.what = jpeg_data_uri(face_crop(image, box, 0.3), FACE_PX), "face"
        else:
            moment.image, moment.what = jpeg_data_uri(image, THUMB_PX), "frame"
    return None if any(m.image for m in moments) else "no frame could be decoded again at those times"


def section_faces(result: dict, scale: dict, detector_kind: str = "full") -> str:
    windows = result.get("windows") or []
    head = '<section id="faces"><h2>Strongest face frames</h2>'
    if not windows:
        return head + '<div class="why">No windows, so no frames were looked at.</div></section>'
    visuals = [modality(w, "visual") for w in windows]
    reasons = sorted({str(v["reason"]) for v in visuals if not v.get("available") and v.get("reason")})
    if not any(v.get("available") for v in visuals):
        why = "; ".join(reasons) or "no frames"
        return head + f'<div class="why">No faces: the visual modality is missing in every window ({esc(why)}).' \
            '</div></section>'
    moments = face_moments(windows)
    if not moments:
        frames = sum(int((v.get("details") or {}).get("frames") or 0) for v in visuals if v.get("available"))
        return head + (f'<div class="why">No faces were found in the {frames} frames looked at (counted once per '
                       'window they fall in); the visual score comes from the scene alone.</div></section>')
    problem = picture_faces(result["file"], moments, detector_kind)
    figures = []
    for m in moments:
        label = label_for(m.score) if m.score is not None else None
        caption = [f"<strong>{clock(m.t)}</strong> · {esc(m.emotion or 'face')}",
                   f"face score {num(m.score)} {pill(label) if label else ''}"]
        if m.person is not None:
            caption.append(f"person {esc(m.person)}")
        caption.append(f'<span class="note">window {span(m.window.get("t_start"), m.window.get("t_end"))}</span>')
        alt = f"{m.what or 'frame'} at {clock(m.t)}: {m.emotion or 'face'}"
        picture = (f'<img src="{m.image}" alt="{esc(alt)}" data-kind="{m.what}">' if m.image
                   else '<div class="noimg">frame not decoded again</div>')
        figures.append(f'<figure class="face {label or ""}" data-t="{m.t}">{picture}<figcaption>'
                       f'{"<br>".join(caption)}</figcaption></figure>')
    note = ('<p class="note">The frame of each window whose face lay furthest from neutral, strongest first; the '
            'picture is the largest face found in that frame again (or the whole frame).</p>')
    out = head + note + (f'<div class="why warn">{esc(problem)}</div>' if problem else "")
    out += f'<div class="faces">{"".join(figures)}</div>'
    people = result.get("people") or []
    if people:
        rows = "".join(f'<tr><td>{esc(p.get("person"))}</td><td>{span(p.get("first_seen"), p.get("last_seen"))}</td>'
                       f'<td class="num">{esc(p.get("frames"))}</td><td class="num">{num(p.get("score"))}</td>'
                       f'<td>{esc(p.get("top_emotion") or "—")}</td></tr>' for p in people[:12])
        out += ('<details><summary>Tracked faces</summary><table><thead><tr><th>person</th><th>seen</th>'
                '<th class="num">frames</th><th class="num">face score</th><th>top expression</th></tr></thead>'
                f'<tbody>{rows}</tbody></table></details>')
    return out + "</section>"


def section_windows(result: dict, scale: dict) -> str:
    windows = result.get("windows") or []
    if not windows:
        return ""
    certainties = [window_certainty(w) for w in windows]
    has_certainty = any(c is not None for c in certainties)
    head_cert = ("<th>certainty</th>" if has_certainty else "") + "<th>agreement · confidence</th>"
    rows = []
    for w, certainty in zip(windows, certainties):
        cells = [f'<td class="num">{esc(w.get("index"))}</td><td>{span(w.get("t_start"), w.get("t_end"))}</td>']
        for m in MODALITIES:
            s = modality(w, m)
            score = present_score(w, m)
            cells.append(f'<td class="num" style="{sentiment_style(score, scale)}">{num(score)}</td>'
                         if score is not None
                         else f'<td class="missing">{esc(s.get("reason") or "missing")}</td>')
        fused = w.get("fused") or {}
        rolling = w.get("rolling") or {}
        cells.append(f'<td>{num(fused.get("score"))} {pill(fused.get("label"), fused.get("label") or "—")} '
                     f'<span class="note">{esc(fused.get("graded") or "")}</span></td>')
        cells.append(f'<td class="num">{num(rolling.get("score"))}</td>')
        if has_certainty:
            cells.append(f"<td>{certainty_html(certainty)}</td>" if certainty is not None else "<td>—</td>")
        agree, n, confidence = agreement(w)
        cells.append(f"<td>{agree} of {n} agree · {num(confidence)}</td>" if n else "<td>—</td>")
        code = language_code(w.get("language"))
        cells.append(f'<td>{esc(code.upper()) if code else "—"}'
                     f'{" " + num(w.get("language_p")) if code and is_num(w.get("language_p")) else ""}</td>')
        rows.append(f'<tr data-window="{esc(w.get("index"))}">{"".join(cells)}</tr>')
    open_attr = " open" if len(windows) <= WINDOW_TABLE_OPEN else ""
    return (f'<section id="windows"><details{open_attr}><summary>{plural(len(windows), "window")}</summary>'
            '<table><thead><tr><th class="num">#</th><th>media time</th><th class="num">text</th>'
            '<th class="num">audio</th><th class="num">visual</th><th>fused</th><th class="num">rolling</th>'
            f'{head_cert}<th>language</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
            '</details></section>')


# -- the page ----------------------------------------------------------------------------------------------------

def uplot_assets() -> tuple[str, str]:
    """uPlot's CSS and its code as a classic script that sets window.uPlot (the vendored file is an ES module,
    which a page opened from disk cannot import), its licence kept at the top."""
    licence = (UPLOT_DIR / "LICENSE").read_text(encoding="utf-8")
    code = (UPLOT_DIR / "uPlot.esm.js").read_text(encoding="utf-8")
    code, exported = re.subn(r"export\s*\{\s*uPlot\s+as\s+default\s*\};?\s*$", "", code.rstrip())
    if exported != 1:
        raise RuntimeError(f"{UPLOT_DIR / 'uPlot.esm.js'} does not end by exporting uPlot")
    script = (f"/*! uPlot 1.6.32, vendored in client/dashboard/vendor/uplot (see README.txt there).\n"
              f"{licence.replace('*/', '* /').strip()}\n*/\n(function () {{\n{code}\nwindow.uPlot = uPlot;\n}}());")
    css = (UPLOT_DIR / "uPlot.min.css").read_text(encoding="utf-8")
    # nothing from the files may end the <script>/<style> blocks they go into
    return css.replace("</", "<\\/"), script.replace("</", "<\\/")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("vidsent")
    except Exception:  # run from a checkout that was never installed
        return "unknown"


def build_report(result: dict, face_detector: str = "full") -> str:
    """The whole page of one `analyze_file` result ({file, duration, label, …, windows, error?})."""
    scale = sentiment_scale()
    data = chart_data(result, scale)
    name = Path(str(result.get("file") or "file")).name
    windows = result.get("windows") or []
    sections = [section_error(result), section_verdict(result, scale), section_timeline(result, data)]
    if windows:  # without windows the timeline says so, and there are no words, key words or faces to show
        sections += [section_transcript(result, scale), section_key_words(result),
                     section_faces(result, scale, face_detector), section_windows(result, scale)]
    body = "".join(sections)
    css, script = uplot_assets()
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    version = _version()
    subtitle = (f"vidsent analysis · {num(result.get('duration'), 1)} s of media · "
                f"{plural(len(windows), 'window')} · made {made}")
    slots = {
        "TITLE": esc(f"{name} · vidsent report"),
        "GENERATOR": esc(f"vidsent {version}"),
        "HEADING": esc(name),
        "SUBTITLE": esc(subtitle),
        "BODY": body,
        "FOOTER": esc(f"vidsent {version} · analyze --report · scores are P(positive) in [0, 1]; labels: positive "
                      f"≥ {scale['labels']['positive']}, negative ≤ {scale['labels']['negative']}") +
                  " · chart: uPlot (MIT, Leon Sorokin)",
        "DATA": json_for_script(data),
        "UPLOT_CSS": css,
        "UPLOT_JS": script,
    }
    template = TEMPLATE.read_text(encoding="utf-8")
    # one pass, so nothing a slot brings in (a transcript saying "@@BODY@@") is ever filled in turn
    return re.sub(r"@@([A-Z_]+)@@", lambda m: slots[m.group(1)] if m.group(1) in slots else m.group(0), template)
