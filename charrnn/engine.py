"""The generation engine: every text charrnn writes (`charrnn sample`, the Python API, the live samples of
training, the HTTP server) comes out of this one loop.

A *row* is one text being written. It owns its start (the state after its prime), its sampling settings,
its random stream, and what it does with the symbols it gets (a `TextRow` stops at a stop string or its
length; item mode's rows cut items at a delimiter). The engine owns the model, prepared once for one-step
generation (a Stepper), and the states of all its rows, stepped together as one batch. Rows join and leave
between chunks of up to `chunk` steps, so a server can add a request's rows while others are half-written.

After each chunk every row is handed its new symbols and their log-probabilities and answers GO, DONE
(it leaves the batch) or RESTART (its state goes back to its start: item mode abandoning an overlong
item). A row that finishes inside a chunk has stepped a few symbols too many; they are dropped.

Random numbers are counter-based: the draw of a row at its t-th step is a hash of (the row's key, t)
(splitmix64), so a row's text depends only on its own seed, prime and settings, never on which rows share
its batch; `row_key(seed, i)` gives the i-th sample of a seeded run its own stream.

The next symbol is drawn from softmax(logits / temperature), optionally restricted to the top-k symbols
and/or the smallest set whose probability reaches top-p, by inverting the cumulative distribution at the
row's uniform draw; temperature 0 takes the most likely symbol. The log-probability recorded is the model's
own (temperature 1, no filter), so it matches what `evaluate` scores for the same symbols.

Shapes: N active rows, L layers, H hidden, V vocabulary, K steps in a chunk.
    state       per layer (N, H) h, or (h, c) for LSTMs (Stepper.split_state)
    current     (N,) the next input of every row
    ids, lps    (K, N) the symbols drawn in a chunk and their natural-log probabilities
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from charrnn.errors import BadInput, BadSetting, setting_ref
from charrnn.evaluate import chunk_length
from charrnn.model import CharRNN
from charrnn.numpy_step import NumpyStepper
from charrnn.numpy_step import choose as numpy_choose
from charrnn.quantize import make_stepper
from charrnn.vocab import Vocabulary

CHUNK = 16  # steps between the rows' bookkeeping: the streaming latency, and the Python cost amortised
MAX_STOP_CHARS = 200  # the longest stop string (or delimiter) a row accepts
MAX_STOPS = 32  # stop strings per row

GO, DONE, RESTART = "go", "done", "restart"

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


# ---- random numbers ------------------------------------------------------------------------------------
def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, element-wise on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


def row_key(seed: int, index: int = 0) -> int:
    """The random stream of sample `index` of a run seeded with `seed` (any int; reduced modulo 2**64)."""
    with np.errstate(over="ignore"):
        z = _mix64(np.array([seed % (1 << 64)], dtype=np.uint64)) + np.uint64(index % (1 << 64)) * _GOLDEN
    return int(_mix64(z)[0])


def random_seed() -> int:
    """A seed from the operating system, for runs not given one."""
    return int.from_bytes(os.urandom(8), "little") >> 1


def uniforms(keys: np.ndarray, draws: np.ndarray, steps: int) -> np.ndarray:
    """(steps, N) float64 in [0, 1): the draws numbered draws .. draws + steps - 1 of each row's stream."""
    counters = draws[None, :] + np.arange(steps, dtype=np.uint64)[:, None]
    with np.errstate(over="ignore"):
        z = _mix64(keys[None, :] + (counters + np.uint64(1)) * _GOLDEN)
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


# ---- choosing the next symbol --------------------------------------------------------------------------
@dataclass(frozen=True)
class Sampling:
    """How a row draws its next symbol."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        t = self.temperature
        if not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            raise BadSetting(
                f"{setting_ref('temperature')} must be a finite number >= 0, not {t!r}", "temperature"
            )
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise BadSetting(
                f"{setting_ref('top_k')} must be a whole number >= 1, not {self.top_k!r}", "top_k"
            )
        p = self.top_p
        if p is not None and (not isinstance(p, (int, float)) or not 0 < p <= 1):
            raise BadSetting(f"{setting_ref('top_p')} must be above 0 and at most 1, not {p!r}", "top_p")


def filter_logits(
    logits: torch.Tensor, top_k: int | torch.Tensor | None = None, top_p: float | torch.Tensor | None = None
) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the top-p nucleus. `top_k` and `top_p` are
    one value for all rows, or one per row ((N,) tensors; k = V and p = 1 keep everything)."""
    vocab = logits.size(-1)
    if isinstance(top_k, int) and top_k < vocab:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    elif isinstance(top_k, torch.Tensor):
        ordered = torch.sort(logits, dim=-1, descending=True).values
        kth = ordered.gather(-1, (top_k.clamp(1, vocab) - 1).unsqueeze(-1))
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if isinstance(top_p, torch.Tensor) or (top_p is not None and top_p < 1.0):
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs  # probability mass strictly ahead of each entry
        limit = top_p.unsqueeze(-1) if isinstance(top_p, torch.Tensor) else top_p
        sorted_logits = sorted_logits.masked_fill(before >= limit, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


@dataclass
class _RowSettings:
    """The sampling settings of the active rows as tensors, rebuilt when rows join or leave."""

    temperature: torch.Tensor  # (N, 1), at least float32's smallest normal number
    greedy: torch.Tensor | None  # (N,) bool: temperature 0; None when no row is greedy
    top_k: int | torch.Tensor | None
    top_p: float | torch.Tensor | None
    plain: bool = False  # every row at temperature 1 without a filter: the model's own distribution
    alternatives: int = 0  # the most likely symbols some row wants reported at each step
    cold: bool = False  # a temperature so low that logits / temperature could overflow without a shift

    @classmethod
    def of(cls, settings: Sequence[Sampling], device: torch.device) -> _RowSettings:
        tiny = torch.finfo(torch.float32).tiny
        temps = torch.tensor([max(s.temperature, tiny) for s in settings], device=device).unsqueeze(1)
        greedy = [s.temperature == 0 for s in settings]
        ks = {s.top_k for s in settings}
        ps = {s.top_p for s in settings}
        if len(ks) == 1:
            top_k = next(iter(ks))
        else:
            top_k = torch.tensor([s.top_k or (1 << 30) for s in settings], device=device)
        if len(ps) == 1:
            top_p = next(iter(ps))
        else:
            top_p = torch.tensor([s.top_p or 1.0 for s in settings], device=device)
        mask = torch.tensor(greedy, device=device) if any(greedy) else None
        plain = all(s.temperature == 1 and s.top_k is None and s.top_p in (None, 1.0) for s in settings)
        cold = any(s.temperature < 1e-3 for s in settings)
        return cls(temps, mask, top_k, top_p, plain, cold)


def choose(
    logits: torch.Tensor, rows: _RowSettings, u: torch.Tensor, alternatives: int = 0
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """One next-symbol id per row of `logits` (N, V), drawn at the rows' uniforms `u` (N,) in [0, 1), its
    log-probability under the model (temperature 1, unfiltered), and with `alternatives` > 0 the
    log-probabilities and ids of each row's that many most likely symbols ((N, k) each)."""
    logits = logits.float()
    logp = torch.log_softmax(logits, dim=-1)
    if rows.plain:
        probs = logp.exp()
    else:
        scaled = logits - logits.max(dim=-1, keepdim=True).values if rows.cold else logits
        probs = torch.softmax(filter_logits(scaled / rows.temperature, rows.top_k, rows.top_p), dim=-1)
    cdf = probs.cumsum_(dim=-1)
    total = cdf[:, -1:]
    # the first symbol whose cumulative probability passes u * total; kept strictly below the total, so
    # the symbol found always has a probability above 0 (never one the filter removed)
    target = torch.minimum(u.to(cdf.dtype).unsqueeze(1) * total, total * (1 - 2**-20))
    ids = torch.searchsorted(cdf, target, right=True).squeeze(1)
    if rows.greedy is not None:
        ids = torch.where(rows.greedy, logits.argmax(dim=-1), ids)
    tops = torch.topk(logp, min(alternatives, logp.size(-1)), dim=-1) if alternatives else None
    return ids, logp.gather(1, ids.unsqueeze(1)).squeeze(1), tops


# ---- the symbols of a vocabulary -----------------------------------------------------------------------
class Symbols:
    """Generated symbols as a searchable string: the text itself for a character vocabulary, the UTF-8
    bytes for a byte-level one, so stop strings and delimiters are found where the model wrote them."""

    def __init__(self, vocab: Vocabulary):
        self.vocab = vocab
        self.is_bytes = vocab.is_bytes
        self._chars = vocab.chars
        self.empty: str | bytes = b"" if self.is_bytes else ""

    def join(self, ids: Sequence[int]) -> str | bytes:
        if self.is_bytes:
            return bytes(ids)
        chars = self._chars
        return "".join([chars[i] for i in ids])

    def text(self, symbols: str | bytes) -> str:
        """Whole symbols as text (a byte-level model's invalid sequences become U+FFFD)."""
        return symbols.decode("utf-8", errors="replace") if isinstance(symbols, bytes) else symbols

    def encode(self, text: str, setting: str) -> str | bytes:
        """A stop string or delimiter in symbol form; BadInput if the model can never write it."""
        if not text:
            raise BadSetting(f"{setting_ref(setting)} must not be empty", setting)
        if len(text) > MAX_STOP_CHARS:
            raise BadSetting(f"{setting_ref(setting)} is longer than {MAX_STOP_CHARS:,} characters", setting)
        if self.is_bytes:
            return text.encode("utf-8")
        unknown = self.vocab.unknown_chars(text)
        if unknown:
            shown = " ".join(repr(c) for c in unknown[:10])
            raise BadInput(
                f"{setting_ref(setting)} {text!r} has character(s) the model never writes: {shown}; "
                "the text could never contain it",
                setting,
            )
        return text


def stop_symbols(symbols: Symbols, stops: Sequence[str]) -> list[str | bytes]:
    """The stop strings in symbol form, checked: at most MAX_STOPS, none empty, each one the model can
    write."""
    if len(stops) > MAX_STOPS:
        raise BadSetting(f"give at most {MAX_STOPS} {setting_ref('stop')} strings, not {len(stops)}", "stop")
    return [symbols.encode(stop, "stop") for stop in stops]


class Stops:
    """A set of stop strings in symbol form: finds the first place the text contains one, and how much
    of a text's end could still become the start of one (and so must be held back)."""

    def __init__(self, stops: Sequence[str | bytes]):
        self.stops = sorted(set(stops), key=len, reverse=True)
        self.hold = max((len(s) for s in self.stops), default=1) - 1

    def __bool__(self) -> bool:
        return bool(self.stops)

    def first(self, symbols: str | bytes, start: int = 0, after: int = 0) -> tuple[int, str | bytes] | None:
        """(where, stop) of the stop that ends first among those lying in symbols[start:] and ending
        beyond position `after` (the longest of those ending there), or None."""
        best = None
        for stop in self.stops:
            at = symbols.find(stop, max(start, after - len(stop) + 1))
            if at >= 0 and (best is None or at + len(stop) < best[0] + len(best[1])):
                best = (at, stop)
        return best

    def held(self, symbols: str | bytes) -> int:
        """The length of the longest end of `symbols` that is the beginning of a stop string (looked for
        only where a stop's first symbol occurs, so long stop strings cost little)."""
        n, best = len(symbols), 0
        for stop in self.stops:
            head = stop[:1]
            at = symbols.find(head, max(0, n - len(stop) + 1))
            while at >= 0 and n - at > best:
                if stop.startswith(symbols[at:]):
                    best = n - at
                    break
                at = symbols.find(head, at + 1)
        return best


# ---- rows ----------------------------------------------------------------------------------------------
@dataclass
class Start:
    """The state a row starts (and restarts) from: its prime read, one row."""

    prime: str
    state: list  # per layer (1, H) h, or (h, c), as Stepper.split_state
    first: int  # the first input id: the prime's last symbol


class Row:
    """One text being written. Subclasses say what the symbols mean in `take`."""

    def __init__(self, start: Start, sampling: Sampling, key: int):
        self.start = start
        self.sampling = sampling
        self.key = key % (1 << 64)
        self.draws = 0  # random numbers used so far
        self.tag: object = None  # whatever the row's owner uses to know it (a sample's number)
        self.alternatives = 0  # how many most likely symbols (and their log-probabilities) to note per step

    def note_alternatives(self, logprobs: list[list[float]], ids: list[list[int]]) -> None:
        """Before `take`: each step's `alternatives` most likely symbols, for rows that asked."""

    def budget(self) -> int:
        """Steps this row may still need (a chunk is no longer than its rows' largest budget)."""
        return CHUNK

    def take(self, ids: list[int], logprobs: list[float]) -> str:
        """New symbols and their log-probabilities -> GO, DONE or RESTART."""
        raise NotImplementedError


@dataclass
class Generated:
    """A finished text and how likely the model found it."""

    text: str
    symbols: int  # symbols generated, the stop string or delimiter included
    logprob: float  # sum of their natural-log probabilities under the model (temperature 1)
    finish: str  # "stop", "delimiter" or "length"

    @property
    def chars(self) -> int:
        return len(self.text)

    @property
    def nats_per_char(self) -> float | None:
        return -self.logprob / self.symbols if self.symbols else None

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "chars": self.chars,
            "logprob": self.logprob,
            "nats_per_char": self.nats_per_char,
            "finish": self.finish,
        }


class TextRow(Row):
    """A sample: up to `length` symbols, ending at the first stop string (which is not part of the text).

    `on_text` receives the text as it becomes final (characters that could still begin a stop string are
    held back; a byte-level model's characters come out whole); with `keep` the row also collects it for
    `result`. `on_done` is called once with the finished `Generated`."""

    def __init__(
        self,
        start: Start,
        sampling: Sampling,
        key: int,
        symbols: Symbols,
        length: int,
        stops: Sequence[str | bytes] = (),
        on_text: Callable[[str], None] | None = None,
        keep: bool = True,
        on_done: Callable[[TextRow], None] | None = None,
        alternatives: int = 0,
    ):
        super().__init__(start, sampling, key)
        self.alternatives = alternatives
        # with alternatives: per generated symbol (id, logprob, [(id, logprob) of the most likely ones])
        self.trace: list[tuple[int, float, list[tuple[int, float]]]] | None = [] if alternatives else None
        self._tops: tuple[list, list] | None = None
        self.symbols = symbols
        self.length = length
        self.stops = Stops(stops)
        self.on_text = on_text
        self.on_done = on_done
        self.pieces: list[str] | None = [] if keep else None
        self.pending = symbols.empty  # generated, not yet final
        self.written = 0
        self.logprob = 0.0
        self.finish: str | None = None
        self._decoder = symbols.vocab.decoder() if symbols.is_bytes else None

    def budget(self) -> int:
        return self.length - self.written

    def note_alternatives(self, logprobs: list[list[float]], ids: list[list[int]]) -> None:
        self._tops = (logprobs, ids)

    def _trace(self, ids: list[int], logprobs: list[float], used: int) -> None:
        if self.trace is None or self._tops is None:
            return
        top_lps, top_ids = self._tops
        k = self.alternatives
        for t in range(used):
            self.trace.append((ids[t], logprobs[t], list(zip(top_ids[t][:k], top_lps[t][:k], strict=True))))
        self._tops = None

    def take(self, ids: list[int], logprobs: list[float]) -> str:
        room = self.length - self.written
        ids, logprobs = ids[:room], logprobs[:room]
        before = len(self.pending)
        text = self.pending + self.symbols.join(ids)
        hit = self.stops.first(text) if self.stops else None
        if hit is not None:
            at, stop = hit
            used = at + len(stop) - before  # the chunk's symbols up to the stop's end
            self.written += used
            self.logprob += math.fsum(logprobs[:used])
            self._trace(ids, logprobs, used)
            return self._end(text[:at], "stop")
        self.written += len(ids)
        self.logprob += math.fsum(logprobs)
        self._trace(ids, logprobs, len(ids))
        if self.written >= self.length:
            return self._end(text, "length")
        hold = self.stops.held(text) if self.stops else 0
        self._emit(text[: len(text) - hold])
        self.pending = text[len(text) - hold :]
        return GO

    def _emit(self, symbols: str | bytes, final: bool = False) -> None:
        if self._decoder is not None:
            piece = "".join(map(self._decoder.feed, symbols)) + (self._decoder.flush() if final else "")
        else:
            piece = symbols
        if piece:
            if self.pieces is not None:
                self.pieces.append(piece)
            if self.on_text is not None:
                self.on_text(piece)

    def _end(self, symbols: str | bytes, finish: str) -> str:
        self._emit(symbols, final=True)
        self.pending = self.symbols.empty
        self.finish = finish
        if self.on_done is not None:
            self.on_done(self)
        return DONE

    @property
    def text(self) -> str:
        return "".join(self.pieces or ())

    def result(self) -> Generated:
        return Generated(self.text, self.written, self.logprob, self.finish or "length")


# ---- the engine ----------------------------------------------------------------------------------------
class Engine:
    """A model prepared for generation, and the rows it is writing."""

    def __init__(
        self,
        model: CharRNN,
        vocab: Vocabulary,
        device: torch.device | str = "cpu",
        quantize: str = "none",
        chunk: int = CHUNK,
    ):
        self.model = model.eval()
        self.vocab = vocab
        self.device = torch.device(device)
        self.quantize = quantize
        self.chunk = chunk
        self.symbols = Symbols(vocab)
        self.stepper = make_stepper(model, quantize)
        self._numpy = NumpyStepper(self.stepper) if NumpyStepper.usable(self.stepper, self.device) else None
        self.rows: list[Row] = []
        self._joining: list[Row] = []
        self._state: list | None = None
        self._current: torch.Tensor | None = None
        self._settings: _RowSettings | None = None
        self._starts: dict[str, Start] = {}

    # -- starts
    def start(self, prime: str = "") -> Start:
        """The state after reading `prime` (kept for the last few primes). The prime must hold only known
        characters (`check_prime`). It is read by the fused model in chunks of `evaluate.chunk_length(1)`
        symbols with the state carried, so any prime fits in bounded memory; int8 generation still reads
        the prime in float32. Without a prime the first input is a newline (or the vocabulary's first
        symbol if the corpus had no newline)."""
        cached = self._starts.get(prime)
        if cached is not None:
            return cached
        vocab, model = self.vocab, self.model
        ids = vocab.encode(prime) if prime else torch.empty(0, dtype=torch.uint8)
        if ids.numel() == 0:
            ids = torch.tensor([vocab.index("\n") if "\n" in vocab else 0])
        warm = ids.numel() - 1
        with torch.inference_mode():
            state = model.init_state(1, self.device)
            step = chunk_length(1)
            for at in range(0, warm, step):
                piece = ids[at : min(at + step, warm)].long().to(self.device)
                _, state = model(piece.unsqueeze(0), state)
            start = Start(prime, self.stepper.split_state(state), int(ids[-1]))
        if len(self._starts) >= 8:
            self._starts.pop(next(iter(self._starts)))
        self._starts[prime] = start
        return start

    # -- rows
    def add(self, row: Row) -> None:
        """`row` joins the batch before the next chunk."""
        self._joining.append(row)

    def discard(self, rows: Sequence[Row]) -> None:
        """Take rows out (a client that went away, a run that has what it wanted)."""
        gone = {id(r) for r in rows}
        self._joining = [r for r in self._joining if id(r) not in gone]
        keep = [i for i, r in enumerate(self.rows) if id(r) not in gone]
        if len(keep) != len(self.rows):
            self._keep(keep)

    @property
    def active(self) -> int:
        return len(self.rows) + len(self._joining)

    def _admit(self) -> None:
        joining, self._joining = self._joining, []
        states = [r.start.state for r in joining]
        firsts = torch.tensor([r.start.first for r in joining], dtype=torch.long, device=self.device)
        layers = []
        for k in range(len(states[0])):
            if isinstance(states[0][k], tuple):
                layers.append(tuple(torch.cat([s[k][j] for s in states]) for j in range(2)))
            else:
                layers.append(torch.cat([s[k] for s in states]))
        if self._state is None or not self.rows:
            self._state, self._current = layers, firsts
        else:
            self._state = [
                tuple(torch.cat([a, b]) for a, b in zip(old, new, strict=True))
                if isinstance(old, tuple)
                else torch.cat([old, new])
                for old, new in zip(self._state, layers, strict=True)
            ]
            self._current = torch.cat([self._current, firsts])
        self.rows.extend(joining)
        self._settings = None

    def _keep(self, keep: list[int]) -> None:
        self.rows = [self.rows[i] for i in keep]
        self._settings = None
        if not self.rows:
            self._state, self._current = None, None
            return
        at = torch.tensor(keep, dtype=torch.long, device=self.device)
        self._state = [
            tuple(t.index_select(0, at) for t in layer)
            if isinstance(layer, tuple)
            else layer.index_select(0, at)
            for layer in self._state
        ]
        self._current = self._current.index_select(0, at)

    def _restart(self, i: int, row: Row) -> None:
        for k, layer in enumerate(self._state):
            fresh = row.start.state[k]
            if isinstance(layer, tuple):
                for j in range(2):
                    layer[j][i] = fresh[j][0]
            else:
                layer[i] = fresh[0]
        self._current[i] = row.start.first

    def advance(self) -> None:
        """One chunk: admit the rows that joined, step every row, hand each its symbols, drop the done."""
        with torch.inference_mode():
            if self._joining:
                self._admit()
            rows = self.rows
            if not rows:
                return
            if self._settings is None:
                self._settings = _RowSettings.of([r.sampling for r in rows], self.device)
                self._settings.alternatives = max(r.alternatives for r in rows)
            steps = max(1, min(self.chunk, max(r.budget() for r in rows)))
            keys = np.array([r.key for r in rows], dtype=np.uint64)
            draws = np.array([r.draws for r in rows], dtype=np.uint64)
            u_np = uniforms(keys, draws, steps).astype(np.float32)
            n = len(rows)
            current, state, settings = self._current, self._state, self._settings
            k = min(settings.alternatives, len(self.vocab))
            plain_draw = settings.top_k is None and settings.top_p in (None, 1.0) and not k
            if self._numpy is not None and n == 1 and plain_draw:
                by_row, lp_by_row = self._numpy_chunk(steps, u_np)
            else:
                u = torch.from_numpy(u_np).to(self.device)
                ids = torch.empty(steps, n, dtype=torch.long, device=self.device)
                lps = torch.empty(steps, n, dtype=torch.float32, device=self.device)
                top_lps = torch.empty(steps, n, k, device=self.device) if k else None
                top_ids = torch.empty(steps, n, k, dtype=torch.long, device=self.device) if k else None
                for t in range(steps):
                    current, lps[t], tops = choose(self.stepper.step(current, state), settings, u[t], k)
                    ids[t] = current
                    if tops is not None:
                        top_lps[t], top_ids[t] = tops
                self._current = current
                by_row, lp_by_row = ids.t().tolist(), lps.t().tolist()
                if k:  # (N, steps, k) as lists, for the rows that asked
                    top_lps, top_ids = top_lps.transpose(0, 1).tolist(), top_ids.transpose(0, 1).tolist()
            keep = []
            for i, row in enumerate(rows):
                row.draws += steps
                if k and row.alternatives:
                    row.note_alternatives(top_lps[i], top_ids[i])
                verdict = row.take(by_row[i], lp_by_row[i])
                if verdict == RESTART:
                    self._restart(i, row)
                if verdict != DONE:
                    keep.append(i)
            if len(keep) != n:
                self._keep(keep)

    def _numpy_chunk(self, steps: int, u: np.ndarray) -> tuple[list, list]:
        """A chunk of the one row on the numpy path (numpy_step.py): its ids and logprobs; state carried."""
        fast, settings = self._numpy, self._settings
        state = fast.state_in(self._state)
        symbol = int(self._current[0])
        temperature = None if settings.plain else float(settings.temperature[0, 0])
        greedy = settings.greedy is not None and bool(settings.greedy[0])
        symbols, logprobs = [], []
        for t in range(steps):
            symbol, logprob = numpy_choose(fast.step(symbol, state), temperature, greedy, float(u[t, 0]))
            symbols.append(symbol)
            logprobs.append(logprob)
        self._state = fast.state_out(state)
        self._current = torch.tensor([symbol], dtype=torch.long)
        return [symbols], [logprobs]


def check_prime(vocab: Vocabulary, prime: str, drop_unknown: bool = False) -> str:
    """The prime with unknown characters dropped (if asked), or BadInput listing them: the model has no
    input for a character it never saw."""
    unknown = vocab.unknown_chars(prime)
    if unknown:
        if not drop_unknown:
            shown = " ".join(repr(c) for c in unknown[:20]) + (" ..." if len(unknown) > 20 else "")
            raise BadInput(
                f"the prime has {len(unknown)} character(s) the model never saw: {shown}; "
                f"change the prime or pass {setting_ref('drop_unknown')}"
            )
        prime = "".join(c for c in prime if c in vocab)
    return prime
