"""Fixtures and hooks: the real data's checks, one Engine (models load once per test session), derived test media,
the protocol schema held to every message a test receives, and the `models` marker on the tests that load the
models. What tests share beyond fixtures (fakes, servers, media builders) is in testkit/."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # testkit and the project's modules, also when pytest is not run as `python -m pytest`
    sys.path.insert(0, str(ROOT))

from testkit.data import DATA, REQUIRE_DATA, need_data  # noqa: E402
from testkit.servers import close_engines_made  # noqa: E402


def pytest_configure(config):
    if REQUIRE_DATA and not DATA.is_dir():
        raise pytest.UsageError(f"VIDSENT_REQUIRE_DATA=1 but the real data is not at {DATA}")


@pytest.fixture(scope="session", autouse=True)
def data_dir_of_the_session(tmp_path_factory):
    """`vidsent serve` keeps a history in its data directory by default: never the real home's, in tests (the
    serve subprocesses inherit it too)."""
    before = os.environ.get("VIDSENT_DATA_DIR")
    os.environ["VIDSENT_DATA_DIR"] = str(tmp_path_factory.mktemp("vidsent-data"))
    yield
    if before is None:
        os.environ.pop("VIDSENT_DATA_DIR", None)
    else:
        os.environ["VIDSENT_DATA_DIR"] = before


@pytest.fixture(autouse=True)
def engines_of_made_hubs_closed():
    """The fake engines testkit's make_hub made for a test end with it (their threads would count in later tests)."""
    yield
    close_engines_made()


# What the servers of the tests sent that docs/protocol.schema.json does not allow, in the running test.
SCHEMA_VIOLATIONS: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def server_messages_follow_the_schema():
    """Every text message a test's websocket client receives (the tests' own connections and VidsentClient's) is
    checked against the committed schema; a vidsent message it does not allow fails the test that received it.
    Checked where it is received, not in protocol.parse_message: tests parse hand-made partial messages too."""
    from websockets.asyncio.client import ClientConnection

    from protocol_schema import received_text_checker

    check = received_text_checker()
    receive = ClientConnection.recv

    async def receive_checked(self, *args, **kwargs):
        data = await receive(self, *args, **kwargs)
        if isinstance(data, str) and (problem := check(data)):
            SCHEMA_VIOLATIONS.append(problem)
        return data

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ClientConnection, "recv", receive_checked)  # `async for` on a connection calls recv too
        yield


def _fail_on_schema_violations() -> None:
    if SCHEMA_VIOLATIONS:
        found = list(SCHEMA_VIOLATIONS)
        SCHEMA_VIOLATIONS.clear()
        pytest.fail(f"the server sent {len(found)} message(s) that docs/protocol.schema.json does not allow:\n"
                    + "\n".join(found[:5]), pytrace=False)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks `models` every test that uses a fixture which loads real models: the session's `engine`, and those its
    module names in MODEL_FIXTURES. The other tests that load models, or run a program that does, carry the marker
    where they are written (`pytestmark`, `@pytest.mark.models`)."""
    for item in items:
        loaders = {"engine", *getattr(getattr(item, "module", None), "MODEL_FIXTURES", ())}
        if loaders & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.models)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    SCHEMA_VIOLATIONS.clear()
    result = yield
    _fail_on_schema_violations()
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    _fail_on_schema_violations()
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    result = yield
    _fail_on_schema_violations()
    return result


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread: on 2 cores shared with other work, two OpenMP threads can run many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def engine():
    """The real models, without following voices (each replay would embed its speech: minutes over the suite);
    tests/test_voices_live.py and the `vidsent` subprocesses run with them."""
    from engine import Engine

    eng = Engine(asr="tiny.en", device="cpu", speakers=False)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def engine_with_voices(engine):
    """The session's models, with the voice encoder, the mouth reader and their thread (the session's engine runs
    without them): who speaks, whose mouth moves, and each person's verdicts. Per module: its workers' threads end
    with the module, so the thread counts of later tests (tests/test_reliability.py) see only the session's."""
    from engine import Engine
    from models.mouth import mouth_reader
    from models.voices import load_voice_encoder

    eng = Engine(scorers=engine.scorers, transcriber=engine.transcriber, device="cpu",
                 whole_file_transcriber=engine.whole_file_transcriber, voice_embed=load_voice_encoder("cpu").embed,
                 read_mouth=mouth_reader().read)
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def looped_mosi(tmp_path_factory) -> Path:
    """vna_mosi_2.6.mp4 ("I mean that was impressive.", 1.3 s) played 9 times over: about 12 s of a live talker."""
    import subprocess

    src = need_data("videos", "vna_mosi_2.6.mp4")
    out = tmp_path_factory.mktemp("media") / "mosi_looped.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "8", "-i", str(src), "-c:v", "libx264",
                    "-preset", "veryfast", "-c:a", "aac", str(out)], check=True, timeout=120)
    return out
