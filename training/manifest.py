"""CSV manifests of labelled items for `vidsent embed|train|evaluate`.

One row per item. Columns by modality (the prototype's own names are accepted too):
  text    text,label                 (also: Utterance/utterance for text; sentiment/Sentiment for label)
  audio   path,label                 (prototype: file_path,sentiment)
  visual  path,label                 (prototype: image,label) — still images
  video   path,label[,transcript]
Audio manifests may name a part of each file with `start` and `end` (seconds; either may be empty: the file's start
or end), so that one recording gives several items (the default heads learn music from 4 s crops of each song).
Optional columns on any manifest: `weight` (how much the item counts in training, > 0; default 1: e.g. to give two
corpora of different sizes equal say), `group` (speaker, song, ... : a validation split never cuts a group) and `split`
(train / val / test). Paths are relative to the manifest's folder. Labels are class names (case-insensitive); for
the valence classes the prototype's 0 = negative, 1 = positive are accepted too.

Every problem is reported with the manifest's name and the row's line number (the header is line 1).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MANIFEST_MODALITIES = ("text", "audio", "visual", "video")
VALENCE_CLASSES = ("negative", "neutral", "positive")
SPLITS = ("train", "val", "test")

_TEXT_COLUMNS = ("text", "utterance", "transcript")
_PATH_COLUMNS = {"audio": ("path", "file_path", "file", "audio"), "visual": ("path", "image", "file_path", "file"),
                 "video": ("path", "file_path", "file", "video")}
_LABEL_COLUMNS = ("label", "sentiment", "valence")
_LABEL_ALIASES = {"0": "negative", "1": "positive", "neg": "negative", "pos": "positive", "neu": "neutral"}
_SPLIT_ALIASES = {"dev": "val", "valid": "val", "validation": "val"}


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file and the row."""


@dataclass(frozen=True)
class ManifestItem:
    row: int                    # line number in the CSV (header = 1)
    label: str
    text: str | None = None     # text manifests: the text; video manifests: the optional transcript
    path: Path | None = None    # audio / visual / video manifests: absolute path of the media file
    group: str | None = None
    split: str | None = None

    ref: str = ""               # the item as the manifest names it: its relative path (+ @start-end), or its text
    start: float | None = None  # audio manifests: the part of the file to use, in seconds
    weight: float = 1.0         # training weight
    end: float | None = None

    @property
    def name(self) -> str:
        """How the item is named in predictions.csv: its path as the manifest gives it, or its text."""
        return self.ref

    @property
    def media_path(self) -> Path:
        """`path`, for an item of an audio / visual / video manifest (read_manifest gives each of those one)."""
        if self.path is None:
            raise ManifestError(f"row {self.row}: {self.ref!r} has no media file")
        return self.path

@dataclass
class Manifest:
    path: Path
    modality: str
    classes: list[str]
    items: list[ManifestItem]

    @property
    def labels(self) -> list[str]:
        return [it.label for it in self.items]

    @property
    def weights(self) -> list[float]:
        return [it.weight for it in self.items]

    def label_indices(self) -> list[int]:
        return [self.classes.index(it.label) for it in self.items]

    def subset(self, split: str) -> Manifest:
        return Manifest(self.path, self.modality, self.classes, [it for it in self.items if it.split == split])

    @property
    def has_splits(self) -> bool:
        return any(it.split for it in self.items)


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # some public corpora (the CrowdFlower tweets) are latin-1
        return raw.decode("latin-1")


def _pick(header: list[str], candidates: Sequence[str], wanted: str | None, manifest: Path, what: str) -> str | None:
    lowered = {h.strip().lower(): h for h in header}
    if wanted is not None:
        if wanted.lower() not in lowered:
            raise ManifestError(f"{manifest}: no column {wanted!r} for the {what} (columns: {', '.join(header)})")
        return lowered[wanted.lower()]
    for c in candidates:
        if c in lowered:
            return lowered[c]
    return None


def read_manifest(path: str | Path, modality: str, classes: Sequence[str] | None = None,
                  label_column: str | None = None, check_files: bool = True) -> Manifest:
    """Read and check a manifest. classes: the allowed labels (default: the valence classes present in the file,
    in the order negative, neutral, positive)."""
    path = Path(path)
    if modality not in MANIFEST_MODALITIES:
        raise ManifestError(f"unknown modality {modality!r}: choose one of {', '.join(MANIFEST_MODALITIES)}")
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist")
    try:
        rows = list(csv.reader(io.StringIO(_read_text(path), newline="")))
    except csv.Error as exc:  # e.g. a NUL byte or a stray quote the csv module refuses
        raise ManifestError(f"{path}: not a readable CSV file ({exc})") from None
    while rows and len(rows[-1]) <= 1 and not "".join(rows[-1]).strip():
        rows.pop()  # trailing blank lines are not rows (a line of empty fields is, and is reported)
    if not rows:
        raise ManifestError(f"{path}: the manifest is empty")
    header = [h.strip() for h in rows[0]]
    label_col = _pick(header, _LABEL_COLUMNS, label_column, path, "label")
    if label_col is None:
        raise ManifestError(f"{path}: no label column (expected one of {', '.join(_LABEL_COLUMNS)}; "
                            f"columns: {', '.join(header)})")
    if modality == "text":
        content_col = _pick(header, _TEXT_COLUMNS, None, path, "text")
        if content_col is None:
            raise ManifestError(f"{path}: a text manifest needs a 'text' column (columns: {', '.join(header)})")
    else:
        content_col = _pick(header, _PATH_COLUMNS[modality], None, path, "path")
        if content_col is None:
            raise ManifestError(f"{path}: a {modality} manifest needs a 'path' column (columns: {', '.join(header)})")
    transcript_col = _pick(header, ("transcript",), None, path, "transcript") if modality == "video" else None
    group_col = _pick(header, ("group",), None, path, "group")
    split_col = _pick(header, ("split",), None, path, "split")
    weight_col = _pick(header, ("weight",), None, path, "weight")
    start_col = _pick(header, ("start",), None, path, "start") if modality == "audio" else None
    end_col = _pick(header, ("end",), None, path, "end") if modality == "audio" else None
    index = {h: i for i, h in enumerate(header)}

    allowed = [c.lower() for c in classes] if classes is not None else list(VALENCE_CLASSES)
    items: list[ManifestItem] = []
    for line, row in enumerate(rows[1:], start=2):
        where = f"{path}: row {line}"
        if not any(cell.strip() for cell in row):
            raise ManifestError(f"{where} is empty")
        if len(row) != len(header):
            raise ManifestError(f"{where} has {len(row)} fields, the header has {len(header)}")

        def cell(col: str | None) -> str:
            return row[index[col]].strip() if col is not None else ""

        raw_label = cell(label_col)
        if not raw_label:
            raise ManifestError(f"{where}: the label is empty")
        label = raw_label.lower()
        if classes is None or "positive" in allowed:
            label = _LABEL_ALIASES.get(label, label)
        if label not in allowed:
            raise ManifestError(f"{where}: bad label {raw_label!r} (expected one of {', '.join(allowed)})")
        split = cell(split_col).lower() or None
        if split is not None:
            split = _SPLIT_ALIASES.get(split, split)
            if split not in SPLITS:
                raise ManifestError(f"{where}: bad split {split!r} (expected one of {', '.join(SPLITS)})")
        group = cell(group_col) or None
        weight = 1.0
        if cell(weight_col):
            try:
                weight = float(cell(weight_col))
            except ValueError:
                weight = float("nan")
            if not (0 < weight < float("inf")):
                raise ManifestError(f"{where}: bad weight {cell(weight_col)!r} (a number > 0)")
        if modality == "text":
            text = row[index[content_col]]
            if not text.strip():
                raise ManifestError(f"{where}: the text is empty")
            items.append(ManifestItem(line, label, text=text, group=group, split=split, ref=text.strip(),
                                      weight=weight))
            continue
        rel = cell(content_col)
        if not rel:
            raise ManifestError(f"{where}: the path is empty")
        media = (path.parent / rel).resolve()
        if check_files and not media.is_file():
            raise ManifestError(f"{where}: file {rel!r} does not exist (looked for {media})")
        transcript = cell(transcript_col) or None
        start, end = _seconds(cell(start_col), where, "start"), _seconds(cell(end_col), where, "end")
        if start is not None and end is not None and end <= start:
            raise ManifestError(f"{where}: end {end:g} s is not after start {start:g} s")
        ref = rel if start is None and end is None else f"{rel}@{'' if start is None else f'{start:g}'}-" \
                                                          f"{'' if end is None else f'{end:g}'}"
        items.append(ManifestItem(line, label, text=transcript, path=media, group=group, split=split, ref=ref,
                                  start=start, end=end, weight=weight))
    if not items:
        raise ManifestError(f"{path}: the manifest has a header but no rows")
    if classes is None:
        # a manifest without neutral items is a 2-class task, one with them a 3-class task
        present = {it.label for it in items}
        classes = list(VALENCE_CLASSES) if "neutral" in present else ["negative", "positive"]
    return Manifest(path=path, modality=modality, classes=[c.lower() for c in classes], items=items)


def _seconds(value: str, where: str, what: str) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise ManifestError(f"{where}: {what} {value!r} is not a number of seconds") from None
    if not (seconds >= 0 and seconds != float("inf")):
        raise ManifestError(f"{where}: {what} {value!r} must be a finite number of seconds >= 0")
    return seconds


def write_manifest(path: str | Path, rows: list[dict[str, str]], columns: Sequence[str]) -> Path:
    """Write a manifest (used by scripts that build manifests from the corpora's own label files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path
