"""The playground page of `charrnn serve` in headless Chromium: models listed, text streamed, Stop aborting.

A real server runs for the module, `python -m charrnn serve RUN --port PORT --host 127.0.0.1 --quiet` on a
tiny model trained here, stopped with SIGTERM at the end. The browser reaches nothing but that server.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charrnn.cli import app
from conftest import REPO, SMALL_TEXT, TINY_TRAIN_FLAGS

APP = REPO / "charrnn" / "serve" / "app.py"
PRIME = "the cat "  # characters the tiny model knows (SMALL_TEXT holds them)
FINISHED = "body:is([data-state=done], [data-state=stopped], [data-state=error])"
WAIT_MS = 15_000  # the longest any one browser step may take
STARTUP_S = 60


def browser_or_skip():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])"
    )
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip(
            "no Chromium here: install Debian's `chromium` package (.ci/run does) to run the browser test"
        )
    return sync_api, chromium


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read()


@dataclass
class Server:
    origin: str
    models: list[str]


def log_tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-chars:] if log.exists() else ""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A `charrnn serve` process on a free port, serving one tiny model; ready once /health answers 200."""
    if not APP.is_file():
        pytest.skip("charrnn serve is not built yet (charrnn/serve/app.py is missing)")
    for module in ("starlette", "uvicorn"):
        pytest.importorskip(module, reason="the serve extra is not installed (pip install -e .[serve])")
    browser_or_skip()  # before any training: nothing to do without a browser
    folder = tmp_path_factory.mktemp("playground")
    corpus = folder / "small.txt"
    corpus.write_text(SMALL_TEXT, encoding="utf-8")
    run = folder / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHARRNN_CACHE_DIR", str(folder / "cache"))
        done = CliRunner().invoke(app, ["train", str(corpus), "--out", str(run), *TINY_TRAIN_FLAGS])
    assert done.exit_code == 0, done.output

    port = free_port()
    env = dict(os.environ, CHARRNN_CACHE_DIR=str(folder / "cache"), OMP_NUM_THREADS="2")
    log = folder / "server.log"
    flags = ["--port", str(port), "--host", "127.0.0.1", "--quiet"]
    command = [sys.executable, "-m", "charrnn", "serve", str(run), *flags]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    origin = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"the server exited with {process.returncode} before it was ready:\n{log_tail(log)}"
                )
            try:
                if get(origin + "/health", timeout=2)[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer /health within {STARTUP_S} s:\n{log_tail(log)}")
            time.sleep(0.25)
        listed = json.loads(get(origin + "/v1/models")[1])
        yield Server(origin, [m["id"] for m in listed["data"]])
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def headless_chromium():
    """Debian's Chromium, headless, through playwright (skips the test when either is missing)."""
    sync_api, chromium = browser_or_skip()
    with sync_api.sync_playwright() as pw:
        launched = pw.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def browser(server):
    with headless_chromium() as launched:
        yield launched


def open_playground(browser, server: Server, events: list[tuple[str, str]]):
    """The page, loaded and its model list filled; console messages, script errors and requests recorded."""
    page = browser.new_page(viewport={"width": 1000, "height": 760})
    page.set_default_timeout(WAIT_MS)
    page.on("console", lambda m: events.append((m.type, m.text)))
    page.on("pageerror", lambda e: events.append(("pageerror", str(e))))
    page.on("dialog", lambda d: (events.append(("dialog", d.message)), d.dismiss()))
    page.on("request", lambda r: events.append(("request", r.url)))
    page.goto(server.origin + "/")
    page.wait_for_selector("body:is([data-state=ready], [data-state=error])")
    assert page.get_attribute("body", "data-state") == "ready", page.inner_text("#status")
    return page


def finish(page) -> str:
    page.wait_for_selector(FINISHED, timeout=30_000)
    return page.get_attribute("body", "data-state")


def problems(events: list[tuple[str, str]], origin: str) -> list[tuple[str, str]]:
    """Script errors, console errors, dialogs and any request that left the page's origin."""
    return [
        e
        for e in events
        if e[0] in ("error", "pageerror", "dialog")
        or (e[0] == "request" and not e[1].startswith(origin + "/"))
    ]


def test_the_page_is_served_with_a_fresh_nonce_and_nothing_from_outside(server):
    pages = [get(server.origin + "/")[1].decode("utf-8") for _ in range(2)]
    assert "{{nonce}}" not in pages[0], "the server must replace every {{nonce}} in playground.html"
    nonces = [set(re.findall(r"'nonce-([A-Za-z0-9+/=_-]+)'", p)) for p in pages]
    assert all(len(n) == 1 for n in nonces) and nonces[0] != nonces[1], nonces  # one per response, fresh
    (nonce,) = nonces[0]
    assert pages[0].count(f'nonce="{nonce}"') == 2  # the page's one style and one script element
    assert re.search(r"<(link|script|img)[^>]+(src|href)=\"(?!data:)", pages[0]) is None


def test_generate_streams_text_from_the_model_in_headless_chromium(server, browser, tmp_path):
    events: list[tuple[str, str]] = []
    page = open_playground(browser, server, events)
    try:
        options = page.eval_on_selector_all("#model option", "os => os.map(o => o.value)")
        assert options == server.models and len(options) == 1
        page.fill("#prime", PRIME)
        page.fill("#length", "120")
        page.click("#generate")
        state = finish(page)
        status = page.inner_text("#status")
        assert state == "done", status
        output = page.text_content("#output")
        assert page.text_content("#output .prime") == PRIME
        generated = output[len(PRIME) :]
        assert output.startswith(PRIME) and 0 < len(generated) <= 120
        shown = re.search(r"(\d+) characters in [\d.]+ s, ([\d.]+|–) chars/s", status)
        assert shown and int(shown.group(1)) == len(generated), status
        shot = tmp_path / "playground.png"
        page.screenshot(path=str(shot), full_page=True)
    finally:
        page.close()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5_000
    requested = {url for kind, url in events if kind == "request"}
    assert server.origin + "/v1/completions" in requested and server.origin + "/v1/models" in requested
    assert not problems(events, server.origin), problems(events, server.origin)


def test_stop_aborts_a_long_generation(server, browser):
    events: list[tuple[str, str]] = []
    page = open_playground(browser, server, events)
    try:
        page.fill("#prime", PRIME)
        page.fill("#length", "4000")
        # press Stop from inside the page the moment the first text arrives: a fast server cannot outrun it
        page.evaluate(
            """(primeLength) => {
                const output = document.getElementById("output");
                const watch = new MutationObserver(() => {
                    if (output.textContent.length > primeLength) {
                        watch.disconnect();
                        document.getElementById("stop").click();
                    }
                });
                watch.observe(output, { childList: true, characterData: true, subtree: true });
            }""",
            len(PRIME),
        )
        page.click("#generate")
        state = finish(page)
        status = page.inner_text("#status")
        assert state == "stopped", status
        assert status.startswith("Stopped after") and "chars/s" in status
        generated = page.text_content("#output")[len(PRIME) :]
        assert 0 < len(generated) < 4000
        assert page.is_enabled("#generate") and not page.is_enabled("#stop")
        # the server is none the worse for the abandoned stream: the next request is answered in full
        page.fill("#length", "20")
        page.click("#generate")
        assert finish(page) == "done", page.inner_text("#status")
    finally:
        page.close()
    assert not problems(events, server.origin), problems(events, server.origin)
