"""Alert rules over a stream's windows, with hysteresis, as `alert` messages and optional webhooks.

A rule reads `[person] SIGNAL OP THRESHOLD [for DURATION]`, e.g. ``rolling<0.3 for 10s`` or ``audio >= 0.8``:
- ``person`` (optional): the rule is scoped to each person of the window's ``people`` (a face, a voice, or a face
  with its voice), read from their own rolling, fused and modality scores: one episode per person, its alerts
  carrying the person's id (``person``) and naming them in ``detail`` (``person 3 (voice 1)``, ``voice 2``). A
  person who leaves the view keeps their episode (a window without them changes nothing for them); at most
  MAX_PERSON_EPISODES people are followed per stream and rule: beyond that the least recently seen person whose
  episode is not raised is forgotten, or, when every one is raised, the least recently seen one is cleared
  (``detail``: ``... no longer followed``);
- SIGNAL: ``rolling`` (the rolling fused score), ``fused`` (the window's fused score), or one modality's score
  (``text``, ``audio``, ``visual``); a window where it is missing neither starts nor ends an episode;
- OP: ``<``, ``<=``, ``>``, ``>=``; DURATION: media seconds (``10s``, ``1.5s``, ``2m``) the condition must hold over
  consecutive windows before the rule is raised (default 0: the first such window raises it).
It is raised once per episode, and cleared once the signal is back past the threshold by the rule's margin (0.05
by default), or when the stream ends (each person's episode too). Rules come from `--alert` (repeatable) or a TOML
file (`--alerts FILE`):

    [[alert]]
    name = "call turning sour"        # optional; the rule's text by default
    when = "rolling < 0.3 for 10s"    # or "person rolling < 0.3 for 10s": an alert per person
    clear_margin = 0.1                # optional
    webhook = "http://hooks.example/vidsent"   # optional: POST each raised alert (one per episode) as JSON
    notify_cleared = true             # optional: POST the cleared alert too

A webhook is posted from its own thread with a timeout, retried with exponential backoff, and dropped (with a
warning) once retries run out or its queue is full: a receiver that is slow or down never delays a stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import operator
import re
import tomllib
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from protocol import (
    AlertMessage,
    EndMessage,
    FusedVerdict,
    Message,
    Modalities,
    ModalityVerdict,
    PersonVerdict,
    RollingVerdict,
    WindowMessage,
    person_name,
)

log = logging.getLogger(__name__)

SIGNALS = ("rolling", "fused", "text", "audio", "visual")
SCOPES = ("person",)  # the optional first word of a rule: one episode per person of the window's `people`
OPERATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
MAX_PERSON_EPISODES = 64  # people followed per stream and person-scoped rule (see the module's docstring)
RULE = re.compile(r"^\s*(?:(?P<scope>[a-z]+)\s+)?(?P<signal>[a-z]+)\s*(?P<op><=|>=|<|>)\s*"
                  r"(?P<threshold>[-+]?\d*\.?\d+)"
                  r"(?:\s+for\s+(?P<for>\d*\.?\d+)\s*(?P<unit>s|m)?)?\s*$")


class AlertRuleError(ValueError):
    """A rule that cannot be read (the command line reports it and exits)."""


@dataclass(frozen=True)
class AlertRule:
    name: str
    signal: str
    op: str
    threshold: float
    for_s: float = 0.0
    clear_margin: float = 0.05
    webhook: str | None = None
    notify_cleared: bool = False  # the webhook also gets the cleared alert, not only the raised one
    per_person: bool = False  # scoped `person`: followed for each person of the windows' `people`, one episode each

    @classmethod
    def parse(cls, text: str, *, name: str | None = None, clear_margin: float = 0.05,
              webhook: str | None = None, notify_cleared: bool = False) -> AlertRule:
        match = RULE.match(text)
        if match is None:
            raise AlertRuleError(f"cannot read alert rule {text!r}: write [person] SIGNAL OP THRESHOLD "
                                 f"[for DURATION], e.g. 'rolling<0.3 for 10s' or 'person rolling<0.3 for 10s'")
        scope = match["scope"]
        if scope is not None and scope not in SCOPES:
            raise AlertRuleError(f"alert rule {text!r}: {scope!r} is no scope; write 'person' before the signal for "
                                 f"an alert per person (e.g. 'person rolling<0.3 for 10s'), or nothing for the "
                                 f"stream's")
        signal = match["signal"]
        if signal not in SIGNALS:
            raise AlertRuleError(f"alert rule {text!r}: the signal is one of {', '.join(SIGNALS)}")
        for_s = float(match["for"] or 0.0) * (60.0 if match["unit"] == "m" else 1.0)
        if clear_margin < 0:
            raise AlertRuleError(f"alert rule {text!r}: clear_margin must not be negative")
        if webhook is not None and not webhook.startswith(("http://", "https://")):
            raise AlertRuleError(f"alert rule {text!r}: a webhook is an http:// or https:// URL")
        return cls(name or " ".join(text.split()), signal, match["op"], float(match["threshold"]), for_s,
                   clear_margin, webhook, notify_cleared, per_person=scope == "person")

    def holds(self, value: float) -> bool:
        return OPERATORS[self.op](value, self.threshold)

    def cleared_by(self, value: float) -> bool:
        """Past the threshold the other way by the margin: the hysteresis that makes one episode one alert."""
        if self.op in ("<", "<="):
            return value >= self.threshold + self.clear_margin
        return value <= self.threshold - self.clear_margin


def load_rules(texts: list[str], file: str | Path | None = None, webhook: str | None = None) -> list[AlertRule]:
    """Rules from `--alert` texts (each posting to `webhook` if given) and from a TOML file's [[alert]] tables."""
    rules = [AlertRule.parse(text, webhook=webhook) for text in texts]
    if file is not None:
        try:
            spec = tomllib.loads(Path(file).read_text())
        except OSError as exc:
            raise AlertRuleError(f"cannot read alert rules from {file}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise AlertRuleError(f"{file} is not valid TOML: {exc}") from None
        entries = spec.get("alert", [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise AlertRuleError(f"{file}: write each rule as an [[alert]] table")
        for entry in entries:
            unknown = set(entry) - {"name", "when", "clear_margin", "webhook", "notify_cleared"}
            if unknown or not isinstance(entry.get("when"), str):
                raise AlertRuleError(f"{file}: an [[alert]] has 'when' (text) and optionally name, clear_margin, "
                                     f"webhook, notify_cleared; got {sorted(entry)}")
            rules.append(AlertRule.parse(entry["when"], name=entry.get("name"),
                                         clear_margin=float(entry.get("clear_margin", 0.05)),
                                         webhook=entry.get("webhook", webhook),
                                         notify_cleared=bool(entry.get("notify_cleared", False))))
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise AlertRuleError("two alert rules have the same name: give each a name")
    return rules


def _score(signal: str, rolling: RollingVerdict | None, fused: FusedVerdict | None,
           modalities: Modalities | None) -> float | None:
    if signal == "rolling":
        return rolling.get("score") if rolling else None
    if signal == "fused":
        return fused.get("score") if fused else None
    verdicts = cast("dict[str, ModalityVerdict]", modalities or {})  # every value of Modalities is one
    modality: Mapping[str, Any] = verdicts.get(signal) or {}
    return modality.get("score") if modality.get("available") else None


def signal_of(window: WindowMessage, signal: str) -> float | None:
    return _score(signal, window.rolling, window.fused, window.modalities)


def person_signal_of(person: PersonVerdict, signal: str) -> float | None:
    """A signal of one person of a window's `people`: their own rolling, fused or modality score."""
    return _score(signal, person.get("rolling"), person.get("fused"), person.get("modalities"))


class _Episode:
    """One rule on one stream (or one person of it): the run of windows that satisfy it, and whether it is raised."""

    def __init__(self) -> None:
        self.since: float | None = None  # t_start of the first window of the current run
        self.raised = False
        self.who = ""  # a person-scoped episode's person in words (as last seen), for its alerts' detail
        self.last_end: float | None = None  # t_end of the last window the person was in (person-scoped only)


class AlertMonitor:
    """A hub observer: follows every stream's windows and publishes `alert` messages on the same stream (after
    the window that caused them), posting them to the rules' webhooks."""

    def __init__(self, rules: list[AlertRule], publish: Callable[[str, Message], None],
                 webhooks: WebhookSender | None = None):
        self.rules = rules
        self.publish = publish  # (stream id, message): puts an alert on that stream
        self.webhooks = webhooks if webhooks is not None else WebhookSender()
        self._episodes: dict[tuple[str, str], _Episode] = {}
        # (stream, rule name) → person id → their episode, least recently seen first (at most MAX_PERSON_EPISODES)
        self._people: dict[tuple[str, str], OrderedDict[str, _Episode]] = {}

    def observe(self, message: Message) -> None:
        if isinstance(message, WindowMessage):
            for rule in self.rules:
                if rule.per_person:
                    self._follow_people(rule, message)
                else:
                    self._follow(rule, message)
        elif isinstance(message, EndMessage):
            t_end = message.summary.get("duration") or 0.0
            for rule in self.rules:
                episode = self._episodes.pop((message.stream, rule.name), None)
                if episode is not None and episode.raised:
                    assert episode.since is not None  # a raised episode has its start
                    self._emit(message.stream, rule, "cleared", None, episode.since, t_end, "the stream ended",
                               before_this_message=True)
                people = self._people.pop((message.stream, rule.name), None) or OrderedDict()
                for pid, episode in people.items():
                    if episode.raised:
                        assert episode.since is not None  # a raised episode has its start
                        self._emit(message.stream, rule, "cleared", None, episode.since, t_end,
                                   f"{episode.who}: the stream ended", before_this_message=True, person=pid)

    def _follow(self, rule: AlertRule, window: WindowMessage) -> None:
        value = signal_of(window, rule.signal)
        if value is None:
            return
        episode = self._episodes.setdefault((window.stream, rule.name), _Episode())
        self._step(rule, window, episode, value)

    def _follow_people(self, rule: AlertRule, window: WindowMessage) -> None:
        """A person-scoped rule: each person of the window on their own episode; those not in it keep theirs."""
        episodes = self._people.setdefault((window.stream, rule.name), OrderedDict())
        self._hand_over(rule, window, episodes)
        seen: set[str] = set()
        for person in window.people or []:
            pid = person.get("id")
            if not isinstance(pid, str) or pid in seen:
                continue
            seen.add(pid)
            episode = episodes.get(pid)
            if episode is not None:
                if not episode.raised and episode.last_end is not None and window.t_start > episode.last_end + 1e-6:
                    episode.since = None  # away for a window or more: their run starts again when they are back
                episode.last_end = window.t_end
            value = person_signal_of(person, rule.signal)
            if value is None:  # missing for them in this window: changes nothing more
                continue
            if episode is None:
                episode = episodes[pid] = _Episode()
                episode.last_end = window.t_end
            episodes.move_to_end(pid)
            episode.who = person_name(person)
            self._step(rule, window, episode, value, person=pid)
            if not episode.raised and episode.since is None:  # nothing to remember about them
                del episodes[pid]
        while len(episodes) > MAX_PERSON_EPISODES:
            self._forget_one(rule, window, episodes)

    def _hand_over(self, rule: AlertRule, window: WindowMessage, episodes: OrderedDict[str, _Episode]) -> None:
        """A voice heard alone (`voice-K`) now tied to a face (`person-N` with speaker K): its episode becomes the
        face's person's, or, where that person has one already, a raised one is cleared (it is theirs now)."""
        for person in window.people or []:
            pid, speaker = person.get("id"), person.get("speaker")
            if not isinstance(pid, str) or not pid.startswith("person-") or not isinstance(speaker, int):
                continue
            alone = episodes.pop(f"voice-{speaker}", None)
            if alone is None:
                continue
            if pid not in episodes:
                episodes[pid] = alone
            elif alone.raised:
                assert alone.since is not None  # a raised episode has its start
                self._emit(window.stream, rule, "cleared", None, alone.since, window.t_end,
                           f"{alone.who}: now {person_name(person)}", person=f"voice-{speaker}")

    def _forget_one(self, rule: AlertRule, window: WindowMessage, episodes: OrderedDict[str, _Episode]) -> None:
        """Over the bound: the least recently seen person not raised is forgotten, else the least recently seen one
        is cleared (their alert must not stay raised for ever)."""
        pid = next((pid for pid, episode in episodes.items() if not episode.raised), None)
        if pid is not None:
            del episodes[pid]
            return
        pid, episode = episodes.popitem(last=False)
        assert episode.since is not None  # a raised episode has its start
        self._emit(window.stream, rule, "cleared", None, episode.since, window.t_end,
                   f"{episode.who}: no longer followed (over {MAX_PERSON_EPISODES} people)", person=pid)

    def _step(self, rule: AlertRule, window: WindowMessage, episode: _Episode, value: float,
              person: str | None = None) -> None:
        """One window's value on an episode: raise it, clear it (hysteresis) or extend or end its run."""
        if episode.raised:
            assert episode.since is not None  # a raised episode has its start
            if rule.cleared_by(value):
                self._emit(window.stream, rule, "cleared", value, episode.since, window.t_end, episode.who,
                           person=person)
                episode.raised, episode.since = False, None
            return
        if not rule.holds(value):
            episode.since = None
            return
        if episode.since is None:
            episode.since = window.t_start
        if window.t_end - episode.since >= rule.for_s:
            episode.raised = True
            self._emit(window.stream, rule, "raised", value, episode.since, window.t_end, episode.who,
                       person=person)

    def _emit(self, stream: str, rule: AlertRule, state: Literal["raised", "cleared"], value: float | None,
              t_start: float, t_end: float, detail: str = "", before_this_message: bool = False,
              person: str | None = None) -> None:
        alert = AlertMessage(stream, rule.name, state, rule.signal, None if value is None else round(value, 4),
                             rule.threshold, round(t_start, 3), round(t_end, 3), detail, person=person)
        log.info("alert %s on %s: %s%s (%s = %s at %.1f s)", state, stream, rule.name,
                 f" for {detail or person}" if person else "", rule.signal, alert.value, t_end,
                 extra={"stream": stream})
        if before_this_message:  # an end: the stream is gone once its end is out
            self.publish(stream, alert)
        else:  # after the window being observed has gone out, so clients see the window before its alert
            asyncio.get_running_loop().call_soon(self.publish, stream, alert)
        if rule.webhook and (state == "raised" or rule.notify_cleared):
            self.webhooks.post(rule.webhook, alert.to_json())

    async def close(self, drain_s: float = 0.0) -> None:
        await self.webhooks.drain(drain_s)
        await self.webhooks.close()


class WebhookSender:
    """POSTs JSON to webhook URLs from one thread of its own (a slow receiver holds up no other work), with a
    timeout per try, retries with exponential backoff, and a bounded queue (posts beyond it are dropped)."""

    def __init__(self, timeout_s: float = 5.0, retries: int = 3, backoff_s: float = 0.5, max_queued: int = 256):
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_queued = max_queued
        self.queued = 0
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._pool: ThreadPoolExecutor | None = None

    def post(self, url: str, body: dict) -> None:
        """Queue one POST; returns at once."""
        if self._worker is None:
            self._queue = asyncio.Queue(self.max_queued)
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="vidsent-webhook")
            self._worker = asyncio.get_running_loop().create_task(self._deliver(), name="vidsent-webhooks")
        assert self._queue is not None  # made with the worker
        try:
            self._queue.put_nowait((url, json.dumps(body).encode()))
            self.queued += 1
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("webhook queue full (%d posts waiting): dropped an alert for %s", self.max_queued,
                        _host_of(url))

    async def _deliver(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._queue is not None  # post() makes the queue before it starts this task
        while True:
            url, data = await self._queue.get()
            for attempt in range(self.retries + 1):
                try:
                    await loop.run_in_executor(self._pool, self._post_blocking, url, data)
                    self.delivered += 1
                    break
                except (OSError, urllib.error.URLError) as exc:
                    if attempt == self.retries:
                        self.failed += 1
                        log.warning("webhook %s failed %d times, alert dropped: %s", _host_of(url),
                                    attempt + 1, getattr(exc, "reason", exc))
                    else:
                        await asyncio.sleep(self.backoff_s * 2 ** attempt)

    def _post_blocking(self, url: str, data: bytes) -> None:
        request = urllib.request.Request(url, data=data, method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": "vidsent"})
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            response.read()

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait (at most timeout_s) until every queued post was delivered or given up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.delivered + self.failed < self.queued and loop.time() < deadline:
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            assert self._pool is not None  # made with the worker
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._worker = None


def _host_of(url: str) -> str:
    """A webhook's host for logs: its path and query may hold a secret."""
    return urlsplit(url).netloc.rpartition("@")[2] or url
