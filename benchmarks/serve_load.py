"""`charrnn serve` under load, vLLM's way, against charrnn's own sampler measured in the same run.

    python benchmarks/serve_load.py [--hidden 512] [--length 400]

A 2-layer LSTM with random weights (speed does not depend on what the weights learnt) and tiny-shakespeare's
65 characters is served by `python -m charrnn serve` in its own process. Streaming clients (threads with
httpx) send completions with a 256-character prompt at concurrency 1, 8, 32 and 64, then at a Poisson rate;
for each: time to first character (TTFT), inter-character latency (ITL: the gap between events divided by
the characters in the later one), end-to-end latency at p50/p99, requests/s and characters/s. The reference
is the engine as `charrnn sample` drives it, in this process: one stream and --num-samples 32. Last, 1,000
requests from 16 clients with one in ten leaving mid-stream: every other request must finish with a finish
reason, none may hang, the running rows must return to 0, and the server's RSS must grow by < 50 MB.
The clients share the machine's cores with the server, as they would on a one-box deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch
from common import machine, table

from charrnn.checkpoint import Checkpoint
from charrnn.engine import Engine
from charrnn.model import CharRNN, ModelConfig
from charrnn.sample import SamplingConfig, samples
from charrnn.vocab import Vocabulary

VOCAB = Vocabulary("\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
PROMPT = (
    "ROMEO:\nBut soft, what light through yonder window breaks? It is the east, and Juliet is the sun.\n" * 4
)[:256]


def checkpoint(folder: Path, hidden: int) -> Path:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=len(VOCAB), layers=2, hidden=hidden, embedding=64)
    model = CharRNN(config)
    path = folder / "bench" / "best.pt"
    path.parent.mkdir(parents=True)
    Checkpoint(config, VOCAB, {k: v.detach() for k, v in model.state_dict().items()}).save(path)
    return path


def reference(path: Path, length: int) -> tuple[float, float]:
    """The engine as `charrnn sample` drives it: chars/s for 1 stream and for 32 (steady state)."""
    from charrnn.checkpoint import load_checkpoint

    model = load_checkpoint(path).build_model("cpu")
    out = []
    for streams in (1, 32):
        engine = Engine(model, VOCAB)
        clock: list[float] = []

        def first_piece(piece: str, clock: list[float] = clock) -> None:
            if not clock:
                clock.append(time.perf_counter())

        config = SamplingConfig(length=length + 16, seed=0, num_samples=streams)
        for _ in samples(engine, PROMPT, config, stream_first=first_piece):
            pass
        out.append(streams * length / (time.perf_counter() - clock[0]))
    return out[0], out[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def one_request(client, url: str, length: int, leave_after: int | None = None) -> dict:
    """A streaming completion; times of its events. `leave_after`: close after that many text events."""
    body = {"prompt": PROMPT, "max_tokens": length, "stream": True, "temperature": 1.0}
    sent = time.perf_counter()
    first = last = finish = None
    gaps: list[float] = []
    chars = events = 0
    async with client.stream("POST", url + "/v1/completions", json=body, timeout=120) as answer:
        answer.raise_for_status()
        async for line in answer.aiter_lines():
            if not line.startswith("data: {"):
                continue
            choice = json.loads(line[6:])["choices"][0]
            now = time.perf_counter()
            if choice["text"]:
                if first is None:
                    first = now
                elif last is not None:
                    gaps.append((now - last) / len(choice["text"]))
                last = now
                chars += len(choice["text"])
                events += 1
            if choice["finish_reason"]:
                finish = choice["finish_reason"]
            if leave_after is not None and events >= leave_after:
                break
    end = time.perf_counter()
    return {"ttft": (first or end) - sent, "gaps": gaps, "e2e": end - sent, "chars": chars, "finish": finish}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _client():
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    return httpx.AsyncClient(limits=limits, timeout=120)


async def load_run(url: str, concurrency: int, requests: int, length: int) -> dict:
    gate = asyncio.Semaphore(concurrency)
    async with _client() as client:

        async def one(_):
            async with gate:
                return await one_request(client, url, length)

        start = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(requests)))
    return summarise(results, time.perf_counter() - start)


async def poisson_run(url: str, rate: float, requests: int, length: int) -> dict:
    rng = random.Random(0)
    async with _client() as client:
        start = time.perf_counter()
        tasks = []
        for _ in range(requests):
            tasks.append(asyncio.create_task(one_request(client, url, length)))
            await asyncio.sleep(rng.expovariate(rate))
        results = await asyncio.gather(*tasks)
    return summarise(results, time.perf_counter() - start)


async def churn_run(url: str) -> tuple[list[dict], float]:
    """1,000 requests from 16 clients, one in ten leaving after its second event."""
    gate = asyncio.Semaphore(16)
    async with _client() as client:

        async def one(i):
            async with gate:
                return await one_request(client, url, 40, 2 if i % 10 == 0 else None)

        start = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(1000)))
    return results, time.perf_counter() - start


def summarise(results: list[dict], elapsed: float) -> dict:
    ttft = [r["ttft"] for r in results]
    gaps = [g for r in results for g in r["gaps"]]
    e2e = [r["e2e"] for r in results]
    chars = sum(r["chars"] for r in results)
    return {
        "ttft50": percentile(ttft, 0.5) * 1e3,
        "ttft99": percentile(ttft, 0.99) * 1e3,
        "itl50": percentile(gaps, 0.5) * 1e3,
        "itl99": percentile(gaps, 0.99) * 1e3,
        "e2e50": percentile(e2e, 0.5),
        "e2e99": percentile(e2e, 0.99),
        "rps": len(results) / elapsed,
        "cps": chars / elapsed,
        # a client's rate while it streams (after its first character), on average
        "steady": sum(r["chars"] / max(1e-9, r["e2e"] - r["ttft"]) for r in results) / len(results),
    }


def running_rows(url: str) -> float:
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("charrnn_rows_running{"):
            return float(line.rsplit(" ", 1)[1])
    return -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--length", type=int, default=400, help="characters per completion")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--quick", action="store_true", help="only the concurrency sweep")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="charrnn-serve-"))
    path = checkpoint(folder, args.hidden)
    one, thirty_two = reference(path, args.length)
    print(
        f"reference (engine, this process): 1 stream {one:,.0f} chars/s, 32 streams {thirty_two:,.0f}",
        flush=True,
    )

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "charrnn",
            "serve",
            str(path.parent),
            "--port",
            str(port),
            "-q",
            "--device",
            "cpu",
        ]
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit("the server did not start")
            time.sleep(0.2)
        asyncio.run(load_run(url, 1, 1, 50))  # warm
        rss_start = rss_mb(server.pid)
        rows = []
        figures = {}
        for concurrency in args.concurrency:
            requests = max(4, concurrency * 2)
            s = asyncio.run(load_run(url, concurrency, requests, args.length))
            figures[concurrency] = s
            rows.append(_row(f"concurrency {concurrency}", s))
            print(rows[-1], flush=True)
        again = reference(path, args.length)  # the host's speed may drift: measured again, server idle
        print(f"reference again: 1 stream {again[0]:,.0f} chars/s, 32 streams {again[1]:,.0f}", flush=True)
        one, thirty_two = (one + again[0]) / 2, (thirty_two + again[1]) / 2
        if args.quick:
            print(
                table(
                    [
                        "load",
                        "TTFT p50",
                        "TTFT p99",
                        "ITL p50",
                        "ITL p99",
                        "e2e p50",
                        "e2e p99",
                        "req/s",
                        "chars/s",
                    ],
                    rows,
                )
            )
            return
        rate = 0.8 * figures[max(figures)]["rps"]
        s = asyncio.run(poisson_run(url, rate, 40, args.length))
        rows.append(_row(f"Poisson {rate:.1f} req/s", s))
        print(rows[-1], flush=True)

        outcomes, churn = asyncio.run(churn_run(url))
        finished = sum(1 for i, r in enumerate(outcomes) if i % 10 and r["finish"] in ("length", "stop"))
        deadline = time.monotonic() + 10
        while running_rows(url) != 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        rows_left = running_rows(url)
        rss_end = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=20)

    print()
    print(machine())
    print(f"2x{args.hidden} LSTM, random weights, 65 symbols, 256-char prompt, {args.length} chars each")
    print(
        table(
            [
                "load",
                "TTFT p50 ms",
                "TTFT p99 ms",
                "ITL p50 ms",
                "ITL p99 ms",
                "e2e p50 s",
                "e2e p99 s",
                "req/s",
                "chars/s",
            ],
            rows,
        )
    )
    print(
        f"reference (mean of before and after): 1 stream {one:,.0f} chars/s; 32 streams {thirty_two:,.0f}\n"
        f"one client / 1 stream: {figures[1]['cps'] / one:.2f}x; 32 clients / 32 streams: "
        f"{figures[32]['cps'] / thirty_two:.2f}x (steady state, after the first character: "
        f"{figures[1]['steady'] / one:.2f}x and {32 * figures[32]['steady'] / thirty_two:.2f}x)\n"
        f"churn: 1,000 requests in {churn:.1f} s, {finished} of 900 staying clients finished with a reason, "
        f"rows running after: {rows_left:.0f}, server RSS {rss_start:.0f} -> {rss_end:.0f} MB "
        f"({rss_end - rss_start:+.0f} MB)"
    )


def _row(label: str, s: dict) -> list:
    return [
        label,
        f"{s['ttft50']:.1f}",
        f"{s['ttft99']:.1f}",
        f"{s['itl50']:.2f}",
        f"{s['itl99']:.2f}",
        f"{s['e2e50']:.2f}",
        f"{s['e2e99']:.2f}",
        f"{s['rps']:.2f}",
        f"{s['cps']:,.0f}",
    ]


if __name__ == "__main__":
    main()
