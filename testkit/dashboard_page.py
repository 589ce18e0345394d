"""The dashboard in a real browser, with the test playing a stream's messages into it: a server on testkit's fake
engine (no model loads) serves the page to headless Chromium, whose websocket is routed through the test (hello, list
and media come from the server as they are), and each message the test plays is checked against the schema of the
protocol's types first (schema_problem). `async with played_dashboard(stream) as dashboard` gives a PlayedDashboard
once the stream's panel is there; screenshots go to out/test-artifacts/ (or $VIDSENT_TEST_ARTIFACTS)."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator

from protocol import Message, SubscribedMessage
from testkit.browser import ARTIFACTS, CHROMIUM, chromium_args, need_browser
from testkit.servers import RunningServer, make_hub

_checks: dict = {}


def schema_problem(message: dict) -> str | None:
    """What the schema of the protocol's types (as they are now, not as last committed) says is wrong with a
    message the test plays, else None."""
    if not _checks:
        from protocol_schema import message_checkers, protocol_schema

        _checks.update(message_checkers(protocol_schema()))
    return _checks[message["type"]](message)


class PlayedDashboard:
    """The dashboard's page (`page`), its console errors (`errors`), and its websocket (`socket`) routed through
    the test, watching the stream `stream`."""

    def __init__(self, page, socket, errors: list[str], stream: str):
        self.page, self.socket, self.errors, self.stream = page, socket, errors, stream

    def play(self, *messages: Message | dict) -> None:
        """Sends messages to the page as if the server had sent them, in order, each checked against the schema."""
        for message in messages:
            data = message.to_json() if isinstance(message, Message) else message
            assert (problem := schema_problem(data)) is None, problem
            self.socket.send(json.dumps(data, ensure_ascii=False))

    async def text(self, selector: str) -> str:
        return await self.page.locator(selector).first.text_content()

    async def windows(self, count: int) -> None:
        """Waits until the page has taken `count` windows of the stream."""
        await self.page.wait_for_function("([id, n]) => (window.vidsent.streams[id] || {}).windows >= n",
                                          arg=[self.stream, count], timeout=10000)

    async def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(ARTIFACTS / name), full_page=True)


@contextlib.asynccontextmanager
async def played_dashboard(stream: str) -> AsyncIterator[PlayedDashboard]:
    """The dashboard of a server on the fake engine (no model loads), open in headless Chromium, subscribed to
    `stream` (its panel `.stream-panel[data-stream='{stream}']` is there); skips (or fails) without Chromium."""
    need_browser()
    from playwright.async_api import async_playwright

    async with RunningServer(make_hub(media_dir=None)) as server, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=chromium_args())
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            sockets = []

            def through_the_test(socket):
                socket.connect_to_server()  # the server's own messages pass as they are
                sockets.append(socket)

            await page.route_web_socket(re.compile(r"^wss?://"), through_the_test)
            await page.goto(server.url.replace("ws://", "http://") + "/")
            await page.wait_for_function("window.vidsent && window.vidsent.connected", timeout=15000)
            dashboard = PlayedDashboard(page, sockets[-1], errors, stream)
            dashboard.play(SubscribedMessage(stream))
            await page.locator(f".stream-panel[data-stream='{stream}']").wait_for(timeout=10000)
            yield dashboard
        finally:
            await browser.close()
