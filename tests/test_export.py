"""`charrnn export`: safetensors round trips, ONNX parity with onnxruntime, the torch-free example script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from charrnn.checkpoint import load_checkpoint
from charrnn.cli import app
from charrnn.config import TrainConfig
from charrnn.corpus import Corpus
from charrnn.evaluate import score_text
from charrnn.model import ModelConfig
from charrnn.train import Trainer
from charrnn.vocab import Vocabulary
from conftest import REPO, SMALL_TEXT

onnxruntime = pytest.importorskip("onnxruntime", reason="the export extra is not installed")
runner = CliRunner()

VARIANTS = {
    "lstm": {},
    "gru": {"cell": "gru"},
    "rnn": {"cell": "rnn"},
    "onehot": {"input": "onehot"},
    "tied": {"weight_tying": True, "embedding": 24},
    "byte": {},
    "peephole": {"cell": "peephole-lstm", "layers": 1},
}
ONNX_VARIANTS = [v for v in VARIANTS if v != "peephole"]


def train_tiny(folder: Path, variant: str, steps: int = 150) -> Path:
    options = {"layers": 2, "hidden": 24, "embedding": 12, "dropout": 0.0, **VARIANTS[variant]}
    steps = {"byte": 4, "onehot": 2}.get(variant, 1) * steps  # slower to leave the all-spaces phase
    if options.get("input") == "onehot":
        options.pop("embedding")
    text = SMALL_TEXT
    vocab = Vocabulary.for_bytes() if variant == "byte" else Vocabulary.from_text(text)
    corpus = Corpus("small", vocab, vocab.encode(text))
    config = ModelConfig(vocab_size=len(vocab), **options)
    if config.input == "onehot":
        config.embedding = len(vocab)
    train = TrainConfig(
        batch_size=8, seq_len=32, max_steps=steps, eval_every=steps, seed=3, precision="fp32", lr=0.01
    )
    Trainer(corpus, config, train, folder).run()
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export-models")
    return {v: train_tiny(root / v, v) for v in VARIANTS}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_safetensors_round_trip_gives_the_same_model(tmp_path, models, variant):
    out = tmp_path / "m.safetensors"
    result = invoke("export", models[variant], "--format", "safetensors", "--out", out)
    assert result.exit_code == 0, result.output
    original, exported = load_checkpoint(models[variant]), load_checkpoint(out)
    assert exported.vocab.chars == original.vocab.chars and exported.level == original.level
    assert exported.model_config == original.model_config
    a, b = original.build_model(), exported.build_model()
    ids = torch.randint(0, len(original.vocab), (2, 30))
    with torch.no_grad():
        assert torch.equal(a(ids)[0], b(ids)[0])
    text = SMALL_TEXT[:500]
    assert score_text(a, original.vocab, text).nats == score_text(b, exported.vocab, text).nats
    from safetensors import safe_open

    with safe_open(str(out), framework="np") as f:
        meta = f.metadata()
        names = set(f.keys())  # noqa: SIM118
    assert meta["format"] == "pt" and json.loads(meta["vocab"]) == original.vocab.to_list()
    assert ("head.weight" in names) != original.model_config.weight_tying
    info = invoke("info", out, "--json")
    assert info.exit_code == 0 and json.loads(info.stdout)["hidden"] == 24


def test_a_safetensors_file_cannot_resume_but_can_start_a_fine_tuned_run(tmp_path, models, small_text_file):
    out = tmp_path / "m.safetensors"
    assert invoke("export", models["lstm"], "--out", out).exit_code == 0
    resumed = invoke("train", small_text_file, "--resume", out)
    assert resumed.exit_code == 1 and "cannot be resumed" in resumed.output
    tuned = invoke(
        "train", small_text_file, "--init", out, "--max-steps", "3", "--out", tmp_path / "ft", "-q"
    )
    assert tuned.exit_code == 0, tuned.output


def _onnx_steps(path: Path, ids: list[int], lstm: bool, layers: int, hidden: int) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    state = {"h": np.zeros((layers, 1, hidden), np.float32)}
    if lstm:
        state["c"] = np.zeros((layers, 1, hidden), np.float32)
    rows = []
    for i in ids:
        out = session.run(None, {"ids": np.array([[i]], dtype=np.int64), **state})
        rows.append(out[0][0, 0])
        state["h"] = out[1]
        if lstm:
            state["c"] = out[2]
    return np.stack(rows)


@pytest.mark.parametrize("variant", ONNX_VARIANTS)
def test_onnx_logits_match_charrnn_for_a_thousand_steps(tmp_path, models, variant):
    out = tmp_path / "m.onnx"
    result = invoke("export", models[variant], "--format", "onnx", "--out", out)
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(models[variant])
    ids = ckpt.vocab.encode((SMALL_TEXT * 3)[:1000]).long()
    with torch.no_grad():
        expected, _ = ckpt.build_model()(ids[None])
    c = ckpt.model_config
    got = _onnx_steps(out, ids.tolist(), c.cell == "lstm", c.layers, c.hidden)
    assert np.abs(got - expected[0].numpy()).max() < 1e-4
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    whole = session.run(None, {"ids": ids[None, :50].numpy(), **_zeros(c)})[0]  # the prime graph: T = 50
    assert np.abs(whole[0] - expected[0, :50].numpy()).max() < 1e-4


def _zeros(c: ModelConfig) -> dict:
    state = {"h": np.zeros((c.layers, 1, c.hidden), np.float32)}
    if c.cell == "lstm":
        state["c"] = np.zeros((c.layers, 1, c.hidden), np.float32)
    return state


@pytest.mark.parametrize("variant", ["lstm", "gru", "byte"])
def test_the_example_script_writes_the_greedy_text_of_charrnn_without_torch(tmp_path, models, variant):
    out = tmp_path / "m.onnx"
    assert invoke("export", models[variant], "--format", "onnx", "--out", out).exit_code == 0
    expected = invoke("sample", models[variant], "--prime", "the cat", "--length", "500", "-T", "0")
    assert expected.exit_code == 0, expected.output
    blocker = tmp_path / "no-torch"
    blocker.mkdir()
    (blocker / "torch.py").write_text("raise ImportError('torch is blocked in this test')\n")
    (blocker / "charrnn.py").write_text("raise ImportError('charrnn is blocked in this test')\n")
    script = REPO / "examples" / "onnx_sample.py"
    env = {"PYTHONPATH": str(blocker), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, str(script), str(out), "--prime", "the cat", "--length", "500",
         "--temperature", "0"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected.stdout
    seeded = [
        subprocess.run(
            [sys.executable, str(script), str(out), "--prime", "a", "--length", "50", "--seed", "7"],
            capture_output=True, text=True, env=env, timeout=120, check=True,
        ).stdout
        for _ in range(2)
    ]  # fmt: skip
    assert seeded[0] == seeded[1] and len(seeded[0]) > 10


def test_the_peephole_lstm_is_refused_for_onnx_in_one_line(tmp_path):
    vocab = Vocabulary.from_text(SMALL_TEXT)
    corpus = Corpus("small", vocab, vocab.encode(SMALL_TEXT))
    config = ModelConfig(vocab_size=len(vocab), cell="peephole-lstm", layers=1, hidden=8, embedding=4)
    Trainer(
        corpus, config, TrainConfig(batch_size=2, seq_len=8, max_steps=2, eval_every=2), tmp_path / "p"
    ).run()
    result = invoke("export", tmp_path / "p", "--format", "onnx", "--out", tmp_path / "p.onnx")
    assert result.exit_code == 1 and "peephole LSTM has no ONNX operator" in result.output
    assert not (tmp_path / "p.onnx").exists()
    assert invoke("export", tmp_path / "p", "--out", tmp_path / "p.safetensors").exit_code == 0


def test_bad_export_input_gets_one_line_errors(tmp_path, models, monkeypatch):
    unknown = invoke("export", models["lstm"], "--format", "tflite")
    assert unknown.exit_code == 2 and "tflite" in unknown.output
    missing_dir = invoke("export", models["lstm"], "--out", tmp_path / "nowhere" / "m.safetensors")
    assert missing_dir.exit_code == 1 and "does not exist" in missing_dir.output
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"PK\x03\x04 not really")
    bad = invoke("export", damaged, "--out", tmp_path / "x.onnx", "--format", "onnx")
    assert bad.exit_code == 1 and "not a readable checkpoint" in bad.output
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if the export extra were not installed
    no_extra = invoke("export", models["lstm"], "--format", "onnx", "--out", tmp_path / "y.onnx")
    assert no_extra.exit_code == 1 and "pip install 'charrnn[export]'" in no_extra.output
    assert "Traceback" not in no_extra.output and not (tmp_path / "y.onnx").exists()


# ---- the web page ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    from test_playground import headless_chromium

    with headless_chromium() as launched:
        yield launched


def open_page(browser, path: Path, events: list, wasm: bool = True):
    page = browser.new_page(viewport={"width": 1000, "height": 800})
    if not wasm:  # as in a browser without WebAssembly: the page's JavaScript product instead
        page.add_init_script("WebAssembly.Module = undefined;")
    page.set_default_timeout(30_000)
    page.on("console", lambda m: events.append(("console", m.type, m.text)))
    page.on("pageerror", lambda e: events.append(("error", str(e))))
    page.on("request", lambda r: events.append(("request", r.url)))
    page.goto(path.as_uri())
    wait_until(page, "window.charrnn !== undefined")
    return page


def wait_until(page, expression: str, seconds: float = 30.0) -> None:
    """Poll a condition with page.evaluate (wait_for_function's string form is eval, which the page's
    CSP forbids), at most `seconds`."""
    import time

    deadline = time.monotonic() + seconds
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.05)


@pytest.mark.parametrize("variant", ["lstm", "gru", "rnn", "peephole", "onehot", "tied", "byte"])
def test_the_page_writes_what_charrnn_writes_with_the_same_weights(tmp_path, models, browser, variant):
    from charrnn.export.web_page import dequantised

    out = tmp_path / "m.html"
    result = invoke("export", models[variant], "--format", "html", "--out", out)
    assert result.exit_code == 0, result.output
    same = tmp_path / "same.pt"
    dequantised(load_checkpoint(models[variant])).save(same)  # the page's int8-rounded weights, in charrnn
    expected = invoke("sample", same, "--prime", "the cat", "--length", "300", "-T", "0")
    assert expected.exit_code == 0, expected.output
    events: list = []
    for wasm in (False, True):
        page = open_page(browser, out, events, wasm)
        assert page.evaluate("window.charrnn.info.simd") is wasm
        greedy = page.evaluate("window.charrnn.generate({prime: 'the cat', length: 300, temperature: 0})")
        assert "the cat" + greedy + "\n" == expected.stdout, f"wasm {wasm}"
        if not wasm:
            page.close()
    assert len(set(greedy)) > 3  # real text, not one repeated character
    seeded = "window.charrnn.generate({prime: 'a', length: 80, temperature: 0.9, top_p: 0.95, seed: 5})"
    first, second = page.evaluate(seeded), page.evaluate(seeded)
    assert first == second and first != page.evaluate(seeded.replace("seed: 5", "seed: 6"))
    assert [e for e in events if e[0] == "error" or (e[0] == "console" and e[1] == "error")] == []
    assert {e for e in events if e[0] == "request"} == {("request", out.as_uri())}  # only the file itself
    page.close()


def test_the_page_streams_into_its_text_and_stops(tmp_path, models, browser):
    out = tmp_path / "m.html"
    assert invoke("export", models["lstm"], "--format", "html", "--out", out).exit_code == 0
    events: list = []
    page = open_page(browser, out, events)
    page.fill("#prime", "the dog")
    page.fill("#length", "100000")
    page.click("#write")
    wait_until(page, "document.getElementById('out').textContent.length > 200")
    page.click("#stop")
    wait_until(page, "!document.getElementById('write').disabled")
    shown = page.text_content("#out")
    assert shown.startswith("the dog") and 200 < len(shown) < 100_000
    page.fill("#prime", "東京 ☃")  # characters the tiny character model does not know
    page.fill("#length", "10")
    page.click("#write")
    wait_until(page, "document.getElementById('error').textContent.length > 0")
    assert "does not know" in page.text_content("#error")
    page.screenshot(path=str(tmp_path / "page.png"))
    assert not [e for e in events if e[0] == "error"]
    page.close()
