#!/usr/bin/env python
"""Build the multilingual text-sentiment training set (for the text_multilingual head) from public GitHub sources.

    python scripts/build_multilingual_text.py --mirror-root /work/.mirror --out /work/data/multitext/multitext.csv
    python scripts/build_multilingual_text.py --out /work/data/multitext/multitext.csv   # downloads (network)

Every file is read at the exact commit SOURCES names: from a local git mirror (`--mirror-root`: a folder of
OWNER+NAME/repo git directories, read with `git --git-dir ... show COMMIT:PATH`) or, without one, downloaded from
https://raw.githubusercontent.com/OWNER/REPO/COMMIT/PATH (kept under --raw-cache, so a second run needs no network).

What it writes: one CSV `text,label,language,split,source` (labels negative / neutral / positive; split train / val /
test) and, beside it, `<name>.sources.json` (the SOURCES table and the counts, which the trained head's card lists).
The data stays outside the repository: it is other people's, under their licences (see SOURCES).

How the rows are made, deterministically (--seed):
- each source's labels are mapped to negative / neutral / positive (2-class sources give negative / positive only);
  labels a source has beyond those (RuSentiment "speech"/"skip", ASTD "mixed") are left out;
- texts are cleaned for speech-like input: URLs, @mentions and a leading "RT" are removed, whitespace collapsed,
  texts cut to MAX_CHARS at a word boundary; texts under MIN_CHARS are dropped;
- duplicates (case- and whitespace-insensitive, across all sources) are kept once, on their most held-out side
  (test before val before train), and dropped altogether where sources disagree on the label;
- a source's own test split is kept as test; a source's own validation split as val; a source without splits is cut
  stratified by label into TEST_FRACTION test, VAL_FRACTION val and the rest train, and a source with a train split
  but no validation split gives VAL_FRACTION of it to val;
- each language is capped (--max-train, --max-val, --max-test rows), its rows shared as evenly as possible between its
  sources and sampled stratified by label within each source, so no language and no source dominates.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import re
import subprocess
import sys
import urllib.request
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

CLASSES = ("negative", "neutral", "positive")
SPLITS = ("train", "val", "test")
MAX_CHARS = 300
MIN_CHARS = 2
TEST_FRACTION = 0.1
VAL_FRACTION = 0.1
DEFAULT_OUT = Path("/work/data/multitext/multitext.csv")


@dataclass(frozen=True)
class Row:
    text: str
    label: str
    split: str | None  # the source's own split (train / val / test), or None: no split given
    language: str = ""
    source: str = ""


Files = dict[str, bytes]  # path -> content
Reader = Callable[[Files], Iterator[Row]]


@dataclass(frozen=True)
class Source:
    name: str
    repo: str  # OWNER/NAME on GitHub
    commit: str  # 40 hex digits
    files: tuple[str, ...]
    licence: str
    language: str  # ISO 639-1
    genre: str
    labels: str  # how the source's labels map to negative / neutral / positive
    reader: Reader = field(repr=False, compare=False)

    def describe(self) -> dict:
        out = asdict(self)
        out.pop("reader", None)
        out["files"] = list(self.files)
        return out


# ------------------------------------------------------------------------------------------------- readers
def _text(data: bytes) -> str:
    return data.decode("utf-8-sig", errors="replace")


def _csv_rows(data: bytes, delimiter: str = ",") -> list[dict[str, str]]:
    csv.field_size_limit(10_000_000)
    return list(csv.DictReader(io.StringIO(_text(data)), delimiter=delimiter))


UMSAB_LABELS = {"0": "negative", "1": "neutral", "2": "positive"}


def umsab(language_dir: str) -> Reader:
    """cardiffnlp/xlm-t UMSAB: {train,val,test}_text.txt + _labels.txt, one tweet / label per line."""

    def read(files: Files) -> Iterator[Row]:
        for split in SPLITS:
            texts = _text(files[f"data/sentiment/{language_dir}/{split}_text.txt"]).split("\n")
            labels = _text(files[f"data/sentiment/{language_dir}/{split}_labels.txt"]).split("\n")
            texts, labels = [t for t in texts], [lab.strip() for lab in labels]
            while labels and not labels[-1]:
                labels.pop()
            texts = texts[:len(labels)]
            if len(texts) != len(labels):
                raise ValueError(f"UMSAB {language_dir} {split}: {len(texts)} texts but {len(labels)} labels")
            for t, lab in zip(texts, labels):
                yield Row(t, UMSAB_LABELS[lab], split)

    return read


def split_csvs(paths: dict[str, str | None], text: str, label: str, mapping: dict[str, str | None],
               delimiter: str = ",") -> Reader:
    """CSV/TSV files, each all of one split (None: no split given), with a text and a label column."""

    def read(files: Files) -> Iterator[Row]:
        for path, split in paths.items():
            for r in _csv_rows(files[path], delimiter):
                mapped = mapping.get((r.get(label) or "").strip())
                if mapped is not None:
                    yield Row(r.get(text) or "", mapped, split)

    return read


def nsmc_sample(files: Files) -> Iterator[Row]:
    """NSMC (tab-separated id, document, label 0/1) samples: train_sample (NSMC train), test_sample (NSMC test)."""
    for path, split in (("data/train_sample.txt", "train"), ("data/test_sample.txt", "test")):
        for line in _text(files[path]).split("\n")[1:]:
            parts = line.rstrip("\r").split("\t")
            if len(parts) == 3 and parts[2] in ("0", "1"):
                yield Row(parts[1], "positive" if parts[2] == "1" else "negative", split)


ASTD_LABELS = {"POS": "positive", "NEG": "negative", "OBJ": "neutral"}  # NEUTRAL is ASTD's "mixed": left out


def astd(files: Files) -> Iterator[Row]:
    """ASTD: Tweets.txt (text<TAB>label) and the authors' 4-class unbalanced split files (line indices)."""
    lines = [re.sub(r"\s+$", "", re.sub(r"^\s+", "", line)) for line in _text(files["data/Tweets.txt"]).split("\n")]
    tweets = [line.split("\t") for line in lines if line]
    for split, path in (("train", "data/4class-unbalanced-train.txt"), ("val", "data/4class-unbalanced-validation.txt"),
                        ("test", "data/4class-unbalanced-test.txt")):
        for index in _text(files[path]).split():
            parts = tweets[int(index)]
            label = ASTD_LABELS.get(parts[-1].strip())
            if label is not None and len(parts) >= 2:
                yield Row(parts[0], label, split)


RUSENTIMENT_LABELS: dict[str, str | None] = {"negative": "negative", "neutral": "neutral", "positive": "positive"}
NAMED_LABELS: dict[str, str | None] = {"negative": "negative", "neutral": "neutral", "positive": "positive"}
BINARY_01: dict[str, str | None] = {"0": "negative", "1": "positive"}

XLMT = ("cardiffnlp/xlm-t", "874214d64d96599eb869a033c22ec2cc57d19256")
TYQ = ("tyqiangz/multilingual-sentiment-datasets", "0f4d140251eda600db2be6ecd8f92dce454be2b7")
SOPHON = ("SophonPlus/ChineseNlpCorpus", "a0b781d72158bde242c0626c9e354d2b328865ff")
UMSAB_LICENCE = ("XLM-T repository Apache-2.0; the tweets are {0} (see the UMSAB README: original dataset terms and "
                 "Twitter's terms apply)")


def _umsab_source(lang: str, language_dir: str, origin: str) -> Source:
    return Source(
        name=f"umsab-{lang}", repo=XLMT[0], commit=XLMT[1],
        files=tuple(f"data/sentiment/{language_dir}/{s}_{k}.txt" for s in SPLITS for k in ("text", "labels")),
        licence=UMSAB_LICENCE.format(origin), language=lang, genre="tweets",
        labels="0 negative, 1 neutral, 2 positive; the benchmark's own train / val / test", reader=umsab(language_dir))


def marc(language: str, folder: str) -> Source:
    """One language of the Multilingual Amazon Reviews Corpus, as the TYQ aggregator gives it."""
    valid, test = f"data/{folder}/valid.csv", f"data/{folder}/test.csv"
    return Source(name=f"marc-{language}", repo=TYQ[0], commit=TYQ[1], files=(valid, test),
                  licence="Multilingual Amazon Reviews Corpus: Amazon's licence, non-commercial research use only "
                          "(aggregating repository Apache-2.0)", language=language, genre="product reviews",
                  labels="1 star negative, 3 stars neutral, 5 stars positive (mapped by the aggregator); MARC's "
                         "validation split = train here, its test split = test",
                  reader=split_csvs({valid: "train", test: "test"}, "text", "label", NAMED_LABELS))


SOURCES: tuple[Source, ...] = (
    _umsab_source("en", "english", "SemEval-2017 Task 4"),
    _umsab_source("es", "spanish", "InterTASS 2017"),
    _umsab_source("de", "german", "SB-10K"),
    _umsab_source("fr", "french", "DEFT 2017"),
    _umsab_source("it", "italian", "SENTIPOLC 2016"),
    _umsab_source("pt", "portuguese", "TweetSentBR"),
    _umsab_source("ar", "arabic", "SemEval-2017 Task 4 (Arabic)"),
    _umsab_source("hi", "hindi", "SAIL 2015 (Hindi tweets, mostly romanised / code-mixed)"),
    Source(name="astd-ar", repo="mahmoudnabil/ASTD", commit="0eac69a559bbc38a2cf06266411fa8bf47eed042",
           files=("data/Tweets.txt", "data/4class-unbalanced-train.txt", "data/4class-unbalanced-validation.txt",
                  "data/4class-unbalanced-test.txt"),
           licence="GPL-2.0 (repository LICENSE)", language="ar", genre="tweets (Egyptian Arabic)",
           labels="POS positive, NEG negative, OBJ neutral; NEUTRAL (= mixed) left out; the authors' 4-class "
                  "unbalanced train / validation / test", reader=astd),
    Source(name="rusentiment-ru", repo="strawberrypie/rusentiment", commit="7f2afa11a9483f5251cd5156ac848d098b502be0",
           files=("Dataset/rusentiment_random_posts.csv", "Dataset/rusentiment_preselected_posts.csv",
                  "Dataset/rusentiment_test.csv"),
           licence="CC BY-NC-SA 4.0 (non-commercial)", language="ru", genre="social media posts (VKontakte)",
           labels="negative / neutral / positive as given; speech (greetings, thanks) and skip left out; "
                  "random + preselected posts = train, rusentiment_test = test",
           reader=split_csvs({"Dataset/rusentiment_random_posts.csv": "train",
                              "Dataset/rusentiment_preselected_posts.csv": "train",
                              "Dataset/rusentiment_test.csv": "test"}, "text", "label", RUSENTIMENT_LABELS)),
    marc("ja", "japanese"),
    marc("zh", "chinese"),
    Source(name="chnsenticorp-htl-zh", repo=SOPHON[0], commit=SOPHON[1],
           files=("datasets/ChnSentiCorp_htl_all/ChnSentiCorp_htl_all.csv",),
           licence="no licence stated (ChnSentiCorp, Tan Songbo, ICT CAS; research corpus)", language="zh",
           genre="hotel reviews", labels="1 positive, 0 negative; no split given",
           reader=split_csvs({"datasets/ChnSentiCorp_htl_all/ChnSentiCorp_htl_all.csv": None}, "review", "label",
                             BINARY_01)),
    Source(name="waimai10k-zh", repo=SOPHON[0], commit=SOPHON[1], files=("datasets/waimai_10k/waimai_10k.csv",),
           licence="no licence stated (research corpus)", language="zh", genre="food-delivery reviews",
           labels="1 positive, 0 negative; no split given",
           reader=split_csvs({"datasets/waimai_10k/waimai_10k.csv": None}, "review", "label", BINARY_01)),
    Source(name="nsmc-ko", repo="lee-jee-hyeon/knu_nlp_project", commit="e6f8da389d6b419e5529aa4a1485d236ce9ef374",
           files=("data/train_sample.txt", "data/test_sample.txt"),
           licence="CC0-1.0 (Naver Sentiment Movie Corpus, e9t/nsmc); this is a 40k / 10k sample of NSMC train / "
                   "test kept in a course repository (no licence of its own), as e9t/nsmc's files are too large "
                   "for the mirror", language="ko", genre="movie reviews",
           labels="1 positive (9-10 stars), 0 negative (1-4 stars); NSMC train sample = train, test sample = test",
           reader=nsmc_sample),
    Source(name="smsa-id", repo=TYQ[0], commit=TYQ[1],
           files=("data/indonesian/train.csv", "data/indonesian/valid.csv", "data/indonesian/test.csv"),
           licence="IndoNLU SmSA (IndoNLU repository MIT; aggregating repository Apache-2.0)", language="id",
           genre="reviews and comments", labels="negative / neutral / positive as given; IndoNLU's train / valid / "
                                                "test",
           reader=split_csvs({"data/indonesian/train.csv": "train", "data/indonesian/valid.csv": "val",
                              "data/indonesian/test.csv": "test"}, "text", "label", NAMED_LABELS)),
)


# ------------------------------------------------------------------------------------------------- fetching
class Fetcher:
    """Reads SOURCES' files at their commits from a local mirror, or downloads them (and keeps the download)."""

    def __init__(self, mirror_root: Path | None, raw_cache: Path | None):
        self.mirror_root, self.raw_cache = mirror_root, raw_cache

    def git_dir(self, repo: str) -> Path | None:
        if self.mirror_root is None:
            return None
        base = self.mirror_root / repo.replace("/", "+")
        for candidate in (base / "repo" / ".git", base / "repo", base / ".git", base):
            if (candidate / "HEAD").is_file() and (candidate / "objects").is_dir():
                return candidate
        return None

    def read(self, repo: str, commit: str, path: str) -> bytes:
        git_dir = self.git_dir(repo)
        if git_dir is not None:
            done = subprocess.run(["git", f"--git-dir={git_dir}", "show", f"{commit}:{path}"], capture_output=True)
            if done.returncode == 0:
                return done.stdout
            raise FileNotFoundError(f"{repo}@{commit}:{path} is not in the mirror {git_dir}: "
                                    f"{done.stderr.decode(errors='replace').strip()}")
        if self.mirror_root is not None:
            raise FileNotFoundError(f"no mirror of {repo} under {self.mirror_root}")
        return self.download(repo, commit, path)

    def download(self, repo: str, commit: str, path: str) -> bytes:
        cached = self.raw_cache / repo.replace("/", "+") / commit / path if self.raw_cache else None
        if cached is not None and cached.is_file():
            return cached.read_bytes()
        url = f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (a fixed https URL)
            data = response.read()
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_bytes(data)
        return data


# ------------------------------------------------------------------------------------------------- cleaning, splits
_URL = re.compile(r"(https?://\S*|www\.\S+)", re.IGNORECASE)
_MENTION = re.compile(r"(?<!\w)@\w+:?")
_RT = re.compile(r"^\s*RT\b:?\s*", re.IGNORECASE)
_SPACE = re.compile(r"\s+")


def clean_text(text: str, max_chars: int = MAX_CHARS) -> str:
    """Tweet and review text made closer to a transcript: no URLs, @mentions or leading RT; one-line; at most
    max_chars characters (cut at the last space before the limit when there is one)."""
    text = _RT.sub("", text or "")
    text = _MENTION.sub(" ", _URL.sub(" ", text))
    text = _SPACE.sub(" ", text.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")).strip()
    text = _RT.sub("", text).strip()
    if len(text) > max_chars:
        cut = text.rfind(" ", max_chars // 2, max_chars)
        text = text[:cut if cut > 0 else max_chars].rstrip()
    return text


def dedup_key(text: str) -> str:
    return hashlib.sha1(_SPACE.sub(" ", text.casefold()).strip().encode("utf-8")).hexdigest()


def _rank(split: str | None) -> int:
    return {"test": 0, "val": 1}.get(split or "", 2)


def deduplicate(rows: list[Row]) -> tuple[list[Row], dict[str, int]]:
    """One row per text: conflicting labels drop the text, else the most held-out copy stays."""
    by_key: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_key[dedup_key(r.text)].append(r)
    kept: list[Row] = []
    stats: Counter[str] = Counter()
    for copies in by_key.values():
        if len({r.label for r in copies}) > 1:
            stats["label_conflicts"] += len(copies)
            continue
        stats["duplicates"] += len(copies) - 1
        kept.append(min(copies, key=lambda r: (_rank(r.split), r.source)))
    # the input order (source by source, file by file), not the hash order
    order = {id(r): i for i, r in enumerate(rows)}
    kept.sort(key=lambda r: order[id(r)])
    return kept, dict(stats)


def _rng(seed: int, *parts: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32("/".join(parts).encode("utf-8"))])


def stratified_take(rows: list[Row], n: int, rng: np.random.Generator) -> tuple[list[Row], list[Row]]:
    """(n rows sampled with the label proportions of `rows` (largest remainder), the rest)."""
    if n >= len(rows):
        return list(rows), []
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_label[r.label].append(i)
    labels = sorted(by_label)
    exact = {lab: n * len(by_label[lab]) / len(rows) for lab in labels}
    take = {lab: int(exact[lab]) for lab in labels}
    for lab in sorted(labels, key=lambda lab: -(exact[lab] - take[lab]))[:n - sum(take.values())]:
        take[lab] += 1
    chosen: set[int] = set()
    for lab in labels:
        idx = np.array(by_label[lab])
        rng.shuffle(idx)
        chosen.update(idx[:take[lab]].tolist())
    return [rows[i] for i in sorted(chosen)], [rows[i] for i in range(len(rows)) if i not in chosen]


def assign_splits(rows: list[Row], seed: int, source: str) -> list[Row]:
    """Give every row of one source a split: its own where it has one, else stratified test / val / train."""
    out = [r for r in rows if r.split in ("val", "test")]
    unsplit = [r for r in rows if r.split is None]
    train = [r for r in rows if r.split == "train"]
    rng = _rng(seed, source, "split")
    if unsplit:
        test, rest = stratified_take(unsplit, round(len(unsplit) * TEST_FRACTION), rng)
        out += [Row(r.text, r.label, "test", r.language, r.source) for r in test]
        train += rest
    has_val = any(r.split == "val" for r in rows)
    if not has_val and train:
        share = VAL_FRACTION / (1 - TEST_FRACTION) if unsplit and not any(r.split == "train" for r in rows) \
            else VAL_FRACTION
        val, train = stratified_take(train, round(len(train) * share), rng)
        out += [Row(r.text, r.label, "val", r.language, r.source) for r in val]
    out += [Row(r.text, r.label, "train", r.language, r.source) for r in train]
    return out


def share_evenly(available: dict[str, int], cap: int) -> dict[str, int]:
    """Split `cap` rows between sources as evenly as their sizes allow (water-filling), in source-name order."""
    take = {s: 0 for s in available}
    left = min(cap, sum(available.values()))
    open_sources = sorted(s for s, n in available.items() if n > 0)
    while left > 0 and open_sources:
        share = max(1, left // len(open_sources))
        for s in list(open_sources):
            add = min(share, available[s] - take[s], left)
            take[s] += add
            left -= add
            if take[s] >= available[s]:
                open_sources.remove(s)
            if left == 0:
                break
    return take


def cap_language(rows: list[Row], caps: dict[str, int], seed: int) -> list[Row]:
    """One language's rows, each split capped, shared between sources and stratified by label within each."""
    out: list[Row] = []
    for split in SPLITS:
        by_source: dict[str, list[Row]] = defaultdict(list)
        for r in rows:
            if r.split == split:
                by_source[r.source].append(r)
        quota = share_evenly({s: len(v) for s, v in by_source.items()}, caps[split])
        for source in sorted(by_source):
            chosen, _ = stratified_take(by_source[source], quota[source], _rng(seed, source, split, "cap"))
            out += chosen
    return out


def build(sources: tuple[Source, ...], fetcher: Fetcher, caps: dict[str, int], seed: int = 0,
          languages: set[str] | None = None, log: Callable[[str], None] = print) -> tuple[list[Row], dict]:
    """All the rows of the chosen sources: read, mapped, cleaned, deduplicated, split and capped."""
    raw: list[Row] = []
    counts: dict[str, dict] = {}
    for source in sources:
        if languages is not None and source.language not in languages:
            continue
        files = {path: fetcher.read(source.repo, source.commit, path) for path in source.files}
        rows = [Row(clean_text(r.text), r.label, r.split, source.language, source.name) for r in source.reader(files)]
        read = len(rows)
        rows = [r for r in rows if len(r.text) >= MIN_CHARS]
        counts[source.name] = {"read": read, "kept_after_cleaning": len(rows)}
        log(f"{source.name}: {read} labelled rows ({len(rows)} after cleaning) from {source.repo}@{source.commit[:10]}")
        raw += rows
    rows, dedup_stats = deduplicate(raw)
    by_source: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_source[r.source].append(r)
    split_rows: list[Row] = []
    for name, source_rows in by_source.items():
        split_rows += assign_splits(source_rows, seed, name)
    by_language: dict[str, list[Row]] = defaultdict(list)
    for r in split_rows:
        by_language[r.language].append(r)
    final: list[Row] = []
    for language in sorted(by_language):
        final += cap_language(by_language[language], caps, seed)
    for name in counts:
        mine = [r for r in final if r.source == name]
        counts[name]["used"] = {s: dict(sorted(Counter(r.label for r in mine if r.split == s).items()))
                                for s in SPLITS}
    summary = {"seed": seed, "caps": caps, "max_chars": MAX_CHARS, "dedup": dedup_stats, "counts": counts,
               "languages": {lang: {s: sum(1 for r in final if r.language == lang and r.split == s) for s in SPLITS}
                             for lang in sorted(by_language)}}
    return final, summary


def write_csv(rows: list[Row], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label", "language", "split", "source"])
        for r in rows:
            writer.writerow([r.text, r.label, r.language, r.split, r.source])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the CSV to write (default {DEFAULT_OUT})")
    parser.add_argument("--mirror-root", type=Path, help="folder of OWNER+NAME git mirrors (else: download)")
    parser.add_argument("--raw-cache", type=Path, help="where downloads are kept (default: <out folder>/raw)")
    parser.add_argument("--max-train", type=int, default=6000, help="training rows per language (default 6000)")
    parser.add_argument("--max-val", type=int, default=600, help="validation rows per language (default 600)")
    parser.add_argument("--max-test", type=int, default=1500, help="test rows per language (default 1500)")
    parser.add_argument("--languages", help="comma-separated ISO codes to keep (default: every source)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    fetcher = Fetcher(args.mirror_root, args.raw_cache or args.out.parent / "raw")
    caps = {"train": args.max_train, "val": args.max_val, "test": args.max_test}
    languages = set(args.languages.split(",")) if args.languages else None
    rows, summary = build(SOURCES, fetcher, caps, args.seed, languages,
                          log=lambda m: print(m, file=sys.stderr, flush=True))
    write_csv(rows, args.out)
    summary["sources"] = [s.describe() for s in SOURCES if languages is None or s.language in languages]
    summary["csv_sha256"] = hashlib.sha256(args.out.read_bytes()).hexdigest()
    sidecar = args.out.with_suffix(".sources.json")
    sidecar.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} rows to {args.out} and {sidecar}", file=sys.stderr)
    for lang, n in summary["languages"].items():
        print(f"  {lang}: " + ", ".join(f"{s} {n[s]}" for s in SPLITS), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
