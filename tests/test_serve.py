"""`charrnn serve` through real clients: the official openai package and raw HTTP (httpx), on a loopback port
chosen by the test, in a server the test starts and stops. Every loop is bounded in count and time."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")

import uvicorn  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from charrnn.api import load  # noqa: E402
from charrnn.cli import app as cli_app  # noqa: E402
from charrnn.serve.app import ServeOptions, create_app  # noqa: E402
from charrnn.serve.protocol import Limits  # noqa: E402
from conftest import SMALL_TEXT, TINY_TRAIN_FLAGS  # noqa: E402

KEY = "test-key-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Running:
    """A server on a free loopback port in a thread of this process; stopped by `stop` (bounded)."""

    def __init__(self, models: dict, options: ServeOptions):
        self.port = free_port()
        self.app = create_app(models, options)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="error", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        assert not self.thread.is_alive()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHARRNN_CACHE_DIR", str(folder / "cache"))
        text = folder / "small.txt"
        text.write_text(SMALL_TEXT, encoding="utf-8")
        result = CliRunner().invoke(
            cli_app, ["train", str(text), "--out", str(folder / "tiny"), *TINY_TRAIN_FLAGS]
        )
        assert result.exit_code == 0, result.output
    return folder / "tiny"


@pytest.fixture(scope="module")
def server(run):
    options = ServeOptions(max_batch=32, max_queue=64, limits=Limits(max_tokens=500, max_body_bytes=20_000))
    running = Running({"tiny": load(run, device="cpu")}, options)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", timeout=30, max_retries=0)


def test_completions_with_the_openai_client(client, run):
    done = client.completions.create(model="tiny", prompt="the ", max_tokens=40, seed=3, temperature=0.7)
    choice = done.choices[0]
    assert done.object == "text_completion" and done.model == "tiny"
    assert len(choice.text) == 40 and choice.finish_reason == "length"
    assert done.usage.prompt_tokens == 4 and done.usage.completion_tokens == 40
    # the same text as `charrnn sample` with that seed: one engine
    cli = CliRunner().invoke(
        cli_app, ["sample", str(run), "--prime", "the ", "-n", "40", "--seed", "3", "-T", "0.7"]
    )
    assert cli.stdout == "the " + choice.text + "\n"
    echoed = client.completions.create(
        model="tiny", prompt="the ", max_tokens=40, seed=3, temperature=0.7, echo=True
    )
    assert echoed.choices[0].text == "the " + choice.text


def test_streaming_n_and_stop(client):
    pieces: dict[int, list[str]] = {}
    finishes = {}
    events = client.completions.create(model="tiny", prompt="a ", max_tokens=60, n=3, seed=5, stream=True)
    for event in events:
        for c in event.choices:
            pieces.setdefault(c.index, []).append(c.text)
            if c.finish_reason:
                finishes[c.index] = c.finish_reason
    whole = client.completions.create(model="tiny", prompt="a ", max_tokens=60, n=3, seed=5)
    assert sorted(pieces) == [0, 1, 2] and finishes == {0: "length", 1: "length", 2: "length"}
    assert ["".join(pieces[i]) for i in range(3)] == [
        c.text for c in sorted(whole.choices, key=lambda c: c.index)
    ]
    assert all(len(p) > 2 for p in pieces.values())  # it came in several events
    stopped = client.completions.create(
        model="tiny", prompt="a ", max_tokens=60, n=3, seed=5, stop=["t", "."]
    )
    for c in stopped.choices:
        full = whole.choices[c.index].text
        cut = min((full.find(s) for s in ("t", ".") if s in full), default=len(full))
        assert c.text == full[:cut] and c.finish_reason == ("stop" if cut < len(full) else "length")


def test_logprobs_are_the_models_own(client):
    done = client.completions.create(model="tiny", prompt="the ", max_tokens=12, seed=1, logprobs=3)
    block = done.choices[0].logprobs
    assert "".join(block.tokens) == done.choices[0].text and len(block.token_logprobs) == 12
    for chosen, lp, top in zip(block.tokens, block.token_logprobs, block.top_logprobs, strict=True):
        assert len(top) == 3 and lp <= 0 and max(top.values()) >= lp - 1e-6
        if chosen in top:
            assert top[chosen] == pytest.approx(lp)
    assert block.text_offset == list(range(12))


def test_streamed_logprobs_cover_each_piece_and_match_the_whole(client):
    whole = client.completions.create(model="tiny", prompt="the ", max_tokens=40, seed=2, logprobs=2)
    tokens, offsets, pieces = [], [], []
    events = client.completions.create(
        model="tiny", prompt="the ", max_tokens=40, seed=2, logprobs=2, stream=True
    )
    for event in events:
        choice = event.choices[0]
        if choice.text:
            assert "".join(choice.logprobs.tokens) == choice.text
            tokens += choice.logprobs.tokens
            offsets += choice.logprobs.text_offset
            pieces.append(choice.text)
    block = whole.choices[0].logprobs
    assert "".join(pieces) == whole.choices[0].text and len(pieces) > 1
    assert tokens == block.tokens and offsets == block.text_offset == list(range(40))


def test_a_seed_gives_the_same_text_alone_and_among_others(client):
    def ask(seed: int) -> str:
        return client.completions.create(model="tiny", prompt="on ", max_tokens=50, seed=seed).choices[0].text

    alone = ask(42)
    with ThreadPoolExecutor(12) as pool:
        crowd = list(pool.map(ask, [42 if i % 4 == 0 else 100 + i for i in range(12)]))
    assert [crowd[i] for i in range(0, 12, 4)] == [alone] * 3


def _post(server, path: str, body, **kw):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(
        server.url + path, content=data, headers={"Content-Type": "application/json"}, timeout=20, **kw
    )


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        ({"model": "nope", "prompt": "a"}, 404, "model"),
        ({"prompt": "a", "temperature": -1}, 400, "temperature"),
        ({"prompt": "a", "max_tokens": 501}, 400, "max_tokens"),
        ({"prompt": "a\u00a7", "max_tokens": 5}, 400, "prompt"),
        ({"prompt": "a", "n": 17}, 400, "n"),
        ({"prompt": "a", "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
        ({"prompt": 5}, 400, "prompt"),
        ({"prompt": "a", "logprobs": 6}, 400, "logprobs"),
        ({"prompt": "a", "top_p": 0}, 400, "top_p"),
        ({"prompt": "x" * 25_000}, 413, None),
        ({"prompt": "a", "temperature": 10**400}, 400, "temperature"),
        (b"[" * 5000 + b"]" * 5000, 400, None),
    ],
)
def test_every_bad_request_gets_its_openai_shaped_error(server, body, status, param):
    answer = _post(server, "/v1/completions", body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"] and error["param"] == param
    assert "Traceback" not in answer.text


def test_unknown_characters_can_be_dropped(server):
    answer = _post(server, "/v1/completions", {"prompt": "a\u00a7 ", "max_tokens": 5, "drop_unknown": True})
    assert answer.status_code == 200 and len(answer.json()["choices"][0]["text"]) == 5
    refused = _post(server, "/v1/completions", {"prompt": "a\u00a7 ", "max_tokens": 5}).json()["error"]
    assert "'\u00a7'" in refused["message"] and "drop_unknown" in refused["message"]


def test_health_models_metrics_generate_score_and_unknown_paths(server):
    assert httpx.get(server.url + "/health", timeout=10).json()["status"] == "ok"
    models = httpx.get(server.url + "/v1/models", timeout=10).json()
    assert models["object"] == "list" and models["data"][0]["id"] == "tiny"
    generated = _post(
        server, "/generate", {"start_text": "the ", "n": 2, "length": 20, "temperature": 0.5}
    ).json()
    assert generated["start_text"] == "the " and [len(t) for t in generated["completions"]] == [20, 20]
    scored = _post(server, "/v1/score", {"text": SMALL_TEXT[:300], "surprisal": True}).json()
    assert scored["chars"] == 299 and len(scored["surprisal"]) == 300 and scored["nats"] > 0
    assert scored["nats"] == pytest.approx(sum(scored["surprisal"]) / 299, rel=1e-4)
    metrics = httpx.get(server.url + "/metrics", timeout=10).text
    for name in ("charrnn_rows_running", "charrnn_generated_characters_total", "charrnn_disconnects_total"):
        assert name in metrics
    assert "charrnn_time_to_first_character_seconds_bucket" in metrics
    missing = httpx.get(server.url + "/nothing", timeout=10)
    assert missing.status_code == 404 and "error" in missing.json()


def _running_rows(server) -> float:
    for line in httpx.get(server.url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("charrnn_rows_running{"):
            return float(line.rsplit(" ", 1)[1])
    return -1.0


def test_a_client_that_goes_away_frees_its_row(server):
    body = {"prompt": "the ", "max_tokens": 500, "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=20) as answer:
        for count, _ in enumerate(answer.iter_lines()):
            if count > 4:
                break
    deadline = time.monotonic() + 10
    while _running_rows(server) != 0:
        assert time.monotonic() < deadline, "the abandoned row is still running"
        time.sleep(0.1)
    assert "charrnn_disconnects_total" in httpx.get(server.url + "/metrics", timeout=10).text


def _open_request(port: int, body: dict) -> socket.socket:
    """A completions request on a raw connection, left open (the caller closes it: the client leaves)."""
    data = json.dumps(body).encode()
    head = (
        f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    connection.sendall(head.encode() + data)
    return connection


def _wait_rows(server, rows: int) -> None:
    deadline = time.monotonic() + 10
    while _running_rows(server) != rows:
        assert time.monotonic() < deadline, f"the server never had {rows} rows running"
        time.sleep(0.02)


def test_a_full_queue_answers_429_with_retry_after(run):
    options = ServeOptions(max_batch=1, max_queue=0, limits=Limits(max_tokens=5_000_000))
    running = Running({"tiny": load(run, device="cpu")}, options)
    try:
        idle = httpx.post(running.url + "/v1/completions", json={"prompt": "a", "max_tokens": 3}, timeout=20)
        assert idle.status_code == 200  # an idle server takes a request even with no queue
        first = _open_request(
            running.port, {"prompt": "the ", "max_tokens": 5_000_000}
        )  # longer than the test
        _wait_rows(running, 1)  # the one row is busy
        refused = httpx.post(running.url + "/v1/completions", json={"prompt": "a"}, timeout=10)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["type"] == "rate_limit_error"
        first.close()  # its client leaves: the row is freed
        _wait_rows(running, 0)
        again = httpx.post(running.url + "/v1/completions", json={"prompt": "a", "max_tokens": 3}, timeout=20)
        assert again.status_code == 200
    finally:
        running.stop()


def test_an_api_key_guards_everything_but_health_and_cors_is_opt_in(run):
    options = ServeOptions(api_key=KEY, cors_origins=["http://example.test"])
    running = Running({"tiny": load(run, device="cpu")}, options)
    try:
        assert httpx.get(running.url + "/health", timeout=10).status_code == 200
        refused = httpx.get(running.url + "/v1/models", timeout=10)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
        wrong = openai.OpenAI(base_url=running.url + "/v1", api_key="wrong", max_retries=0, timeout=10)
        with pytest.raises(openai.AuthenticationError):
            wrong.completions.create(model="tiny", prompt="a", max_tokens=3)
        right = openai.OpenAI(base_url=running.url + "/v1", api_key=KEY, max_retries=0, timeout=10)
        assert len(right.completions.create(model="tiny", prompt="a", max_tokens=3).choices[0].text) == 3
        allowed = httpx.get(
            running.url + "/health", headers={"Origin": "http://example.test"}, timeout=10
        ).headers.get("access-control-allow-origin")
        assert allowed == "http://example.test"
        preflight = httpx.options(
            running.url + "/v1/completions",
            headers={
                "Origin": "http://example.test",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
            timeout=10,
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "http://example.test"
        lower = httpx.get(running.url + "/v1/models", headers={"Authorization": f"bearer {KEY}"}, timeout=10)
        assert lower.status_code == 200
    finally:
        running.stop()


def test_the_command_refuses_a_port_in_use_and_a_bad_checkpoint_in_one_line(run, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = subprocess.run(
            [sys.executable, "-m", "charrnn", "serve", str(run), "--port", str(port), "-q"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert busy.returncode == 1 and "cannot listen" in busy.stderr and "--port" in busy.stderr
    assert busy.stderr.count("\n") == 1
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    bad = CliRunner().invoke(cli_app, ["serve", str(broken), "--port", str(free_port())])
    assert bad.exit_code == 1 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_sigterm_ends_running_streams_with_a_finish_reason_and_exits_0(run):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "charrnn", "serve", str(run), "--port", str(port), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline and process.poll() is None, "the server did not start"
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        lines = []
        body = {"prompt": "the ", "max_tokens": 100_000 // 25, "stream": True}
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=30) as answer:
            for line in answer.iter_lines():
                if line:
                    lines.append(line)
                if len(lines) == 3:
                    process.terminate()
        assert lines[-1] == "data: [DONE]"
        last = json.loads(lines[-2][len("data: ") :])
        assert last["choices"][0]["finish_reason"] == "length"
        assert process.wait(timeout=15) == 0
        assert process.stdout.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_a_tiny_vocabulary_with_logprobs_and_a_failing_model_never_hang(tmp_path):
    """logprobs asking for more alternatives than the model has symbols; then a model whose step raises:
    its requests get a 503, never a wait without end."""
    text = tmp_path / "ab.txt"
    text.write_text("ab\n" * 300, encoding="utf-8")
    trained = CliRunner().invoke(
        cli_app, ["train", str(text), "--out", str(tmp_path / "ab"), *TINY_TRAIN_FLAGS]
    )
    assert trained.exit_code == 0, trained.output
    model = load(tmp_path / "ab", device="cpu")
    running = Running({"ab": model}, ServeOptions())
    try:
        done = _post(running, "/v1/completions", {"prompt": "a", "max_tokens": 5, "logprobs": 5}).json()
        assert len(done["choices"][0]["logprobs"]["top_logprobs"][0]) == 3  # all three symbols

        def broken(*args, **kwargs):
            raise RuntimeError("a fault nobody foresaw")

        model.engine.advance = broken
        failed = _post(running, "/v1/completions", {"prompt": "a", "max_tokens": 5})
        assert failed.status_code == 503 and "failed" in failed.json()["error"]["message"]
        assert httpx.get(running.url + "/health", timeout=10).status_code == 503
    finally:
        running.stop()


def test_a_non_streaming_client_that_goes_away_frees_its_row(run):
    server = Running({"tiny": load(run, device="cpu")}, ServeOptions(limits=Limits(max_tokens=5_000_000)))
    try:
        connection = _open_request(server.port, {"prompt": "the ", "max_tokens": 5_000_000})
        _wait_rows(server, 1)
        connection.close()
        _wait_rows(server, 0)
    finally:
        server.stop()
