"""The exported web page (`charrnn export --format html`) in headless Chromium: size, speed, first character.

    python benchmarks/web_speed.py

For an LSTM at 2x128 and 2x512 with tiny-shakespeare's 65 characters (weights as initialised: the
arithmetic per character does not depend on what the weights learned): the page's size against the .pt
checkpoint's, characters per second generated (temperature 0.8, median of 3 runs), and the time from the
start of navigation to the first generated character of a `window.charrnn.generate` call made as soon as
the page is ready (weights decoded). Needs playwright and Debian's chromium; run it alone.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import machine, table

from charrnn.checkpoint import Checkpoint
from charrnn.export.web_page import write_page
from charrnn.model import CharRNN, ModelConfig
from charrnn.vocab import Vocabulary

LENGTHS = {128: 3000, 512: 400}
SPEED = """async (n) => {
  const t = performance.now();
  const text = await window.charrnn.generate({prime: "ROMEO:", length: n, temperature: 0.8, seed: 1});
  return [text.length, (performance.now() - t) / 1000];
}"""
FIRST = """async () => {
  let first = null;
  await window.charrnn.generate({prime: "ROMEO:", length: 1, temperature: 0.8, seed: 1,
                                 onText: () => { if (first === null) first = performance.now(); }});
  return [window.charrnn.readyAt, first];
}"""


def main() -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("needs Debian's chromium (apt-get install chromium)")
    vocab = Vocabulary.from_text("\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        version = browser.version
        for hidden in (128, 512):
            torch.manual_seed(0)
            config = ModelConfig(vocab_size=len(vocab), hidden=hidden, layers=2, embedding=64)
            ckpt = Checkpoint(config, vocab, CharRNN(config).state_dict())
            pt, html = Path(tmp) / f"m{hidden}.pt", Path(tmp) / f"m{hidden}.html"
            ckpt.save(pt)
            write_page(ckpt, html)
            speeds, firsts = [], []
            for _ in range(3):
                page = browser.new_page()
                page.goto(html.as_uri())
                deadline = time.monotonic() + 60
                while not page.evaluate("window.charrnn !== undefined"):  # (CSP: no eval-based waits)
                    if time.monotonic() > deadline:
                        sys.exit("the page did not start within 60 s")
                    time.sleep(0.05)
                ready, first = page.evaluate(FIRST)
                firsts.append((ready, first))
                n, seconds = page.evaluate(SPEED, LENGTHS[hidden])
                speeds.append(n / seconds)
                page.close()
            ready = statistics.median(r for r, _ in firsts)
            first = statistics.median(f for _, f in firsts)
            rows.append(
                [
                    f"lstm 2x{hidden}",
                    f"{pt.stat().st_size / 1e6:.2f} MB",
                    f"{html.stat().st_size / 1e6:.2f} MB",
                    f"{statistics.median(speeds):,.0f}",
                    f"{ready:,.0f} ms",
                    f"{first:,.0f} ms",
                ]
            )
        browser.close()
    print(f"machine: {machine()}; Chromium {version}")
    headers = ["model", "checkpoint (.pt)", "page (.html)", "chars/s", "page ready", "first character"]
    print(table(headers, rows))


if __name__ == "__main__":
    main()
