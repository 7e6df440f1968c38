"""The HTTP app: OpenAI's completions (SSE streaming), models, health, Prometheus metrics, torch-rnn-server's
/generate, /v1/score, and the playground page.

Starlette rather than FastAPI: the few routes check their bodies themselves (protocol.py, with limits on
everything), so pydantic and the schema machinery would add dependencies and no safety. Every refusal is an
OpenAI-shaped JSON error; an unforeseen fault is logged on stderr and answered 500 without a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from charrnn.api import Model
from charrnn.engine import random_seed, row_key
from charrnn.serve import protocol
from charrnn.serve.protocol import ApiError, Limits, bad
from charrnn.serve.worker import Busy, Choice, Driver, Job, Worker

PLAYGROUND = Path(__file__).with_name("playground.html")
OPEN_PATHS = ("/health", "/")  # no key needed: the page holds no data, its requests send the key


@dataclass
class ServeOptions:
    api_key: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    max_batch: int = 64
    max_queue: int = 256
    limits: Limits = field(default_factory=Limits)


class Metrics:
    """The server's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.running = Gauge("charrnn_rows_running", "Completions being generated", ["model"], registry=r)
        self.waiting = Gauge(
            "charrnn_requests_waiting", "Requests waiting for room in the batch", ["model"], registry=r
        )
        self.chars = Counter("charrnn_generated_characters", "Characters generated", ["model"], registry=r)
        self.ttft = Histogram(
            "charrnn_time_to_first_character_seconds",
            "From a request's arrival to its first character",
            ["model"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.itl = Histogram(
            "charrnn_inter_character_latency_seconds",
            "Time between a completion's characters",
            ["model"],
            buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
            registry=r,
        )
        self.disconnects = Counter(
            "charrnn_disconnects", "Requests whose client went away", ["model"], registry=r
        )
        self.requests = Counter(
            "charrnn_http_requests", "HTTP requests answered", ["path", "status"], registry=r
        )

    def for_model(self, name: str) -> ModelMetrics:
        return ModelMetrics(self, name)


class ModelMetrics:
    """The metrics of one model, as its worker reports them."""

    def __init__(self, metrics: Metrics, name: str):
        self.m, self.name = metrics, name

    def update(self, worker: Worker) -> None:
        self.m.running.labels(self.name).set(worker.running)
        self.m.waiting.labels(self.name).set(worker.waiting)

    def first_text(self, seconds: float) -> None:
        self.m.ttft.labels(self.name).observe(seconds)

    def gap(self, seconds: float) -> None:
        self.m.itl.labels(self.name).observe(seconds)

    def generated(self, count: int) -> None:
        self.m.chars.labels(self.name).inc(count)

    def disconnected(self) -> None:
        self.m.disconnects.labels(self.name).inc()


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


class Guard:
    """ASGI middleware: the API key, the answer to every ApiError, and no traceback ever reaching a client."""

    def __init__(self, app, api_key: str | None, metrics: Metrics):
        self.app, self.api_key, self.metrics = app, api_key, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        status = {}

        async def record(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            if self.api_key and path not in OPEN_PATHS and not self._authorised(scope):
                refusal = ApiError(
                    401, "a valid API key is required: Authorization: Bearer KEY", code="invalid_api_key"
                )
                await error_response(refusal)(scope, receive, record)
                return
            await self.app(scope, receive, record)
        finally:
            known = path if path in KNOWN_PATHS else "other"
            self.metrics.requests.labels(known, str(status.get("code", 0))).inc()

    def _authorised(self, scope) -> bool:
        expected = self.api_key.encode("utf-8")
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), expected)
        return False


KNOWN_PATHS = ("/", "/health", "/metrics", "/v1/models", "/v1/completions", "/generate", "/v1/score")


async def read_json(request: Request, limit: int):
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the body is over the limit of {limit:,} bytes")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise ApiError(413, f"the body is over the limit of {limit:,} bytes")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise bad("the body is not valid JSON") from None
    except RecursionError:
        raise bad("the body's JSON is nested too deeply") from None


def create_app(
    models: dict[str, Model], options: ServeOptions | None = None, drive: bool = True
) -> Starlette:
    """The app serving `models` (name -> api.Model). `drive`: its workers are stepped by a thread of its own
    that starts and stops with it; otherwise the caller runs `app.app.state.driver` (`charrnn serve` does,
    on the main thread) and the app only stops it."""
    options = options or ServeOptions()
    limits = options.limits
    metrics = Metrics()
    workers = {
        name: Worker(name, model, options.max_batch, options.max_queue, metrics.for_model(name))
        for name, model in models.items()
    }
    default_model = next(iter(models)) if len(models) == 1 else None
    scoring = asyncio.Semaphore(1)  # one text scored at a time: it competes with generation for the CPU
    page = PLAYGROUND.read_text(encoding="utf-8") if PLAYGROUND.exists() else "<!doctype html><p>charrnn</p>"

    def worker_for(name: str) -> Worker:
        worker = workers[name]
        if worker.failed is not None or not worker.alive:
            raise ApiError(
                503, f"the model {name!r} is not available (its worker stopped)", type="server_error"
            )
        return worker

    def new_job(loop, prompts: list[str], n: int, sampling, length: int, stops, seed, alternatives) -> Job:
        seed = seed if seed is not None else random_seed()
        choices = [
            Choice(p * n + j, prompt, row_key(seed, j)) for p, prompt in enumerate(prompts) for j in range(n)
        ]
        return Job(choices, sampling, length, tuple(stops), alternatives, loop)

    def submit(worker: Worker, job: Job) -> None:
        try:
            worker.submit(job)
        except Busy:
            raise ApiError(
                429,
                f"the server is busy ({worker.waiting} requests waiting); retry shortly",
                type="rate_limit_error",
                code="queue_full",
                headers={"Retry-After": "1"},
            ) from None

    async def collect(request: Request, worker: Worker, job: Job) -> dict[int, dict]:
        """Wait for every choice of a job; the client going away cancels it."""
        results = {c.index: {"text": [], "finish": None, "written": 0, "trace": None} for c in job.choices}
        remaining = len(results)
        checked = time.monotonic()
        try:
            while remaining:
                if time.monotonic() - checked > 0.25:  # however fast the text comes, look every 0.25 s
                    checked = time.monotonic()
                    if await request.is_disconnected():
                        worker.cancel(job)
                        raise ApiError(499, "the client went away")
                try:
                    event = await asyncio.wait_for(job.events.get(), timeout=0.25)
                except asyncio.TimeoutError:
                    continue
                if event[0] == "error":
                    raise ApiError(503, event[1], type="server_error")
                result = results[event[1]]
                if event[0] == "text":
                    result["text"].append(event[2])
                else:
                    result["finish"], result["written"], result["trace"] = event[2], event[3], event[4]
                    remaining -= 1
        finally:
            if remaining:
                worker.cancel(job)
        return results

    def usage(model: Model, prompts: list[str], written: int) -> dict:
        prompt_tokens = sum(len(p.encode("utf-8")) if model.vocab.is_bytes else len(p) for p in prompts)
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": written,
            "total_tokens": prompt_tokens + written,
        }

    async def completions(request: Request) -> Response:
        body = await read_json(request, limits.max_body_bytes)
        req = protocol.completion(body, models, limits, default_model)
        worker = worker_for(req.model)
        model = models[req.model]
        loop = asyncio.get_running_loop()
        job = new_job(
            loop, req.prompts, req.n, req.sampling, req.max_tokens, req.stops, req.seed, req.logprobs
        )
        submit(worker, job)
        ident, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        head = {"id": ident, "object": "text_completion", "created": created, "model": req.model}
        prompt_of = {c.index: c.prompt for c in job.choices}
        if req.stream:
            return StreamingResponse(
                stream(worker, job, req, model, head, prompt_of),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        results = await collect(request, worker, job)
        choices = []
        for index in sorted(results):
            r = results[index]
            text = "".join(r["text"])
            block = None
            if req.logprobs:
                generated = len(text.encode("utf-8")) if model.vocab.is_bytes else len(text)
                offset = len(prompt_of[index]) if req.echo else 0
                block = protocol.logprobs_block(model.vocab, r["trace"] or [], generated, offset)
            shown = (prompt_of[index] if req.echo else "") + text
            choices.append({"text": shown, "index": index, "logprobs": block, "finish_reason": r["finish"]})
        written = sum(r["written"] for r in results.values())
        return JSONResponse({**head, "choices": choices, "usage": usage(model, req.prompts, written)})

    async def stream(worker: Worker, job: Job, req, model: Model, head: dict, prompt_of: dict):
        def event(payload: dict) -> str:
            return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

        sent = dict.fromkeys(prompt_of, 0)  # characters of each choice's text sent so far (text_offset)

        def chunk(index: int, text: str, finish: str | None = None, entries: list | None = None) -> str:
            block = None
            if req.logprobs and text:
                block = protocol.logprobs_block(model.vocab, entries or [], len(entries or []), sent[index])
            sent[index] += len(text)
            choice = {"text": text, "index": index, "logprobs": block, "finish_reason": finish}
            return event({**head, "choices": [choice]})

        remaining, written = len(job.choices), 0
        try:
            if req.echo:
                for index, prompt in prompt_of.items():
                    yield chunk(index, prompt)
            while remaining:
                # everything that has arrived goes out in one write, each choice's text joined
                batch = [await job.events.get()]
                while not job.events.empty():
                    batch.append(job.events.get_nowait())
                out, texts, traces, failed = [], {}, {}, False
                for item in batch:
                    if item[0] == "error":
                        failed = True
                        out.append(event(ApiError(503, item[1], type="server_error").body()))
                        break
                    if item[0] == "text":
                        texts[item[1]] = texts.get(item[1], "") + item[2]
                        traces.setdefault(item[1], []).extend(item[3] or [])
                        continue
                    if item[1] in texts:
                        out.append(chunk(item[1], texts.pop(item[1]), None, traces.pop(item[1], None)))
                    remaining -= 1
                    written += item[3]
                    out.append(chunk(item[1], "", item[2]))
                out[:0] = [chunk(index, text, None, traces.get(index)) for index, text in texts.items()]
                yield "".join(out)
                if failed:
                    break
            if req.include_usage:
                yield event({**head, "choices": [], "usage": usage(model, req.prompts, written)})
            yield "data: [DONE]\n\n"
        finally:
            if remaining:
                worker.cancel(job)

    async def generate(request: Request) -> Response:
        """torch-rnn-server's shape: start_text, n, length, temperature -> start_text, completions."""
        body = await read_json(request, limits.max_body_bytes)
        if not isinstance(body, dict):
            raise bad("the body must be a JSON object")
        start = body.get("start_text", "")
        translated = {
            "model": body.get("model", default_model),
            "prompt": start,
            "n": body.get("n", 1),
            "max_tokens": body.get("length", 48),
            "temperature": body.get("temperature", 1.0),
            "seed": body.get("seed"),
        }
        req = protocol.completion(translated, models, limits, default_model)
        worker = worker_for(req.model)
        job = new_job(
            asyncio.get_running_loop(), req.prompts, req.n, req.sampling, req.max_tokens, (), req.seed, 0
        )
        submit(worker, job)
        results = await collect(request, worker, job)
        texts = ["".join(results[i]["text"]) for i in sorted(results)]
        return JSONResponse({"start_text": start, "completions": texts})

    async def score(request: Request) -> Response:
        body = await read_json(request, limits.max_body_bytes)
        if not isinstance(body, dict):
            raise bad("the body must be a JSON object")
        name = body.get("model", default_model)
        if not isinstance(name, str) or name not in models:
            raise ApiError(404, f"no model named {name!r}; GET /v1/models lists them", param="model")
        text = body.get("text")
        if not isinstance(text, str) or len(text) < 2:
            raise bad("text must be a string of at least 2 characters", "text")
        if len(text) > limits.max_score_chars:
            raise ApiError(
                413, f"text is over the limit of {limits.max_score_chars:,} characters", param="text"
            )
        want = body.get("surprisal", False)
        if not isinstance(want, bool):
            raise bad("surprisal must be true or false", "surprisal")
        if want and len(text) > limits.max_surprisal_chars:
            raise ApiError(
                413, f"surprisal is given for up to {limits.max_surprisal_chars:,} characters", param="text"
            )
        model = models[name]
        from charrnn.errors import CharrnnError

        if scoring.locked():
            raise ApiError(
                429,
                "the server is scoring other texts; retry shortly",
                type="rate_limit_error",
                code="busy",
                headers={"Retry-After": "1"},
            )
        try:
            async with scoring:
                figures = await asyncio.to_thread(model.score, text)
                extra = {"surprisal": await asyncio.to_thread(surprisals, model, text)} if want else {}
        except CharrnnError as e:
            raise bad(str(e), "text") from None
        return JSONResponse({"model": name, **figures.to_dict(), **extra})

    async def list_models(request: Request) -> Response:
        data = [
            {
                "id": name,
                "object": "model",
                "created": int(m.checkpoint.path.stat().st_mtime) if m.checkpoint.path else 0,
                "owned_by": "charrnn",
                "charrnn": {
                    "cell": m.network.config.cell,
                    "layers": m.network.config.layers,
                    "hidden": m.network.config.hidden,
                    "vocab_size": len(m.vocab),
                    "level": m.vocab.level,
                },
            }
            for name, m in models.items()
        ]
        return JSONResponse({"object": "list", "data": data})

    async def health(request: Request) -> Response:
        down = [name for name, w in workers.items() if w.failed is not None or not w.alive]
        body = {"status": "ok" if not down else "degraded", "models": list(models), "down": down}
        return JSONResponse(body, status_code=503 if down else 200)

    async def metrics_page(request: Request) -> Response:
        for name, worker in workers.items():
            metrics.for_model(name).update(worker)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def playground(request: Request) -> Response:
        nonce = secrets.token_urlsafe(16)
        csp = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
        headers = {
            "Content-Security-Policy": csp,
            "Cache-Control": "no-store",  # a fresh nonce per response
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        }
        return HTMLResponse(page.replace("{{nonce}}", nonce), headers=headers)

    driver = Driver(list(workers.values()))

    def startup() -> None:
        if drive:
            driver.start()

    def shutdown() -> None:
        driver.stop()

    routes = [
        Route("/", playground, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics_page, methods=["GET"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/generate", generate, methods=["POST"]),
        Route("/v1/score", score, methods=["POST"]),
    ]

    async def not_found(request: Request, exc) -> Response:
        status = getattr(exc, "status_code", 404)
        message = "no such endpoint" if status == 404 else "method not allowed here"
        return error_response(ApiError(status, f"{message}: {request.method} {request.url.path}"))

    async def refused(request: Request, exc: ApiError) -> Response:
        return error_response(exc)

    async def fault(request: Request, exc: Exception) -> Response:
        """Unforeseen: uvicorn logs the traceback (Starlette raises it on), the client gets a plain 500."""
        return error_response(
            ApiError(500, "the server failed on this request; it is logged", type="server_error")
        )

    @contextlib.asynccontextmanager
    async def lifespan(app):
        startup()
        try:
            yield
        finally:
            shutdown()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: not_found, ApiError: refused, Exception: fault},
    )
    app.state.workers = workers
    app.state.driver = driver
    app.state.metrics = metrics
    guarded = Guard(app, options.api_key, metrics)
    guarded.state = app.state  # the workers and the driver, whoever runs them
    if not options.cors_origins:
        return guarded
    # outside the key check: preflights carry no key, and a 401 needs the CORS headers to be readable
    cors = CORSMiddleware(
        guarded,
        allow_origins=options.cors_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type"],
    )
    cors.state = app.state
    return cors


def surprisals(model: Model, text: str) -> list[float]:
    """Each character's surprisal (nats) after the ones before it; the first has none (reported 0)."""
    import torch

    vocab = model.vocab
    if vocab.unknown_chars(text):
        raise bad("text has characters the model never saw; surprisal needs every character known", "text")
    ids = vocab.encode(text).long()
    network = model.network
    out = [0.0]
    with torch.inference_mode():
        state = network.init_state(1, model.device)
        for at in range(0, ids.numel() - 1, 1024):
            piece = ids[at : min(at + 1025, ids.numel())].to(model.device)
            logits, state_after = network(piece[None, :-1], state)
            logp = torch.log_softmax(logits[0].float(), dim=-1)
            out.extend((-logp.gather(1, piece[1:, None]).squeeze(1)).tolist())
            state = state_after
    return out
