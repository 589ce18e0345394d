"""Alert rules: parsing, hysteresis (one alert per episode), `alert` messages on the websocket, and webhooks to a
real local HTTP receiver that is up, slow or down — none of which delays a stream."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from websockets.asyncio.client import connect

from monitor.alerts import MAX_PERSON_EPISODES, AlertMonitor, AlertRule, AlertRuleError, load_rules
from protocol import EndMessage, WindowMessage
from protocol_schema import message_checkers
from testkit.data import VIDEOS, need_data
from testkit.servers import RunningServer, collect, free_port, make_hub, run_vidsent, start

# pyfeat_WolfgangLanger_Pexels.mp4 replayed: its rolling score starts near 0.25 and climbs to about 0.7 by its end
# (19.7 s), its fused score passes 0.9 from 16 s on
CLIP = "pyfeat_WolfgangLanger_Pexels.mp4"


def window(index: int, rolling: float | None, *, hop: float = 2.0, stream: str = "s",
           people: list | None = None) -> WindowMessage:
    t_start = index * hop
    return WindowMessage(stream, index, t_start, t_start + 4.0, {}, {"score": rolling}, {"score": rolling}, "",
                         people=people)


async def run_rule(rule: AlertRule, values: list[float | None]) -> list:
    published = []
    monitor = AlertMonitor([rule], publish=lambda stream, message: published.append(message))
    for i, value in enumerate(values):
        monitor.observe(window(i, value))
        await asyncio.sleep(0)  # alerts go out after the window that caused them
    return published


def test_rules_read_signal_operator_threshold_and_duration():
    rule = AlertRule.parse("rolling<0.3 for 10s")
    assert (rule.signal, rule.op, rule.threshold, rule.for_s, rule.name) == ("rolling", "<", 0.3, 10.0,
                                                                              "rolling<0.3 for 10s")
    assert AlertRule.parse(" audio >= .8 for 1.5m ").for_s == 90.0
    assert AlertRule.parse("visual>0.7").for_s == 0.0
    for bad in ("rolling", "mood<0.3", "rolling<<0.3", "rolling<0.3 for", "rolling<0.3 for ten seconds", ""):
        with pytest.raises(AlertRuleError):
            AlertRule.parse(bad)
    with pytest.raises(AlertRuleError):
        AlertRule.parse("rolling<0.3", webhook="ftp://x")


def test_rules_from_a_toml_file(tmp_path):
    file = tmp_path / "alerts.toml"
    file.write_text('[[alert]]\nname = "sour"\nwhen = "rolling < 0.3 for 10s"\nclear_margin = 0.1\n'
                    'webhook = "http://127.0.0.1:9/hook"\nnotify_cleared = true\n\n'
                    '[[alert]]\nwhen = "text > 0.9"\n')
    rules = load_rules(["fused<0.2"], file)
    assert [r.name for r in rules] == ["fused<0.2", "sour", "text > 0.9"]
    assert rules[1].clear_margin == 0.1 and rules[1].webhook == "http://127.0.0.1:9/hook" and rules[1].notify_cleared
    file.write_text('[[alert]]\nwhen = "rolling < 0.3"\ncolour = "red"\n')
    with pytest.raises(AlertRuleError, match="colour"):
        load_rules([], file)
    file.write_text("[[alert]\n")
    with pytest.raises(AlertRuleError, match="TOML"):
        load_rules([], file)
    with pytest.raises(AlertRuleError, match="same name"):
        load_rules(["rolling<0.3", "rolling<0.3"])


async def test_an_episode_raises_once_and_clears_once_with_hysteresis():
    rule = AlertRule.parse("rolling<0.3 for 6s")  # windows of 4 s every 2 s: the second low window raises it
    # low, low (raised), wobbling around the threshold inside the margin (no new alert), back up (cleared),
    # a missing value (no change), low again for one window only (not long enough), then a second episode
    values = [0.2, 0.25, 0.31, 0.29, 0.33, 0.4, None, 0.2, 0.5, 0.1, 0.1, 0.1]
    alerts = await run_rule(rule, values)
    assert [(a.state, a.t_start, a.t_end) for a in alerts] == [
        ("raised", 0.0, 6.0), ("cleared", 0.0, 14.0), ("raised", 18.0, 24.0)]
    assert alerts[0].value == 0.25 and alerts[1].value == 0.4 and alerts[0].signal == "rolling"


async def test_a_rule_above_a_threshold_and_the_end_of_a_stream_clear_it():
    from protocol import EndMessage

    published = []
    monitor = AlertMonitor([AlertRule.parse("rolling>0.6")], publish=lambda s, m: published.append(m))
    monitor.observe(window(0, 0.7))
    await asyncio.sleep(0)
    monitor.observe(EndMessage("s", {"reason": "eof", "duration": 5.5}))
    assert [(a.state, a.t_end, a.detail) for a in published] == [("raised", 4.0, ""),
                                                                ("cleared", 5.5, "the stream ended")]


def someone(pid: str, score: float | None, *, speaker: int | None = None, text: float | None = None) -> dict:
    """One entry of a window's `people` (a PersonVerdict): `person-N` a face (with `speaker` its voice once bound),
    `voice-N` a voice with no face; `score` their face, fused and rolling score, `text` their words' score."""
    kind, number = pid.split("-")

    def modality(value: float | None, reason: str) -> dict:
        return {"score": value, "label": None, "available": value is not None,
                "reason": None if value is not None else reason, "confidence": None}

    return {"id": pid, "person": int(number) if kind == "person" else None,
            "speaker": int(number) if kind == "voice" else speaker, "seconds": 0.0, "speaking": None,
            "modalities": {"text": modality(text, "did not speak"), "audio": modality(None, "did not speak"),
                           "visual": modality(score if kind == "person" else None, "no face")},
            "fused": {"score": score}, "rolling": {"score": score}}


async def run_windows(rules: list[AlertRule], people: list[list[dict] | None], end: float | None = None) -> list:
    """Windows 0, 1, ... (every 2 s, 4 s long) with these people (the stream's own rolling score stays at 0.5),
    then an end at `end` seconds if given: the alerts published."""
    published = []
    monitor = AlertMonitor(rules, publish=lambda stream, message: published.append(message))
    for i, who in enumerate(people):
        monitor.observe(window(i, 0.5, people=who))
        await asyncio.sleep(0)
    if end is not None:
        monitor.observe(EndMessage("s", {"reason": "eof", "duration": end}))
    check = message_checkers()["alert"]
    assert [check(a.to_json()) for a in published] == [None] * len(published)  # the committed schema allows them
    return published


def test_person_scoped_rules_read_their_scope():
    rule = AlertRule.parse("person rolling<0.3 for 10s")
    assert (rule.per_person, rule.signal, rule.op, rule.threshold, rule.for_s, rule.name) == (
        True, "rolling", "<", 0.3, 10.0, "person rolling<0.3 for 10s")
    assert AlertRule.parse(" person  text < 0.2 ").per_person and AlertRule.parse("person text < 0.2").signal == "text"
    assert AlertRule.parse("person fused<=0.3 for 4s").op == "<="
    assert not AlertRule.parse("rolling<0.3 for 10s").per_person
    with pytest.raises(AlertRuleError, match="signal is one of"):
        AlertRule.parse("person mood<0.3")
    with pytest.raises(AlertRuleError, match="'persons' is no scope; write 'person'"):
        AlertRule.parse("persons rolling<0.3")
    for bad in ("person", "person <0.3", "person person rolling<0.3", "rolling person<0.3", "person<0.3"):
        with pytest.raises(AlertRuleError):
            AlertRule.parse(bad)


def test_person_scoped_rules_from_a_toml_file(tmp_path):
    file = tmp_path / "alerts.toml"
    file.write_text('[[alert]]\nname = "someone sour"\nwhen = "person rolling < 0.3 for 10s"\n\n'
                    '[[alert]]\nwhen = "rolling < 0.3 for 10s"\n')
    scoped, stream = load_rules([], file)
    assert (scoped.name, scoped.per_person, scoped.signal, scoped.for_s) == ("someone sour", True, "rolling", 10.0)
    assert not stream.per_person


async def test_a_person_rule_alerts_only_for_the_person_who_goes_low():
    rule = AlertRule.parse("person rolling<0.3 for 6s")
    # person 3 (face with voice 1) low from the first window; person 1 and a voice with no face stay content
    windows = [[someone("person-1", 0.6), someone("person-3", 0.2, speaker=1), someone("voice-2", 0.7)]
               for _ in range(4)]
    alerts = await run_windows([rule], windows)
    assert [(a.state, a.person, a.detail, a.t_start, a.t_end, a.value) for a in alerts] == [
        ("raised", "person-3", "person 3 · voice 2", 0.0, 6.0, 0.2)]
    assert alerts[0].rule == "person rolling<0.3 for 6s" and alerts[0].signal == "rolling"
    # a voice with no face, named as a voice; a modality rule reads the person's own modality
    alerts = await run_windows([AlertRule.parse("person text < 0.2")],
                               [[someone("person-1", 0.1), someone("voice-2", 0.5, text=0.1)]])
    assert [(a.person, a.detail, a.signal, a.value) for a in alerts] == [("voice-2", "voice 3", "text", 0.1)]


async def test_each_person_has_their_own_episode_with_hysteresis():
    rule = AlertRule.parse("person rolling<0.3 for 6s")
    a = [0.2, 0.25, 0.31, 0.29, 0.33, 0.4, 0.5, 0.2, 0.2]  # raised at 6 s, wobbles, cleared at 14 s, raised at 18 s
    b = [0.5, 0.5, 0.2, 0.2, 0.2, 0.32, 0.34, 0.2, 0.2]  # raised at 10 s, inside the margin from 14 s: stays raised
    alerts = await run_windows([rule], [[someone("person-1", x), someone("person-2", y)] for x, y in zip(a, b)])
    assert [(x.person, x.state, x.t_start, x.t_end) for x in alerts] == [
        ("person-1", "raised", 0.0, 6.0), ("person-2", "raised", 4.0, 10.0), ("person-1", "cleared", 0.0, 14.0),
        ("person-1", "raised", 14.0, 20.0)]
    assert [x.detail for x in alerts] == ["person 1", "person 2", "person 1", "person 1"]
    assert alerts[2].value == 0.4


async def test_the_end_clears_each_raised_person_episode_with_their_person():
    rule = AlertRule.parse("person fused<=0.3")
    windows = [[someone("person-3", 0.2, speaker=1), someone("voice-2", 0.1), someone("person-4", 0.9)],
               [someone("voice-2", 0.1)],  # person 3 left the view: their episode stays raised
               [someone("voice-2", 0.1)]]
    alerts = await run_windows([rule], windows, end=9.5)
    assert [(a.state, a.person, a.detail, a.value, a.t_start, a.t_end) for a in alerts] == [
        ("raised", "person-3", "person 3 · voice 2", 0.2, 0.0, 4.0), ("raised", "voice-2", "voice 3", 0.1, 0.0, 4.0),
        ("cleared", "person-3", "person 3 · voice 2: the stream ended", None, 0.0, 9.5),
        ("cleared", "voice-2", "voice 3: the stream ended", None, 0.0, 9.5)]


async def test_the_stream_rule_beside_a_person_rule_is_as_before():
    stream_rule, person_rule = AlertRule.parse("rolling<0.3 for 2s"), AlertRule.parse("person rolling<0.3 for 2s")
    published = []
    monitor = AlertMonitor([stream_rule, person_rule], publish=lambda stream, message: published.append(message))
    for i, rolling in enumerate([0.2, 0.2]):
        monitor.observe(window(i, rolling, people=[someone("person-1", 0.6), someone("person-2", 0.1)]))
        await asyncio.sleep(0)
    monitor.observe(EndMessage("s", {"reason": "eof", "duration": 6.0}))
    assert [(a.rule, a.state, a.person, a.detail) for a in published] == [
        ("rolling<0.3 for 2s", "raised", None, ""), ("person rolling<0.3 for 2s", "raised", "person-2", "person 2"),
        ("rolling<0.3 for 2s", "cleared", None, "the stream ended"),
        ("person rolling<0.3 for 2s", "cleared", "person-2", "person 2: the stream ended")]
    assert published[0].to_json()["person"] is None


async def test_windows_without_people_or_their_signal_change_nothing_for_person_rules():
    rule = AlertRule.parse("person text<0.3 for 6s")
    assert await run_windows([rule], [None, None, [], None], end=8.0) == []
    # person 1's words low, then a window without people, then one where they did not speak (text missing), then
    # low again: the run goes on from the first window and raises at 10 s
    low, silent = someone("person-1", 0.5, text=0.1), someone("person-1", 0.5)
    windows = [[low], None, [silent], [low]]
    alerts = await run_windows([rule], windows)
    assert [(a.person, a.state, a.t_start, a.t_end) for a in alerts] == [("person-1", "raised", 0.0, 10.0)]


async def test_person_episodes_are_bounded_per_stream_and_rule():
    crowd = [someone(f"person-{n}", 0.1) for n in range(MAX_PERSON_EPISODES)]
    # runs under way, none raised: a newcomer makes the least recently seen one forgotten (its run starts over)
    monitor = AlertMonitor([AlertRule.parse("person rolling<0.3 for 60s")], publish=lambda s, m: None)
    monitor.observe(window(0, 0.5, people=crowd))
    monitor.observe(window(1, 0.5, people=crowd[1:] + [someone("person-99", 0.1)]))
    followed = monitor._people[("s", "person rolling<0.3 for 60s")]
    assert len(followed) == MAX_PERSON_EPISODES and "person-0" not in followed and "person-99" in followed
    # every one raised: the least recently seen is cleared, saying so, rather than kept raised for ever
    alerts = await run_windows([AlertRule.parse("person rolling<0.3")],
                               [crowd, crowd[1:], [someone("person-99", 0.1)]])
    assert len(alerts) == MAX_PERSON_EPISODES + 2 and all(a.state == "raised" for a in alerts[:-1])
    assert (alerts[-1].state, alerts[-1].person, alerts[-1].detail, alerts[-1].t_end) == (
        "cleared", "person-0", f"person 0: no longer followed (over {MAX_PERSON_EPISODES} people)", 8.0)
    assert alerts[-2].person == "person-99"


class Receiver:
    """A real HTTP server on loopback that records each POSTed JSON body; `hold` makes it answer only once
    released (a slow receiver)."""

    def __init__(self, hold: bool = False):
        self.bodies: list[dict] = []
        self.release = threading.Event()
        if not hold:
            self.release.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.release.wait(30)
                receiver.bodies.append(body)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.http.serve_forever, name="test-receiver", daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.http.shutdown()
        self.http.server_close()
        self.thread.join(5)


async def stream_with_rules(engine, rules: list[AlertRule]):
    """The clip replayed through a server with these rules: (its messages, the hub)."""
    hub = make_hub(engine, alert_rules=rules)
    async with RunningServer(hub) as server:
        async with connect(server.url) as ws:
            await ws.recv()
            messages = await collect(ws, await start(ws, CLIP, stream="clip"))
        await hub.alerts.webhooks.drain(10)
        return messages, hub


async def test_alerts_reach_the_websocket_and_a_webhook_once_per_episode(engine):
    need_data("videos", CLIP)
    with Receiver() as receiver:
        # 0.32: the Pexels clip's first window sits at 0.30, a hair either side of 0.3 by CPU
        rules = [AlertRule.parse("rolling<0.32 for 6s", name="low", webhook=receiver.url),
                 AlertRule.parse("fused>0.9", name="elated", webhook=receiver.url, notify_cleared=True)]
        messages, hub = await stream_with_rules(engine, rules)
    alerts = [m for m in messages if m.type == "alert"]
    assert [(a.rule, a.state) for a in alerts] == [("low", "raised"), ("low", "cleared"), ("elated", "raised"),
                                                   ("elated", "cleared")]
    low_raised, low_cleared, elated, ended = alerts
    assert low_raised.t_start == 0.0 and low_raised.value < 0.32 and low_cleared.value >= 0.37
    assert elated.value > 0.9 and ended.detail == "the stream ended"
    windows = [m for m in messages if m.type == "window"]
    for alert in alerts[:3]:  # each alert follows the window it came from
        cause = next(i for i, m in enumerate(messages) if m.type == "window" and m.t_end == alert.t_end)
        assert messages.index(alert) > cause
    assert messages.index(ended) < len(messages) - 1 and messages[-1].type == "end"
    # one POST per episode for "low"; "elated" posts its clear too: the bodies are the alert messages
    assert receiver.bodies == [a.to_json() for a in (low_raised, elated, ended)]
    assert len(windows) == 9


@pytest.mark.parametrize("receiver_state", ["slow", "down"])
async def test_a_slow_or_down_webhook_never_holds_up_the_stream(engine, receiver_state):
    need_data("videos", CLIP)
    with Receiver(hold=True) as receiver:
        url = receiver.url if receiver_state == "slow" else f"http://127.0.0.1:{free_port()}/hook"
        rules = [AlertRule.parse("rolling<0.32 for 6s", name="low", webhook=url)]
        hub = make_hub(engine, alert_rules=rules)
        async with RunningServer(hub) as server:
            async with connect(server.url) as ws:
                await ws.recv()
                messages = await collect(ws, await start(ws, CLIP, stream="clip"))
                # the whole stream went out while its alert's POST was still unanswered (or refused)
                assert receiver.bodies == [] and hub.alerts.webhooks.delivered == 0
                receiver.release.set()
                await hub.alerts.webhooks.drain(15)
    assert len([m for m in messages if m.type == "window"]) == 9 and messages[-1].summary["reason"] == "eof"
    assert [m.state for m in messages if m.type == "alert"] == ["raised", "cleared"]
    if receiver_state == "slow":
        assert len(receiver.bodies) == 1 and hub.alerts.webhooks.delivered == 1
    else:
        assert hub.alerts.webhooks.failed == 1 and receiver.bodies == []


@pytest.mark.models  # `vidsent watch` on a real clip
async def test_watch_prints_alerts_between_the_windows(tmp_path):
    need_data("videos", CLIP)
    code, out, err = await run_vidsent("watch", str(VIDEOS / CLIP), "--fast", "--alert", "rolling<0.32 for 6s")
    assert code == 0, err
    lines = out.splitlines()
    raised = next(i for i, line in enumerate(lines) if line.startswith("⚠ alert rolling<0.32 for 6s: rolling 0.2"))
    window_before = next(line for line in reversed(lines[:raised]) if not line.startswith("    "))  # not a person
    assert window_before.startswith("[   2.0–   6.0s]")  # right after the window that raised it (and its people)
    assert any(line.startswith("✓ alert rolling<0.32 for 6s cleared at 14.0 s") for line in lines[raised:])
    code, out, err = await run_vidsent("watch", str(VIDEOS / CLIP), "--fast", "--alert", "mood<0.3")
    assert code == 2 and "signal is one of" in err and "Traceback" not in err


async def test_a_voice_tied_to_a_face_hands_its_episode_over_and_an_absence_breaks_a_run():
    rule = AlertRule.parse("person rolling<0.3 for 4s")
    # voice 1 alone and low: raised; then the mouths tie it to face 3: the same episode goes on as person-3's
    tied = someone("person-3", 0.1, speaker=1)
    alerts = await run_windows([rule], [[someone("voice-1", 0.1)], [someone("voice-1", 0.1)], [tied], [tied]],
                               end=10.0)
    assert [(a.person, a.state) for a in alerts] == [("voice-1", "raised"), ("person-3", "cleared")]
    assert alerts[-1].detail.startswith("person 3 · voice 2") and alerts[-1].t_start == 0.0
    # a run is not carried over an absence of two windows or more: low, away, away, low, low is no 4 s run yet
    low = someone("person-1", 0.1)
    assert await run_windows([AlertRule.parse("person rolling<0.3 for 6s")], [[low], None, [], [low]]) == []
