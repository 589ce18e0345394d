#!/usr/bin/env python
"""Rebuild the multilingual speech sets (not shipped; real recordings from public GitHub repositories).

    python scripts/build_multilingual_speech.py                                 # speech + emotion sets (mirror)
    python scripts/build_multilingual_speech.py --test-clips tests/data/speech  # + the small in-repo test clips
    python scripts/build_multilingual_speech.py --download                      # read GitHub instead

speech:  --speech-out (default /work/data/speech_ml): 16 kHz mono FLAC per clip under <source>/ and manifest.csv with
         path,language,reference,source,licence (path relative to the manifest; language ISO 639-1; reference the
         transcript when the source gives one, else empty: such clips serve language identification only).
emotion: --emotion-out (default /work/data/emotion_ml): <corpus>/ with 16 kHz mono FLAC and manifest.csv with
         path,label,language,speaker; label is valence: happy/joy = positive; anger, sadness, fear, disgust =
         negative; neutral = neutral. Emotions with no agreed valence are left out (EMO-DB boredom, EMOVO surprise).
test clips: --test-clips DIR writes the TEST_CLIPS below (3-10 s each, permissive licences) as 16 kHz mono FLAC.

Every file is read at the pinned commit of SOURCES: from a local mirror (--mirror-root, default /work/.mirror, holding
<owner>+<name>/repo as bare git directories: `git ls-tree` / `git show COMMIT:PATH`), or with --download (or when no
mirror holds the repository) from raw.githubusercontent.com/OWNER/REPO/COMMIT/PATH, the file list coming from the
GitHub git-trees API at that commit. Conversion: ffmpeg (bit-exact FLAC, no metadata), else PyAV. Output files and
manifest rows are sorted, so a rebuild gives the same files.

Licences differ per source (see SOURCES): FLEURS (CC-BY-4.0), Common Voice (CC0-1.0), AISHELL-1 (Apache-2.0) and
EmoDB (CC0-1.0 as published by audEERING) may be redistributed; EMOVO and the URDU dataset are for research use only
and must stay out of the repository.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

# ------------------------------------------------------------------------------------------------ transcripts / labels
EMODB_TEXT = {  # sentence codes of the Berlin Database of Emotional Speech (its documentation; audb's emodb)
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
# W Ärger, L Langeweile (boredom: left out), E Ekel, A Angst, F Freude, T Trauer, N neutral
EMODB_VALENCE = {"W": "negative", "E": "negative", "A": "negative", "T": "negative", "F": "positive", "N": "neutral"}

EMOVO_TEXT = {  # "4. Linguistic material" of docs/EMOVO_Corpus.pdf in the same repository ("..." pause marks dropped)
    "b1": "Gli operai si alzano presto.",
    "b2": "I vigili sono muniti di pistola.",
    "b3": "La cascata fa molto rumore.",
    "l1": "L'autunno prossimo Tony partirà per la Spagna nella prima metà di ottobre.",
    "l2": "Ora prendo la felpa di là ed esco per fare una passeggiata.",
    "l3": "Un attimo dopo s'è incamminato ed è inciampato.",
    "l4": "Vorrei il numero telefonico del Signor Piatti.",
    "n1": "La casa forte vuole col pane.",
    "n2": "La forza trova il passo e l'aglio rosso.",
    "n3": "Il gatto sta scorrendo nella pera.",
    "n4": "Insalata pastasciutta coscia d'agnello limoncello.",
    "n5": "Uno quarantatré dieci mille cinquantasette venti.",
    "d1": "Sabato sera cosa farà?",
    "d2": "Porti con te quella cosa?",
}
# disgusto, gioia, neutro, paura, rabbia, tristezza; sorpresa (surprise) left out
EMOVO_VALENCE = {"dis": "negative", "gio": "positive", "neu": "neutral", "pau": "negative", "rab": "negative",
                 "tri": "negative"}

URDU_VALENCE = {"Angry": "negative", "Sad": "negative", "Happy": "positive", "Neutral": "neutral"}


@dataclass(frozen=True)
class Item:
    """One clip of a source: where it is in the repository and what the manifests say of it."""
    path: str                  # path in the repository
    name: str                  # output file name, without extension
    language: str              # ISO 639-1
    reference: str = ""        # transcript ("" = unknown)
    label: str | None = None   # valence, for the emotion set (None: not an emotion item)
    speaker: str = ""
    speech: bool = True        # goes into the speech set
    licence: str | None = None  # overrides the source's licence for this item


@dataclass(frozen=True)
class Source:
    id: str
    repo: str
    commit: str
    pattern: str               # regular expression the repository paths must match in full
    licence: str
    derive: str                # how language / transcript / label come from the files (documentation)
    items: Callable[[Source, list[str], Reader], list[Item]] = field(repr=False, compare=False)
    emotion_corpus: str | None = None  # folder under --emotion-out


# ------------------------------------------------------------------------------------------------ per-source item rules
def _sibling_text(reader: Reader, source: Source, path: str) -> str:
    txt = str(PurePosixPath(path).with_suffix(".txt"))
    return " ".join(reader.read(source, txt).decode("utf-8").split())


def fleurs_cuttledoc(source: Source, paths: list[str], reader: Reader) -> list[Item]:
    out = []
    for p in paths:
        lang = re.fullmatch(r".*/fleurs-([a-z]{2})-\d{3}\.ogg", p).group(1)
        out.append(Item(p, PurePosixPath(p).stem, lang, _sibling_text(reader, source, p)))
    return out


def fleurs_whisperstt(source: Source, paths: list[str], reader: Reader) -> list[Item]:
    out = []
    for p in paths:
        lang = re.fullmatch(r".*/fleurs_([a-z]{2})_.*\.wav", p).group(1)
        out.append(Item(p, PurePosixPath(p).stem, lang, _sibling_text(reader, source, p)))
    return out


_FIRERED_LICENCE = {
    "BAC009": "Apache-2.0 (AISHELL-1); host repo Apache-2.0",
    "IT0011": "AISHELL-2 test utterance (free for academic use); host repo Apache-2.0",
    "TEST_N": "WenetSpeech test_net (CC-BY-4.0 per its card: research use); host repo Apache-2.0",
    "TEST_M": "WenetSpeech test_meeting (CC-BY-4.0 per its card: research use); host repo Apache-2.0",
}


def fireredasr(source: Source, paths: list[str], reader: Reader) -> list[Item]:
    text = {}
    for line in reader.read(source, "examples/wav/text").decode("utf-8").splitlines():
        if line.strip():
            key, _, words = line.strip().partition(" ")
            text[key] = "".join(words.split())  # Mandarin: the word segmentation spaces are not part of the text
    return [Item(p, PurePosixPath(p).stem, "zh", text[PurePosixPath(p).stem],
                 licence=_FIRERED_LICENCE[PurePosixPath(p).stem[:6]]) for p in paths]


def common_voice_ja(source: Source, paths: list[str], reader: Reader) -> list[Item]:
    return [Item(p, PurePosixPath(p).stem.removesuffix("_16k"), "ja") for p in paths]


def emodb(source: Source, paths: list[str], reader: Reader) -> list[Item]:
    out = []
    for p in paths:
        stem = PurePosixPath(p).stem  # 03a01Fa: speaker 03, sentence a01, emotion F, version a
        speaker, sentence, emotion = stem[:2], stem[2:5], stem[5]
        if emotion not in EMODB_VALENCE:
            continue
        out.append(Item(p, stem, "de", EMODB_TEXT[sentence], EMODB_VALENCE[emotion], f"emodb_{speaker}",
                        speech=emotion == "N"))
    return out


def emovo(source: Source, paths: list[str], reader: Reader) -> list[Item]:
    out = []
    for p in paths:
        stem = PurePosixPath(p).stem  # neu-f1-b1: emotion, actor, sentence
        emotion, speaker, sentence = stem.split("-")
        if emotion not in EMOVO_VALENCE:
            continue
        out.append(Item(p, stem, "it", EMOVO_TEXT[sentence], EMOVO_VALENCE[emotion], f"emovo_{speaker}",
                        speech=emotion == "neu"))
    return out


def urdu(source: Source, paths: list[str], reader: Reader) -> list[Item]:
    out = []
    for p in paths:
        folder, stem = PurePosixPath(p).parent.name, PurePosixPath(p).stem  # Angry/SM1_F10_A010: speaker SM1
        out.append(Item(p, stem, "ur", "", URDU_VALENCE[folder], f"urdu_{stem.split('_')[0]}",
                        speech=folder == "Neutral"))
    return out


SOURCES: list[Source] = [
    Source("fleurs_cuttledoc", "sebastian-software/cuttledoc", "e0c587883f1fdf67d521f8e0b3c216b22d91fda6",
           r"packages/cuttledoc/fixtures/fleurs-(de|es|fr|pt)-\d{3}\.ogg",
           "CC-BY-4.0 (FLEURS, Google); host repo MIT",
           "FLEURS test utterances (Opus 24 kb/s re-encodes); language from the file name; reference = the FLEURS "
           "normalised transcription in the sibling .txt (lower case, no punctuation)", fleurs_cuttledoc),
    Source("fleurs_whisperstt", "victorchentw/WhisperSTT", "eb374d6401279858cd0ee508ad396707634611c5",
           r"WhisperiOS/Models/benchmark-clips/fleurs_(ja|zh)_.*\.wav",
           "CC-BY-4.0 (FLEURS, Google; SOURCES.md); host repo has no licence file",
           "FLEURS ja_jp 1837, cmn_hans_cn 1883, and 1805+1830 joined by 350 ms of silence; reference = sibling .txt",
           fleurs_whisperstt),
    Source("fireredasr", "FireRedTeam/FireRedASR", "834635e4cf277ed8ca92049fc375b17c3dc20748",
           r"examples/wav/[^/]+\.wav", "per clip: AISHELL-1 Apache-2.0 / AISHELL-2 academic / WenetSpeech research",
           "Mandarin example clips; reference = examples/wav/text with the segmentation spaces removed",
           fireredasr),
    Source("common_voice_ja", "baikaishui-ks/beatrice-trainer", "79c3b5784e08887d980a9d49e31a035b69f118ff",
           r"assets/test/common_voice_ja_\d+_16k\.wav", "CC0-1.0 (Mozilla Common Voice); host repo MIT",
           "Japanese Common Voice clips; no transcript in the repository (language identification only)",
           common_voice_ja),
    Source("emodb", "neselidondurma/DMMH_workshop", "c9fddd222e69063daf04dac7b020e198184381dd",
           r"2_hands-on_files/session1_processing/public_raw_data/EMO-DB_German_audio/Actor_0[12]/"
           r"\d\d[ab]\d\d[WLEAFTN][a-z]\.wav",
           "CC0-1.0 as published by audEERING (audb emodb; Burkhardt et al. 2005); host repo has no licence file",
           "EmoDB originals (16 kHz) of speakers 03 and 09, 92 clips; file name = speaker, sentence code, emotion "
           "code, version; reference = the corpus's sentence text; valence from the emotion code (boredom left "
           "out); speech set: neutral only",
           emodb, emotion_corpus="emodb"),
    Source("emovo", "fp1acm8/SER", "c13834136874dbf9404f077fd977890605ac90bd",
           r"data/EMOVO/[fm][123]/[a-z]{3}-[fm][123]-[bldn]\d\.wav",
           "EMOVO (Costantini et al. 2014): research use, no explicit licence; host repo Apache-2.0 (its code)",
           "EMOVO, all 588 clips (48 kHz stereo, mixed down); file name = emotion-actor-sentence; reference = the "
           "corpus document's sentence; valence from the emotion (surprise left out); speech set: neutral only",
           emovo, emotion_corpus="emovo"),
    Source("urdu", "siddiquelatif/URDU-Dataset", "4b546d4e0fa36d1c86c53a281631b2ab7ce2fdec",
           r"(Angry|Happy|Neutral|Sad)/S[MF]\d+_F\d+_[AHNS]\d+\.wav",
           "research use only (URDU-Dataset README; Latif et al. 2018); host repo no licence file",
           "URDU dataset (Urdu talk shows), all 400 clips; valence from the folder; speaker from the file name; "
           "no transcripts; speech set: the Neutral folder (language identification only)",
           urdu, emotion_corpus="urdu"),
]

# Small clips for tests/data/speech: (output name, source id, path, language). All licences permit redistribution.
TEST_CLIPS = [
    ("de_fleurs_sediment", "fleurs_cuttledoc", "packages/cuttledoc/fixtures/fleurs-de-005.ogg", "de"),
    ("es_fleurs_luchadores", "fleurs_cuttledoc", "packages/cuttledoc/fixtures/fleurs-es-006.ogg", "es"),
    ("fr_fleurs_fisichella", "fleurs_cuttledoc", "packages/cuttledoc/fixtures/fleurs-fr-005.ogg", "fr"),
    ("zh_aishell1_BAC009S0764W0121", "fireredasr", "examples/wav/BAC009S0764W0121.wav", "zh"),
]


# ------------------------------------------------------------------------------------------------ reading repositories
class Reader:
    """Files of a repository at a commit: from a bare git mirror when it holds the commit, else from GitHub."""

    def __init__(self, mirror_root: Path | None, download: bool):
        self.mirror_root, self.download = mirror_root, download

    def _git_dir(self, source: Source) -> Path | None:
        if self.download or self.mirror_root is None:
            return None
        git_dir = self.mirror_root / source.repo.replace("/", "+") / "repo"
        if not git_dir.is_dir():
            return None
        ok = subprocess.run(["git", f"--git-dir={git_dir}", "cat-file", "-e", f"{source.commit}^{{commit}}"],
                            capture_output=True).returncode == 0
        return git_dir if ok else None

    def list(self, source: Source) -> list[str]:
        git_dir = self._git_dir(source)
        if git_dir is not None:
            out = subprocess.run(["git", f"--git-dir={git_dir}", "ls-tree", "-r", "-z", "--name-only",
                                  source.commit], capture_output=True, check=True).stdout
            paths = [p.decode("utf-8") for p in out.split(b"\0") if p]
        else:
            url = f"https://api.github.com/repos/{source.repo}/git/trees/{source.commit}?recursive=1"
            with urllib.request.urlopen(url, timeout=60) as resp:
                tree = json.load(resp)
            if tree.get("truncated"):
                raise SystemExit(f"{source.repo}: the GitHub tree listing is truncated; use a mirror")
            paths = [e["path"] for e in tree["tree"] if e["type"] == "blob"]
        return sorted(p for p in paths if re.fullmatch(source.pattern, p))

    def read(self, source: Source, path: str) -> bytes:
        git_dir = self._git_dir(source)
        if git_dir is not None:
            return subprocess.run(["git", f"--git-dir={git_dir}", "show", f"{source.commit}:{path}"],
                                  capture_output=True, check=True).stdout
        url = f"https://raw.githubusercontent.com/{source.repo}/{source.commit}/{urllib.parse.quote(path)}"
        with urllib.request.urlopen(url, timeout=120) as resp:
            return resp.read()


# ------------------------------------------------------------------------------------------------ conversion
def to_flac_16k_mono(data: bytes, out: Path) -> None:
    """Any audio file's bytes -> 16 kHz mono 16-bit FLAC, bit-exact and without metadata (same bytes every run)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if shutil.which("ffmpeg"):
        subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", "pipe:0",
                        "-map", "0:a:0", "-map_metadata", "-1", "-ac", "1", "-ar", "16000", "-sample_fmt", "s16",
                        "-c:a", "flac", "-fflags", "+bitexact", "-flags:a", "+bitexact", str(out)],
                       input=data, capture_output=True, check=True)
        return
    import av  # PyAV fallback

    with av.open(io.BytesIO(data)) as src, av.open(str(out), "w", format="flac") as dst:
        stream = dst.add_stream("flac", rate=16000, layout="mono")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
        for frame in src.decode(audio=0):
            for f in resampler.resample(frame):
                dst.mux(stream.encode(f))
        for f in resampler.resample(None):
            dst.mux(stream.encode(f))
        dst.mux(stream.encode(None))


def duration_s(path: Path) -> float:
    import av

    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        return float(s.duration * s.time_base) if s.duration else float(c.duration) / 1e6


# ------------------------------------------------------------------------------------------------ building
def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(sorted(rows))


def build(args) -> None:
    reader = Reader(None if args.download else args.mirror_root, args.download)
    speech_rows: list[list[str]] = []
    emotion_rows: dict[str, list[list[str]]] = {}
    wanted = set(args.only.split(",")) if args.only else None
    produced: dict[Path, set[str]] = {}  # output folder -> files this run wrote or kept
    for source in SOURCES:
        if wanted and source.id not in wanted:
            continue
        paths = reader.list(source)
        items = source.items(source, paths, reader)
        print(f"{source.id}: {len(paths)} files, {len(items)} items ({source.repo}@{source.commit[:10]})",
              flush=True)
        for item in items:
            data = None
            where = f"{source.repo}@{source.commit}:{item.path}"
            licence = item.licence or source.licence
            if item.speech and not args.no_speech:
                rel = f"{source.id}/{item.name}.flac"
                target = args.speech_out / rel
                if args.force or not target.exists():
                    data = reader.read(source, item.path)
                    to_flac_16k_mono(data, target)
                speech_rows.append([rel, item.language, item.reference, where, licence])
                produced.setdefault(target.parent, set()).add(target.name)
            if item.label is not None and source.emotion_corpus and not args.no_emotion:
                rel = f"{item.name}.flac"
                target = args.emotion_out / source.emotion_corpus / rel
                if args.force or not target.exists():
                    data = data if data is not None else reader.read(source, item.path)
                    to_flac_16k_mono(data, target)
                emotion_rows.setdefault(source.emotion_corpus, []).append(
                    [rel, item.label, item.language, item.speaker])
                produced.setdefault(target.parent, set()).add(target.name)
    for folder, names in produced.items():  # files of an earlier build that the sources no longer give
        for stale in sorted(set(p.name for p in folder.glob("*.flac")) - names):
            (folder / stale).unlink()
            print(f"removed stale {folder / stale}")
    if speech_rows and wanted:
        print(f"speech: {len(speech_rows)} clips converted; manifest.csv not written (--only gives a partial set)")
    elif speech_rows:
        _write_csv(args.speech_out / "manifest.csv", ["path", "language", "reference", "source", "licence"],
                   speech_rows)
        print(f"speech: {len(speech_rows)} clips -> {args.speech_out / 'manifest.csv'}:",
              dict(sorted(Counter(r[1] for r in speech_rows).items())))
    for corpus, rows in emotion_rows.items():
        _write_csv(args.emotion_out / corpus / "manifest.csv", ["path", "label", "language", "speaker"], rows)
        print(f"emotion/{corpus}: {len(rows)} clips:", dict(sorted(Counter(r[1] for r in rows).items())))
    if args.test_clips:
        by_id = {s.id: s for s in SOURCES}
        for name, source_id, path, _language in TEST_CLIPS:
            target = args.test_clips / f"{name}.flac"
            to_flac_16k_mono(reader.read(by_id[source_id], path), target)
            print(f"test clip {target}: {duration_s(target):.2f} s, {target.stat().st_size} bytes")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mirror-root", type=Path, default=Path("/work/.mirror"),
                    help="folder of <owner>+<name>/repo bare git mirrors (default /work/.mirror)")
    ap.add_argument("--download", action="store_true", help="read from GitHub even where a mirror exists")
    ap.add_argument("--speech-out", type=Path, default=Path("/work/data/speech_ml"))
    ap.add_argument("--emotion-out", type=Path, default=Path("/work/data/emotion_ml"))
    ap.add_argument("--test-clips", type=Path, default=None, help="also write TEST_CLIPS here (tests/data/speech)")
    ap.add_argument("--only", default="", help="comma-separated source ids (default: all): "
                    + ",".join(s.id for s in SOURCES))
    ap.add_argument("--no-speech", action="store_true", help="skip the speech set")
    ap.add_argument("--no-emotion", action="store_true", help="skip the emotion sets")
    ap.add_argument("--force", action="store_true", help="convert again files that already exist")
    args = ap.parse_args(argv)
    if args.only and not set(args.only.split(",")) <= {s.id for s in SOURCES}:
        ap.error(f"--only: unknown source id in {args.only!r}")
    build(args)


if __name__ == "__main__":
    sys.exit(main())
