"""evaluate --show and --html: the trace behind them, the features, the page's data, escaping, a browser."""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.evaluate import score_ids
from charrnn.features import feature_units, text_features
from charrnn.model import CharRNN, ModelConfig
from charrnn.page import script_safe_json, visible
from charrnn.trace import trace_ids
from charrnn.vocab import Vocabulary
from conftest import TINY_TRAIN_FLAGS

runner = CliRunner()
LN2 = math.log(2)
# everything a hostile or unlucky text can hold: markup, a closing tag, quotes, control characters
EVIL = (
    "He said \"hi\" <script>alert(1)</script> and </span></script><!-- & 'q' "
    '<img src=x onerror="alert(2)"> \x07\x01bell\x1b[31m\n\tindented "quote" (a [b] c)\n'
)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def evil_run(tmp_path_factory):
    """A tiny model trained on a text full of markup and control characters."""
    folder = tmp_path_factory.mktemp("evil")
    corpus = folder / "corpus.txt"
    corpus.write_text(EVIL * 12, encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHARRNN_CACHE_DIR", str(folder / "cache"))
        done = invoke("train", corpus, "--out", folder / "run", *TINY_TRAIN_FLAGS)
    assert done.exit_code == 0, done.output
    text = folder / "evil.txt"
    text.write_text(EVIL, encoding="utf-8")
    return folder / "run", text


def page_json(page: Path) -> dict:
    html = page.read_text(encoding="utf-8")
    block = re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.S)
    assert block, "the page holds its data block"
    return json.loads(block.group(1))


# ---- the trace ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["lstm", "gru", "peephole-lstm"])
def test_trace_surprisal_adds_up_to_the_evaluated_loss(cell):
    torch.manual_seed(0)
    text = "to be or not to be, that is the question.\n" * 6
    vocab = Vocabulary.from_text(text)
    model = CharRNN(ModelConfig(len(vocab), cell=cell, layers=2, hidden=24, embedding=8)).eval()
    ids = vocab.encode(text)
    trace = trace_ids(model, vocab, ids)
    score = score_ids(model, ids)
    assert math.isnan(trace.surprisal[0]) and trace.scored == score.chars == len(text) - 1
    assert trace.bits_total * LN2 / trace.scored == pytest.approx(score.nats, rel=1e-5)
    assert "".join(trace.chars) == text
    assert set(trace.states) == ({"h", "c"} if cell != "gru" else {"h"})
    assert trace.states["h"].shape == (2, len(text), 24)
    # the top prediction and its probability are the model's own for that position
    with torch.no_grad():
        logits, state = model(ids[None].long())
    probs = torch.softmax(logits[0, 4], -1)
    assert trace.top_ids[5, 0] == int(probs.argmax())
    assert trace.top_probs[5, 0] == pytest.approx(float(probs.max()), rel=1e-4)
    # the recorded last-layer h is the fused model's output at every step
    torch.testing.assert_close(
        torch.from_numpy(trace.states["h"][-1, -1]), state[0][-1, 0] if cell != "gru" else state[-1, 0]
    )


def test_byte_level_trace_groups_bytes_into_characters():
    torch.manual_seed(1)
    vocab = Vocabulary.for_bytes()
    model = CharRNN(ModelConfig(256, layers=1, hidden=16, embedding=8)).eval()
    text = "naïve 東京 ok"
    ids = vocab.encode(text)
    trace = trace_ids(model, vocab, ids)
    assert "".join(trace.chars) == text and len(trace.chars) == len(text)
    assert trace.symbols_read == len(text.encode()) and trace.states["h"].shape[1] == len(text)
    assert trace.bits_total * LN2 / trace.scored == pytest.approx(score_ids(model, ids).nats, rel=1e-5)


# ---- features ---------------------------------------------------------------------------------------------
def test_text_features_follow_quotes_brackets_lines_and_indentation():
    text = 'a "b c" (d [e])\n  f\n'
    f = text_features(list(text))
    inside = "".join("1" if v else "0" for v in f["inside quotes"])
    assert inside == "00111100000000000000"  # the opening quote turns it on, the closing one off
    assert f["bracket depth"][text.index("e")] == 2 and f["inside brackets"][text.index("\n")] == 0
    assert list(f["position in line"][:3]) == [1, 2, 3] and f["position in line"][text.index("\n")] == 0
    assert f["indentation"][text.index("f")] == 2 and f["indentation"][text.index("a")] == 0
    assert f["start of line"].sum() == 2 and f["start of word"].sum() == 6


def test_feature_units_find_a_planted_unit_first():
    rng = np.random.default_rng(0)
    text = list('say "hello there" and "bye" now\n' * 5)
    quotes = text_features(text)["inside quotes"]
    acts = rng.normal(size=(2, len(text), 16)).astype(np.float32) * 0.1
    acts[1, :, 7] = -quotes + rng.normal(size=len(text)) * 0.01  # layer 1, unit 7 tracks quotes (negatively)
    found = feature_units({"h": acts}, text_features(text))
    first = next(m for m in found if m.feature == "inside quotes")
    assert (first.state, first.layer, first.unit) == ("h", 1, 7) and first.r < -0.99
    assert found[0].r == pytest.approx(first.r)  # the strongest match of all is listed first


# ---- the CLI: --show and --html ---------------------------------------------------------------------------
def test_show_prints_the_coloured_text_on_stderr_and_keeps_stdout_for_the_result(evil_run):
    run, text = evil_run
    result = invoke("evaluate", run, text, "--show", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["chars"] == len(EVIL) - 1  # stdout: the result only
    assert "<script>alert(1)</script>" in result.stderr and "surprisal" in result.stderr
    assert "\\x07" in result.stderr and "\x07" not in result.stderr  # control characters shown, not sent


def test_html_page_holds_text_surprisal_predictions_and_neurons(evil_run, tmp_path):
    run, text = evil_run
    page = tmp_path / "page.html"
    result = invoke("evaluate", run, text, "--html", page, "--json")
    assert result.exit_code == 0, result.output
    score = json.loads(result.stdout)
    data = page_json(page)
    assert "".join(data["chars"]) == "".join(visible(c) for c in EVIL)
    bits = [b for b in data["bits"] if b is not None]
    assert data["bits"][0] is None and len(bits) == score["chars"]
    assert sum(bits) == pytest.approx(score["bpc"] * score["chars"], rel=1e-4)  # same total as evaluate
    t = len(EVIL)
    k = data["topK"]
    assert len(data["topIds"]) == len(data["topProbs"]) == t * k and k == 5
    probs = np.array(data["topProbs"]).reshape(t, k)[1:]
    assert (np.diff(probs, axis=1) <= 1e-6).all() and (probs.sum(1) <= 1 + 1e-3).all()
    acts = np.frombuffer(base64.b64decode(data["activations"]), dtype=np.int8)
    assert [s["name"] for s in data["states"]] == ["h", "c"]
    assert acts.size == 2 * data["layers"] * data["hidden"] * t == 2 * 1 * 32 * t
    assert np.abs(acts).max() == 127  # each unit scaled to its own range
    assert data["units"] and all(-1 <= u["r"] <= 1 for u in data["units"])
    assert "wrote" in result.stderr


def test_html_escapes_any_text(evil_run, tmp_path):
    run, text = evil_run
    page = tmp_path / "evil.html"
    assert invoke("evaluate", run, text, "--html", page).exit_code == 0
    html = page.read_text(encoding="utf-8")
    block = html.split('id="data">', 1)[1].split("</script>", 1)[0]
    assert not set(block) & set("<>&")  # no markup can start inside the data ...
    assert "<script>alert(1)</script>" in "".join(page_json(page)["chars"])  # ... which still holds the text
    assert html.count("<script") == 2 and "<img" not in html  # the page's own two script elements only
    assert "\x07" not in html and "\x01" not in html
    assert script_safe_json({"a": "</script><!--\u2028"}).isascii()


def test_max_chars_caps_the_views_and_says_so(evil_run, tmp_path):
    run, text = evil_run
    page = tmp_path / "cap.html"
    result = invoke("evaluate", run, text, "--html", page, "--max-chars", "20", "--show")
    assert result.exit_code == 0, result.output
    data = page_json(page)
    assert len(data["chars"]) == 20 and f"first 20 of {len(EVIL)}" in data["summary"]["cap"]
    assert f"first 20 of {len(EVIL)}" in result.stderr


def test_html_bad_output_paths_are_refused_before_any_work(evil_run, tmp_path):
    run, text = evil_run
    missing = invoke("evaluate", run, text, "--html", tmp_path / "no" / "such" / "page.html")
    assert missing.exit_code == 1 and "does not exist" in missing.stderr and not missing.stdout
    folder = invoke("evaluate", run, text, "--html", tmp_path)
    assert folder.exit_code == 1 and "is a folder" in folder.stderr
    assert "Traceback" not in missing.output + folder.output


# ---- in a real browser -----------------------------------------------------------------------------------
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


def test_page_renders_in_headless_chromium_with_no_script_errors(evil_run, tmp_path):
    sync_api, chromium = browser_or_skip()
    run, text = evil_run
    page_file = tmp_path / "browser.html"
    assert invoke("evaluate", run, text, "--html", page_file).exit_code == 0
    events: list[tuple[str, str]] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 600})
            page.on("console", lambda m: events.append((m.type, m.text)))
            page.on("pageerror", lambda e: events.append(("pageerror", str(e))))
            page.on("dialog", lambda d: (events.append(("dialog", d.message)), d.dismiss()))
            page.on(
                "request",
                lambda r: events.append(("request", r.url)) if r.url != page_file.as_uri() else None,
            )
            page.goto(page_file.as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=15000)
            shown = page.inner_text("#text")
            assert "<script>alert(1)</script>" in shown and "</span></script><!--" in shown  # literally
            assert page.locator("script").count() == 2 and page.locator("img").count() == 0
            assert page.evaluate("document.title") == "charrnn: " + str(text)
            spans = page.locator("#text span")
            assert spans.count() == len(EVIL)
            colours = page.evaluate(
                "[...document.querySelectorAll('#text span')].map(s => s.style.background)"
            )
            assert colours[0] == "" and sum(c.startswith("rgb(") for c in colours) == len(EVIL) - 1
            assert len(set(colours[1:])) > 3  # a heat map, not one colour
            spans.nth(8).hover()  # the top-5 box for one character
            assert page.locator("#info table tr").count() == 5 and "bits" in page.inner_text("#info")
            page.locator("#units tbody tr").first.click()  # the strongest unit: the neuron view
            page.wait_for_timeout(100)
            assert page.locator("input[name=view][value=neuron]").is_checked()
            neuron = page.evaluate(
                "[...document.querySelectorAll('#text span')].map(s => s.style.background)"
            )
            assert neuron != colours
            shot = tmp_path / "page.png"
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    problems = [e for e in events if e[0] in ("error", "pageerror", "dialog", "request")]
    assert not problems, problems  # no script error, no alert ran, nothing fetched
