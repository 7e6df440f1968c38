"""The training loop: truncated backpropagation through time over contiguous streams.

Each step takes the next (N, T) window of every stream, runs the model from the carried (detached) state
with teacher forcing, and minimises next-character cross-entropy with AdamW, global-norm clipping and a
warm-up + cosine learning-rate schedule. The schedule runs on "progress", the fraction of the budget
spent: the largest of steps/max_steps, epochs/max_epochs and seconds/max_time, so a time budget gets a
full decay too. Validation scores the held-out text (see evaluate.py), or its first `val_chars`
characters, the same slice every time, every `eval_every` steps and at the end; `best.pt` and `last.pt`
are written atomically. SIGINT/SIGTERM finish the current step (or stop an evaluation between two of its
chunks), save `last.pt` and return; a second signal aborts at once (the atomic writes keep every file
whole). The corpus may be a memory map: batches are cut from it as views and moved to the device one
window at a time.

Data-parallel runs (see distributed.py): every rank runs this loop on its own block of the global streams
with the model wrapped in DistributedDataParallel, so gradients are averaged over all ranks' windows and
the weights stay identical. Rank 0 decides each step's budget fraction and whether to stop (one small
all-reduce a step), validation is split across the ranks and summed, and only rank 0 writes files or
prints; the checkpoint gathers every rank's carried state and random-number state, so a resumed run
continues exactly.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
import types
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from charrnn.batching import StreamBatcher
from charrnn.checkpoint import Checkpoint, CorpusFacts, Progress, TrainingState
from charrnn.config import TrainConfig
from charrnn.corpus import Corpus
from charrnn.device import apply_threads, pick_autocast, pick_device
from charrnn.diagnostics import gradient_reach
from charrnn.distributed import Ranks
from charrnn.errors import BadSetting, CharrnnError
from charrnn.evaluate import EvaluationStopped, Score, score_sums
from charrnn.jsonl import append_record
from charrnn.memory import check_training_fits
from charrnn.model import CharRNN, ModelConfig, detach_state, map_state
from charrnn.runfolder import RunFolder
from charrnn.sample import SamplingConfig, sample_text
from charrnn.scheduled import SamplingSchedule, scheduled_forward

LOG_INTERVAL = 0.5  # seconds between progress-bar updates


@dataclass
class TrainResult:
    run_dir: Path
    progress: Progress
    final_score: Score | None
    stopped_by: str  # "limit", "signal:SIGINT", "signal:SIGTERM", "diverged"
    chars_per_sec: float


@dataclass
class StepReport:
    """Sent about every LOG_INTERVAL seconds and after each evaluation: what a progress bar shows."""

    fraction: float  # of the budget spent
    step: int
    loss: float  # mean training loss since the previous report
    best_val: float
    chars_per_sec: float
    evaluated: bool = False  # sent right after an evaluation (the log mode prints every one of these)


@dataclass
class SampleReport:
    """A live sample (--sample-every), also appended to samples.jsonl."""

    step: int
    val_loss: float | None
    temperature: float
    text: str


@dataclass
class LimitReport:
    """The budget is spent: the final evaluation and save follow."""


Event = StepReport | SampleReport | LimitReport


@dataclass
class _Clock:
    """Where this process's share of the run started, for elapsed time and speed."""

    started: float  # perf_counter() at the start
    elapsed: float  # the run's elapsed seconds then (earlier sessions of a resumed run)
    eval_time: float
    chars_seen: int


class Aborted(KeyboardInterrupt):
    """A second SIGINT/SIGTERM: stop at once (every file on disk is still whole: writes are atomic)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class _StopRequest:
    """Turns the first SIGINT/SIGTERM into a flag the loop polls; the second aborts at once.

    `grace` seconds after the first, a second signal is taken as the same request: under torchrun a
    Ctrl-C reaches each rank twice, from the terminal and forwarded by the launcher."""

    def __init__(self, grace: float = 0.0):
        self.signal_name: str | None = None
        self.grace = grace
        self._first = 0.0

    def handler(self, signum, frame):
        if self.signal_name is not None:
            if time.monotonic() - self._first < self.grace:
                return
            raise Aborted(signum)
        self._first = time.monotonic()  # first: a second signal may interrupt this very handler
        self.signal_name = signal.Signals(signum).name

    @contextmanager
    def installed(self, keep: bool = False):
        """The handler for the block; with `keep` it stays for the rest of the process (a distributed
        run, where the launcher's forwarded copy of a signal may come after the block)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self.handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            if not keep:
                for s, h in previous.items():
                    signal.signal(s, h)


def lr_at(config: TrainConfig, step: int, progress: float) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    p = min(max(progress, 0.0), 1.0)
    floor = config.lr * config.min_lr_ratio
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * p))


def budget_fraction(config: TrainConfig, p: Progress, batches_per_epoch: int, eval_reserve: float) -> float:
    """How much of the run's budget is spent, 0..1 (the largest fraction over the limits given)."""
    fractions = [0.0]
    if config.max_steps:
        fractions.append(p.step / config.max_steps)
    if config.epochs:
        fractions.append((p.epoch + p.batch / batches_per_epoch) / config.epochs)
    if config.max_time:
        fractions.append((p.elapsed + eval_reserve) / config.max_time)
    return max(fractions)


class Trainer:
    def __init__(
        self,
        corpus: Corpus,
        model_config: ModelConfig,
        config: TrainConfig,
        run_dir: str | Path | RunFolder,
        resume: Checkpoint | None = None,
        on_event: Callable[[Event], None] | None = None,
        on_step: Callable[[Trainer], None] | None = None,
        ranks: Ranks | None = None,
        init_weights: dict[str, torch.Tensor] | None = None,
        lineage: dict | None = None,
        spent: float = 0.0,
    ):
        """`init_weights` start a fresh run from a trained model's weights (fine-tuning, finetune.py) and
        `lineage` says where they came from, for every checkpoint this run writes; a resume keeps its own.
        `spent`: seconds of a fresh run's budget already used before training (measuring the widths'
        speeds, width_choice.py), so the budget covers them."""
        self.corpus = corpus
        self.config = config.with_default_limit()  # no limit given: the default budget, never endless
        self.folder = run_dir if isinstance(run_dir, RunFolder) else RunFolder(run_dir)
        self.run_dir = self.folder.path
        self.ranks = ranks or Ranks()
        self.on_event = on_event if self.ranks.is_main else None  # only rank 0 reports
        self.on_step = on_step
        self.device = pick_device(config.device, self.ranks.local_rank, self.ranks.local_world_size)
        self.autocast_dtype = pick_autocast(config.precision, self.device)
        self.threads = apply_threads(config.threads)

        check_training_fits(model_config, config, self.device)  # refuse before allocating, not after
        torch.manual_seed(config.seed % (1 << 63))
        self.model = CharRNN(model_config)
        if init_weights is not None:
            self.model.load_state_dict(init_weights)
        self.model.to(self.device)
        self.lineage = dict(resume.lineage if resume is not None else lineage or {})
        if self.ranks.rank:  # the same initial weights everywhere, then each rank its own dropout draws
            torch.manual_seed((config.seed + 1_000_003 * self.ranks.rank) % (1 << 63))
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.progress = Progress()
        self.progress.elapsed = spent
        train_ids, val_ids = corpus.split(config.val_fraction)
        self.val_ids = val_ids
        self.eval_ids = val_ids[: config.val_chars] if config.val_chars else val_ids  # scored each time
        b, r = config.batch_size, self.ranks.rank
        self.batcher = StreamBatcher(
            train_ids, b * self.ranks.world_size, config.seq_len, config.seed, rows=slice(r * b, (r + 1) * b)
        )
        self._stop: _StopRequest | None = None
        self.state = None
        self._fingerprint = corpus.fingerprint
        self.since_eval = _LossMeter(self.device)  # training loss since the last evaluation
        ss = config.scheduled_sampling
        self.schedule = SamplingSchedule(*ss) if ss else None
        self.fed_fraction = _LossMeter(self.device)  # share of inputs that were the model's own guesses
        self.grad_reach: list[float] | None = None  # the latest gradient_reach measurement
        # the moving average of the weights (--ema), one tensor per parameter, on the device
        self.ema: list[torch.Tensor] | None = (
            [p.detach().clone() for p in self.model.parameters()] if config.ema else None
        )
        self.resumed = False
        if resume is not None:
            self._restore(resume)
        self.net: torch.nn.Module = self.model  # what the training step calls
        if self.ranks.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(
                self.model, device_ids=[self.device] if self.device.type == "cuda" else None
            )
        self.last_eval_seconds = 0.0

    # ---- checkpoints -------------------------------------------------------------------------------
    def _restore(self, ckpt: Checkpoint) -> None:
        saved = ckpt.training
        if saved.world_size != self.ranks.world_size:
            launch = (
                f"torchrun --nproc-per-node {saved.world_size} -m charrnn train ..."
                if saved.world_size > 1
                else "charrnn train ... without torchrun"
            )
            raise BadSetting(
                f"this run was trained by {saved.world_size} process(es) and resumes only with as many (each "
                f"carries its own streams' hidden state); resume it with {launch}"
            )
        self.model.load_state_dict(ckpt.weights)
        self.resumed = True
        self.optimizer.load_state_dict(saved.optimizer)
        for group in self.optimizer.param_groups:
            group["weight_decay"] = self.config.weight_decay
        self.progress = replace(saved.progress, history=list(saved.progress.history))
        if self.ema is not None:  # the saved average, or (--ema added on resume) one starting here
            source = saved.ema if saved.ema is not None else [p.detach() for p in self.model.parameters()]
            self.ema = [t.detach().clone().to(self.device) for t in source]
        self.since_eval.total.fill_(self.progress.loss_sum)
        self.since_eval.count = self.progress.loss_count
        if saved.carry is not None:  # the global streams' state: this rank takes its rows
            rows = self.batcher.rows
            if isinstance(saved.carry, (list, tuple)):
                self.state = tuple(t[:, rows].to(self.device) for t in saved.carry)
            else:
                self.state = saved.carry[:, rows].to(self.device)
        rng = saved.rng
        if "ranks" in rng:
            torch.set_rng_state(rng["ranks"][self.ranks.rank].clone())  # (a view with an offset crashes it)
        elif "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and self.device.type == "cuda":
            if "cuda_ranks" in rng:
                torch.cuda.set_rng_state(rng["cuda_ranks"][self.ranks.rank].clone())
            else:
                torch.cuda.set_rng_state_all(list(rng["cuda"]))

    def checkpoint(self) -> Checkpoint:
        """Everything a resume needs. In a distributed run every rank must call it (it gathers each rank's
        carried state and random-number state); only rank 0 then writes the result."""
        p = self.progress
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
        if self.ranks.distributed:
            # one tensor per rank, each its own storage: torch.set_rng_state crashes on a view with an offset
            rng["ranks"] = [t.clone() for t in self._gather(torch.get_rng_state()[None], 0)]
            if self.device.type == "cuda":
                rng["cuda_ranks"] = [t.clone() for t in self._gather(torch.cuda.get_rng_state()[None], 0)]
        carry = None
        if self.state is not None:
            if isinstance(self.state, tuple):
                carry = [self._gather(s, 1) for s in self.state]
            else:
                carry = self._gather(self.state, 1)
        p.loss_sum, p.loss_count = float(self.since_eval.total), self.since_eval.count
        return Checkpoint(
            model_config=self.model.config,
            vocab=self.corpus.vocab,
            weights={k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            corpus=CorpusFacts(self.corpus.name, len(self.corpus), self._fingerprint, self.corpus.origin),
            lineage=self.lineage,
            training=TrainingState(
                config=self.config,
                progress=p,
                optimizer=_to_cpu(self.optimizer.state_dict()),
                rng=rng,
                carry=carry,
                ema=[t.detach().cpu() for t in self.ema] if self.ema is not None else None,
                world_size=self.ranks.world_size,
            ),
        )

    @property
    def _comm_device(self) -> torch.device:
        """Where collectives take their tensors: the GPU for NCCL, the CPU for gloo."""
        return self.device if self.ranks.backend == "nccl" else torch.device("cpu")

    def _gather(self, tensor: torch.Tensor, dim: int) -> torch.Tensor:
        """Every rank's `tensor` joined along `dim` in rank order, returned on the CPU."""
        return self.ranks.gather_rows(tensor.detach().to(self._comm_device), dim).cpu()

    def save(self, name: str, checkpoint: Checkpoint | None = None) -> Path:
        """Write a checkpoint (rank 0 only; every rank calls this, since the checkpoint is gathered)."""
        path = self.run_dir / name
        checkpoint = checkpoint if checkpoint is not None else self.checkpoint()
        if self.ranks.is_main:
            checkpoint.save(path)
        return path

    # ---- evaluation --------------------------------------------------------------------------------
    def evaluate(self) -> Score | None:
        """Score the evaluation slice; raises EvaluationStopped if a stop signal arrives meanwhile.

        In a distributed run each rank scores its block of the streams and the sums are added up, so the
        loss is the one a single process reports; there the evaluation always runs to its end, since the
        ranks could not agree to stop it halfway."""
        if self.eval_ids.numel() < 2:
            return None
        start = time.perf_counter()
        stop = self._stop
        interruptible = stop is not None and not self.ranks.distributed
        total, count = score_sums(
            self.model,
            self.eval_ids,
            self.device,
            autocast_dtype=self.autocast_dtype,
            should_stop=(lambda: stop.signal_name is not None) if interruptible else None,
            part=(self.ranks.rank, self.ranks.world_size),
        )
        if self.ranks.distributed:
            sums = self._reduce([total, count])
            total, count = sums[0], int(round(sums[1]))
        score = Score(nats=total / count if count else math.nan, chars=count)
        self.last_eval_seconds = time.perf_counter() - start
        return score

    def _record(
        self,
        score: Score | None,
        train_loss: float,
        lr: float,
        chars_per_sec: float,
        ema_score: Score | None = None,
    ) -> dict:
        p = self.progress
        entry = {
            "step": p.step,
            "epoch": round(p.epoch + p.batch / self.batcher.batches_in_epoch(p.epoch), 4),
            "train_loss": train_loss,
            "val_loss": score.nats if score else None,
            "val_bpc": score.bpc if score else None,
            "val_ppl": score.perplexity if score else None,
            "val_chars": score.chars if score else 0,
            **({"val_loss_ema": ema_score.nats} if ema_score is not None else {}),
            "lr": lr,
            **self._scheduled_sampling_entry(),
            "elapsed": round(p.elapsed, 3),
            "chars_per_sec": round(chars_per_sec, 1),
            "threads": self.threads,
        }
        p.history.append(entry)
        if self.ranks.is_main:
            append_record(self.folder / "metrics.jsonl", entry)
        return entry

    def _reduce(self, values: list[float]) -> list[float]:
        """Sum of each value over the ranks, in float64."""
        values = torch.tensor(values, dtype=torch.float64, device=self._comm_device)
        return self.ranks.sum_(values).tolist()

    def _agree(self, frac: float, stop: _StopRequest) -> tuple[float, bool]:
        """(budget fraction, stop now?) as every rank will act on them: rank 0's clock decides the
        fraction, and a signal that reached any rank before this call stops them all. Each rank acts on
        the agreed values only, never on its own flag, so a signal arriving just after the exchange waits
        for the next one instead of splitting the ranks."""
        if not self.ranks.distributed:
            return frac, stop.signal_name is not None
        mine = [frac if self.ranks.is_main else 0.0, float(stop.signal_name is not None)]
        frac, signalled = self._reduce(mine)
        if signalled and stop.signal_name is None:
            stop.signal_name = "SIGTERM"  # another rank was told to stop
        return frac, bool(signalled)

    def _train_loss(self) -> float:
        """Mean training loss since the last evaluation, over all ranks' windows."""
        if not self.ranks.distributed:
            return self.since_eval.mean()
        total, count = self._reduce([float(self.since_eval.total), self.since_eval.count])
        return total / count if count else math.nan

    def _scheduled_sampling_entry(self) -> dict:
        if self.schedule is None or not self.schedule.active:
            return {}
        frac = budget_fraction(
            self.config, self.progress, self.batcher.batches_in_epoch(self.progress.epoch), 0.0
        )
        fed = self.fed_fraction.mean(reset=True) if self.fed_fraction.count else 0.0
        return {"ss_rate": round(self.schedule.rate(frac), 4), "ss_fed": round(fed, 4)}

    def _log_gradient_reach(self, x: torch.Tensor, y: torch.Tensor, state) -> None:
        """Record how far back this window's gradient reaches (see diagnostics.py) in grad_norms.jsonl."""
        self.grad_reach = gradient_reach(self.model, x, y, state)
        append_record(
            self.folder / "grad_norms.jsonl", {"step": self.progress.step, "norms": self.grad_reach}
        )

    def _evaluate_and_save(self, train_loss: float, lr: float) -> Score | None:
        """Score the validation text (its time counts against the budget), log it, save last/best.

        A non-finite score means the weights are broken: nothing is saved, so best.pt stays good.
        """
        t0 = time.perf_counter()
        ema_score = None
        try:
            score = self.evaluate()
            if self.ema is not None and score is not None and math.isfinite(score.nats):
                with self._ema_weights():
                    ema_score = self.evaluate()
        finally:
            self.progress.eval_time += time.perf_counter() - t0
            self._tick()
        self.since_eval.reset()
        self.progress.pending_eval_lr = None
        if score is not None and not math.isfinite(score.nats):
            return score
        self._record(score, train_loss, lr, self._speed(), ema_score)
        use_ema = ema_score is not None and ema_score.nats < score.nats
        best = ema_score if use_ema else score
        improved = best is None or best.nats < self.progress.best_val
        if best is not None and improved:
            self.progress.best_val = best.nats
        checkpoint = self.checkpoint()
        if improved:  # best.pt may hold the averaged weights; last.pt keeps the trained ones for resuming
            averaged = checkpoint.with_weights(self._ema_state_dict(), averaged=True) if use_ema else None
            self.save("best.pt", averaged or checkpoint)
        self.save("last.pt", checkpoint)
        t0 = time.perf_counter()
        self._live_sample(score)
        self.progress.eval_time += time.perf_counter() - t0  # like evaluation: not training time
        return score

    def _live_sample(self, score: Score | None) -> None:
        """After every `sample_every`-th evaluation: a short sample from the current weights, written above
        the progress bar and to samples.jsonl. It draws from its own generator, seeded by the step, so the
        run's random numbers (and so an exact resume) are untouched."""
        cfg, p = self.config, self.progress
        if not cfg.sample_every or not self.ranks.is_main or len(p.history) % cfg.sample_every:
            return
        sampling = SamplingConfig(
            length=cfg.sample_length, temperature=cfg.sample_temperature, seed=(cfg.seed + p.step) % (1 << 63)
        )
        was_training = self.model.training
        try:
            text = sample_text(self.model, self.corpus.vocab, "", sampling, self.device)
        finally:
            self.model.train(was_training)
        val = score.nats if score is not None else None
        append_record(
            self.folder / "samples.jsonl",
            {"step": p.step, "val_loss": val, "temperature": cfg.sample_temperature, "text": text},
        )
        self._emit(SampleReport(p.step, val, cfg.sample_temperature, text))

    def _emit(self, event: Event) -> None:
        if self.on_event is not None:
            self.on_event(event)

    # ---- the loop ----------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        """Train until a limit, a signal or divergence, holding the run folder's lock (rank 0); always
        leaves whole checkpoints behind."""
        with self.folder.lock() if self.ranks.is_main else contextlib.nullcontext():
            return self._run()

    def _run(self) -> TrainResult:
        p = self.progress
        if self.ranks.is_main:
            self.folder.ensure_writable()
        self.check_limits()
        if self.resumed and self.ranks.is_main:
            self.folder.align_logs(p.history, p.step)
        self._clock = _Clock(time.perf_counter(), p.elapsed, p.eval_time, p.chars_seen)
        stop = self._stop = _StopRequest(grace=2.0 if self.ranks.distributed else 0.0)
        with stop.installed(keep=self.ranks.distributed):  # also during the final evaluation and save
            stopped_by, lr = self._loop(stop)
            final = None
            if stopped_by == "limit" and (self.since_eval.count or not p.history):
                with contextlib.suppress(EvaluationStopped):  # the signal is handled below
                    final = self._evaluate_and_save(self._train_loss(), lr)
                if final is not None and not math.isfinite(final.nats):
                    stopped_by = "diverged"
            elif stopped_by == "limit" and p.history[-1]["val_loss"] is not None:
                final = Score(p.history[-1]["val_loss"], p.history[-1].get("val_chars", 0))
            if self._agree(0.0, stop)[1]:  # also a signal that came during the final evaluation
                stopped_by = f"signal:{stop.signal_name}"
                self.save("last.pt")
        self._tick()
        return TrainResult(self.run_dir, p, final, stopped_by, self._speed())

    def check_limits(self) -> None:
        """Refuse to start a run that its limits already stop (a resumed, finished run)."""
        p = self.progress
        if budget_fraction(self.config, p, self.batcher.batches_in_epoch(p.epoch), 0.0) >= 1.0:
            raise CharrnnError(
                f"this run already reached its limits (step {p.step}, {p.elapsed:.0f}s); "
                "raise --max-steps, --epochs or --max-time to train further"
            )

    def _eval_reserve(self) -> float:
        """Seconds to keep for the final evaluation: as long as the last one took, or before any, an
        estimate from the training speed (scoring a character costs about a third of training on it)."""
        if (
            self.last_eval_seconds
            or self.eval_ids.numel() < 2
            or self.progress.chars_seen == self._clock.chars_seen
        ):
            return self.last_eval_seconds
        return self.eval_ids.numel() / (3 * self._speed())

    def _tick(self) -> None:
        """Bring `elapsed` up to the wall clock."""
        self.progress.elapsed = self._clock.elapsed + time.perf_counter() - self._clock.started

    def _speed(self) -> float:
        """Training characters per second in this process, evaluation time excluded."""
        c, p = self._clock, self.progress
        seconds = (p.elapsed - c.elapsed) - (p.eval_time - c.eval_time)
        return (p.chars_seen - c.chars_seen) / max(seconds, 1e-9)

    def _loop(self, stop: _StopRequest) -> tuple[str, float]:
        cfg, p = self.config, self.progress
        chars_per_step = self.batcher.batch_size * cfg.seq_len
        since_shown = _LossMeter(self.device)
        last_shown = time.perf_counter()
        lr = cfg.lr
        self.model.train()
        if p.pending_eval_lr is not None:  # the evaluation a signal interrupted, so the log has it
            lr = p.pending_eval_lr
            try:
                self._evaluate_and_save(self._train_loss(), lr)
            except EvaluationStopped:
                return f"signal:{stop.signal_name}", lr
            self.model.train()
        while True:
            self._tick()
            frac = budget_fraction(cfg, p, self.batcher.batches_in_epoch(p.epoch), self._eval_reserve())
            frac, stopping = self._agree(frac, stop)
            if stopping:
                return f"signal:{stop.signal_name}", lr
            if frac >= 1.0:
                self._emit(LimitReport())
                return "limit", lr
            lr = lr_at(cfg, p.step, frac)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            if p.batch == 0:
                self.state = None  # each epoch starts the streams afresh
            elif cfg.state_reset > 0 and self.state is not None:
                self.state = self._reset_some_streams(self.state, p.step)
            x, y = self.batcher.batch(p.epoch, p.batch)
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            state_in = self.state
            rate = self.schedule.rate(frac) if self.schedule is not None else 0.0
            loss = self._train_step(x, y, rate)
            self.since_eval.add(loss)
            since_shown.add(loss)
            p.step += 1
            p.chars_seen += chars_per_step
            p.batch += 1
            if p.batch >= self.batcher.batches_in_epoch(p.epoch):
                p.epoch, p.batch = p.epoch + 1, 0

            eval_due = p.step % cfg.eval_every == 0
            if cfg.log_grad_norms and (eval_due or p.step == 1) and self.ranks.is_main:
                t0 = time.perf_counter()
                self._log_gradient_reach(x, y, state_in)
                p.eval_time += time.perf_counter() - t0  # a diagnostic: not training time
            if eval_due or time.perf_counter() - last_shown >= LOG_INTERVAL or p.step == 1:
                recent = since_shown.mean(reset=True)  # reading the loss waits for the device
                if not math.isfinite(recent) and not self.ranks.distributed:
                    return "diverged", lr  # (distributed: the evaluation's shared score decides)
                if eval_due:  # first, so the bar shows this evaluation's result
                    try:
                        score = self._evaluate_and_save(self._train_loss(), lr)
                    except EvaluationStopped:
                        p.pending_eval_lr = lr
                        return f"signal:{stop.signal_name}", lr
                    if score is not None and not math.isfinite(score.nats):
                        return "diverged", lr
                self._tick()
                shown = budget_fraction(cfg, p, self.batcher.batches_in_epoch(p.epoch), 0.0)
                self._emit(StepReport(shown, p.step, recent, p.best_val, self._speed(), eval_due))
                last_shown = time.perf_counter()
            if self.on_step is not None:
                self.on_step(self)

    def _reset_some_streams(self, state, step: int):
        """--state-reset: each stream's carried state starts blank with this probability per window, drawn
        from a generator seeded by the run's seed and the step, so a resumed run draws the same. Without
        it, a run shorter than an epoch never trains from a blank state (the only state a prime or a scored
        text starts from), and its predictions after a blank state can be much worse than after a long one."""
        generator = torch.Generator().manual_seed((self.config.seed * 1_000_003 + step) % (1 << 63))
        streams = self.config.batch_size * self.ranks.world_size
        keep = (torch.rand(streams, generator=generator) >= self.config.state_reset)[self.batcher.rows]
        keep = keep.to(self.device).view(1, -1, 1)
        return map_state(state, lambda s: s * keep)

    def _train_step(self, x: torch.Tensor, y: torch.Tensor, sampling_rate: float = 0.0) -> torch.Tensor:
        cfg = self.config
        with torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
        ):
            if sampling_rate > 0:
                logits, state, fed = scheduled_forward(self.model, x, self.state, sampling_rate)
                if fed.size(1) > 1:  # a window's first input is always the true character
                    self.fed_fraction.add(fed[:, 1:].float().mean())
            else:
                logits, state = self.net(x, self.state)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.long().flatten())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            self._update_ema()
        # carried in float32 whatever the autocast: checkpoints, the diagnostics and scheduled sampling
        # read it outside autocast, and bf16 rounding should not accumulate along the streams
        self.state = map_state(detach_state(state), torch.Tensor.float)
        return loss

    # ---- the moving average of the weights (--ema) ----------------------------------------------------
    @torch.no_grad()
    def _update_ema(self) -> None:
        """ema <- ema + (1 - d) (w - ema), with d ramping up as (1 + n) / (10 + n) towards --ema, so the
        average forgets the random initial weights within the first steps (as TensorFlow's EMA does)."""
        n = self.progress.step
        decay = min(self.config.ema, (1 + n) / (10 + n))
        torch._foreach_lerp_(self.ema, [p.detach() for p in self.model.parameters()], 1.0 - decay)

    def _ema_state_dict(self) -> dict:
        names = [name for name, _ in self.model.named_parameters()]
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        state.update({name: t.detach().cpu().clone() for name, t in zip(names, self.ema, strict=True)})
        return state

    @contextmanager
    def _ema_weights(self):
        """The averaged weights in the model for the block's duration, the trained ones back after it."""
        params = list(self.model.parameters())
        kept = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, e in zip(params, self.ema, strict=True):
                p.copy_(e)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, k in zip(params, kept, strict=True):
                    p.copy_(k)


class _LossMeter:
    """Sums losses on the device and reads them back only when shown (no per-step GPU sync)."""

    def __init__(self, device: torch.device):
        self.total = torch.zeros((), device=device)
        self.count = 0

    def add(self, loss: torch.Tensor) -> None:
        self.total += loss.detach()
        self.count += 1

    def mean(self, reset: bool = False) -> float:
        value = float(self.total) / self.count if self.count else math.nan
        if reset:
            self.reset()
        return value

    def reset(self) -> None:
        self.total.zero_()
        self.count = 0


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


class _CallableModule(types.ModuleType):
    """Importing this module sets the package attribute `charrnn.train` to it, over the function of the
    same name that `charrnn/__init__.py` defines: calling the module does what that function does, so
    `charrnn.train(corpus, ...)` works whichever modules were imported first."""

    def __call__(self, corpus, **options):
        from charrnn.train_api import train as run

        return run(corpus, **options)


sys.modules[__name__].__class__ = _CallableModule
