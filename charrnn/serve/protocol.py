"""What a client may ask, checked and bounded before anything runs, and OpenAI-shaped answers.

A completions request follows OpenAI's legacy `/v1/completions`: model, prompt (a string or a list),
max_tokens (characters; bytes for byte-level models), temperature, top_p, n, stream,
stream_options.include_usage, stop (a string or up to MAX_STOPS), seed, echo, logprobs (up to
MAX_LOGPROBS alternatives), user (ignored); extensions top_k and drop_unknown. Every problem is an
ApiError: status, message, type, param, code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from charrnn.engine import Sampling, check_prime
from charrnn.errors import CharrnnError

MAX_STOPS = 4
MAX_LOGPROBS = 5


@dataclass
class Limits:
    """What one request may ask for (the server's flags)."""

    max_tokens: int = 4096
    max_n: int = 16
    max_prompts: int = 16
    max_prompt_chars: int = 100_000
    max_body_bytes: int = 2_000_000
    max_score_chars: int = 1_000_000
    max_surprisal_chars: int = 20_000


class ApiError(Exception):
    """A request the server refuses, as OpenAI shapes it: {"error": {message, type, param, code}}."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def _number(body: dict, name: str, default: float | None, low: float, high: float) -> float | None:
    value = body.get(name, default)
    if value is None:
        return default
    try:
        finite = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    except OverflowError:  # an integer of hundreds of digits
        finite = False
    if not finite:
        raise bad(f"{name} must be a finite number", name)
    if not low <= value <= high:
        raise bad(f"{name} must be between {low:g} and {high:g}, not {value:g}", name)
    return float(value)


def _integer(
    body: dict, name: str, default: int | None, low: int, high: int, code: str | None = None
) -> int | None:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"{name} must be a whole number", name)
    if not low <= value <= high:
        raise bad(f"{name} must be from {low:,} to {high:,}, not {value:,}", name, code)
    return value


def _flag(body: dict, name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad(f"{name} must be true or false", name)
    return value


@dataclass
class Completion:
    """A checked completions request."""

    model: str
    prompts: list[str]
    max_tokens: int
    sampling: Sampling
    n: int
    stream: bool
    include_usage: bool
    stops: tuple[str, ...]
    seed: int | None
    echo: bool
    logprobs: int


def completion(body: Any, models: dict, limits: Limits, default_model: str | None) -> Completion:
    """Check a /v1/completions body; the model is looked up in `models` (name -> api.Model)."""
    if not isinstance(body, dict):
        raise bad("the body must be a JSON object")
    name = body.get("model", default_model)
    if name is None:
        raise bad("model is required: name one of GET /v1/models", "model")
    if not isinstance(name, str) or name not in models:
        raise ApiError(
            404, f"no model named {name!r}; GET /v1/models lists them", param="model", code="model_not_found"
        )
    prompt = body.get("prompt", "")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise bad("prompt must be a string or a non-empty list of strings", "prompt")
    if len(prompts) > limits.max_prompts:
        raise bad(f"at most {limits.max_prompts} prompts per request, not {len(prompts)}", "prompt")
    too_long = max(len(p) for p in prompts)
    if too_long > limits.max_prompt_chars:
        raise ApiError(
            413,
            f"a prompt of {too_long:,} characters is over the limit of {limits.max_prompt_chars:,}",
            param="prompt",
        )
    vocab = models[name].vocab
    drop = _flag(body, "drop_unknown")
    try:
        prompts = [check_prime(vocab, p, drop) for p in prompts]
    except CharrnnError as e:
        message = e.render(lambda setting: "drop_unknown: true").replace("the prime", "the prompt")
        raise bad(message, "prompt", "unknown_characters") from None
    max_tokens = _integer(body, "max_tokens", 16, 1, limits.max_tokens, "max_tokens_exceeded")
    temperature = _number(body, "temperature", 1.0, 0.0, 100.0)
    top_p = _number(body, "top_p", None, 0.0, 1.0)
    if top_p == 0.0:
        raise bad("top_p must be above 0", "top_p")
    top_k = _integer(body, "top_k", None, 1, 1 << 20)
    n = _integer(body, "n", 1, 1, limits.max_n)
    stop = body.get("stop")
    stops = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise bad("stop must be a non-empty string or a list of them", "stop")
    if len(stops) > MAX_STOPS:
        raise bad(f"at most {MAX_STOPS} stop strings, not {len(stops)}", "stop")
    if any(len(s) > 200 for s in stops):
        raise bad("a stop string may have at most 200 characters", "stop")
    unwritable = [s for s in stops if not vocab.is_bytes and vocab.unknown_chars(s)]
    if unwritable:
        raise bad(f"stop {unwritable[0]!r} has characters the model never writes", "stop")
    seed = _integer(body, "seed", None, -(1 << 63), (1 << 64) - 1)
    logprobs = _integer(body, "logprobs", 0, 0, MAX_LOGPROBS) or 0
    stream = _flag(body, "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise bad("stream_options must be an object", "stream_options")
    return Completion(
        model=name,
        prompts=prompts,
        max_tokens=max_tokens,
        sampling=Sampling(temperature, top_k, top_p),
        n=n,
        stream=stream,
        include_usage=_flag(options, "include_usage"),
        stops=tuple(stops),
        seed=seed,
        echo=_flag(body, "echo"),
        logprobs=logprobs,
    )


def token_text(vocab, symbol: int) -> str:
    """How a symbol shows as a token: the character, or a byte-level model's byte as 'bytes:\\xNN'."""
    if vocab.is_bytes:
        return chr(symbol) if 32 <= symbol < 127 else f"bytes:\\x{symbol:02x}"
    return vocab.chars[symbol]


def logprobs_block(vocab, trace: list, symbols: int, offset: int) -> dict:
    """OpenAI's legacy logprobs object for the first `symbols` generated symbols of a trace."""
    tokens, token_logprobs, top, offsets = [], [], [], []
    position = offset
    for symbol, logprob, alternatives in trace[:symbols]:
        text = token_text(vocab, symbol)
        tokens.append(text)
        token_logprobs.append(logprob)
        top.append({token_text(vocab, s): lp for s, lp in alternatives})
        offsets.append(position)
        position += 1 if vocab.is_bytes else len(text)
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top, "text_offset": offsets}
