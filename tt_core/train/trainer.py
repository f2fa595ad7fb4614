"""Training: weighted cross-entropy, AdamW + the sources' schedules, resumable loop.

The loop is written top to bottom in `Trainer.run`. Everything it reports goes out as
events (tt_core.events); it knows nothing about who is watching.
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tt_core.runs import checkpoint as ckpt
from tt_core.plan.agent import Agent
from tt_core.config import Config, TrainConfig
from tt_core.controls import Controls
from tt_core.data.minari_io import DatasetInfo, dataset_info, ensure_dataset
from tt_core.data.tokens import ORIGINAL_MAX_PATH_LENGTH, TokenWindows, default_cache_dir, load_or_build_tokens
from tt_core.data.trajectories import Trajectories
from tt_core.device import available_memory, describe, set_compute_threads
from tt_core.distributed import World, check_batch_split
from tt_core.errors import CheckpointError, ConfigError, DataError, OutputError, TrainingDiverged
from tt_core.events import (
    Checkpointed,
    EventBus,
    Message,
    TrainFinished,
    TrainStarted,
    TrainStep,
)
from tt_core.runs.metrics import MetricsWriter, truncate_after_step
from tt_core.model.attention import query_blocks
from tt_core.model.gpt import GPTConfig, TrajectoryGPT
from tt_core.plan.gif import GifRecorder
from tt_core.runs.attention_file import AttentionWriter
from tt_core.runs.snapshots import SnapshotWriter
from tt_core.plan.rollout import Rollout
from tt_core.runs.listing import Heartbeat
from tt_core.train.schedule import Schedule, default_epochs, make_schedule
from tt_core.train.tracking import trackers


def target_kinds(seq_tokens: int, observation_dim: int, action_dim: int) -> torch.Tensor:
    """Kind of each target position (0 obs, 1 action, 2 reward, 3 value).

    Target j predicts sequence position j + 1, i.e. transition dimension (j + 1) % T.
    """
    transition_dim = observation_dim + action_dim + 2
    dims = (torch.arange(seq_tokens) + 1) % transition_dim
    kinds = torch.zeros(seq_tokens, dtype=torch.long)
    kinds[dims >= observation_dim] = 1
    kinds[dims == observation_dim + action_dim] = 2
    kinds[dims == observation_dim + action_dim + 1] = 3
    return kinds


def weighted_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    kind: torch.Tensor,
    kind_weights: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Original TT loss: mean over all positions of CE x kind weight x padding mask.

    Returns the loss to optimize and, for display, the unweighted CE summed over the
    unmasked targets of each kind and their count (shape [4] each; the mean of a kind is
    sum / count, kept apart so that ranks can add theirs before dividing).
    """
    ce = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="none"
    ).view_as(targets)
    loss = (ce * kind_weights[kind] * mask).mean()
    with torch.no_grad():
        onehot = F.one_hot(kind, 4).to(ce.dtype)  # [L, 4]
        per_kind_sum = torch.einsum("bl,bl,lk->k", ce, mask, onehot)
        per_kind_count = torch.einsum("bl,lk->k", mask, onehot)
    return loss, per_kind_sum, per_kind_count


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The forward pass's precision: bf16 autocast (train.precision bf16, or auto on
    CUDA) or none. Weights, optimizer state, loss and gradients stay fp32."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_optimizer(model: TrajectoryGPT, train: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the model's decay / no-decay groups; fused on CUDA, where it exists."""
    return torch.optim.AdamW(
        model.param_groups(train.weight_decay), lr=train.lr, betas=train.betas,
        fused=device.type == "cuda",
    )


def compute_gradients(
    net: torch.nn.Module,
    parameters,
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    kind: torch.Tensor,
    kind_weights: torch.Tensor,
    grad_clip: float,
    precision: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward, the TT loss, backward and clipping of one batch (the optimizer steps
    after the caller has checked the norm). Returns (loss, per-kind CE sums, per-kind
    counts, gradient norm before clipping), all on the device: no host sync here."""
    with autocast(x.device, precision):
        logits = net(x)
    loss, kind_sum, kind_count = weighted_loss(logits, y, mask, kind, kind_weights)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    return loss, kind_sum, kind_count, norm


class WindowSampler:
    """Deterministic shuffled batches: batch i of epoch e depends only on (seed, e, i).

    That is what makes `--resume` continue with exactly the batches it would have seen.
    """

    def __init__(self, num_windows: int, batch: int, seed: int) -> None:
        self.num_windows = num_windows
        self.batch = min(batch, num_windows)
        self.steps_per_epoch = max(1, num_windows // self.batch)
        self.seed = seed
        self._epoch = -1
        self._perm: torch.Tensor | None = None

    def indices(self, step: int) -> torch.Tensor:
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.num_windows, generator=g)
            self._epoch = epoch
        assert self._perm is not None
        return self._perm[i * self.batch : (i + 1) * self.batch]


LARGE_STEP_BYTES = 4 << 30  # a step holding more than this is announced before it starts


def step_memory_bytes(gpt: GPTConfig, rows: int, device_type: str = "cpu", compiled: bool = False) -> int:
    """A lower bound on what one training step of `rows` windows of t tokens holds at
    its peak: the fp32 logits [rows, t, vocab]; per layer the activations its backward
    keeps (at least the input, q/k/v, the attention output and the 4x MLP hidden: 9 E
    numbers per token, fp32 on the CPU, bf16 at best on CUDA); and where the CPU's
    dropout-attention path runs (tt_core/model/attention.py: the CPU, dropout > 0, not
    compiled) the softmax weights and their dropped copy it keeps, fp32, for the causal
    query blocks only. torch's fused kernels (CUDA, dropout 0, compiled) keep none."""
    t, E = gpt.block_size, gpt.embedding_dim
    on_cpu = device_type == "cpu"
    activations = gpt.n_layers * rows * t * 9 * E * (4 if on_cpu else 2)
    attention = 0
    if on_cpu and gpt.dropout > 0 and not compiled:
        kept = sum((b - a) * b for a, b in query_blocks(t))  # elements per (row, head)
        attention = gpt.n_layers * rows * gpt.n_heads * kept * 2 * 4
    return rows * t * gpt.vocab_size * 4 + activations + attention


def new_run_dir(cfg: Config) -> Path:
    """Create a new, empty run directory named after the dataset and the time (in a
    group: <group>-seed<seed>). Created here (mkdir fails if it exists), so two runs
    started in the same second never share one."""
    slug = cfg.dataset.id.replace("/", "-")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    if cfg.train.group is not None:  # the runs of a group are told apart by their seed
        slug, stamp = cfg.train.group, f"seed{cfg.train.seed}"
    out = Path(cfg.train.out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"train.out_dir {out}: is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        root = out / (f"{slug}-{stamp}" if n == 1 else f"{slug}-{stamp}-{n}")
        try:
            root.mkdir()
            return root
        except FileExistsError:
            n += 1


def _dataset_meta(cfg: Config, traj: Trajectories, info) -> dict:
    return {
        "dataset_id": cfg.dataset.id,
        "env_id": info.env_id,
        "observation_dim": traj.observation_dim,
        "action_dim": traj.action_dim,
        "transitions": traj.num_transitions,
        "episodes": info.episodes,
        "behaviour_mean_return": info.mean_return,
        "ref_min_score": info.ref_min_score,
        "ref_max_score": info.ref_max_score,
        "max_episode_steps": info.max_episode_steps,
        # the scale of observation prediction errors (tt_core/plan/prediction.py)
        "observation_std": traj.observations.std(axis=0).astype(float).tolist(),
    }


class _LossSums:
    """Total and per-kind losses summed on the device between two logs (no host sync)."""

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(5, device=device)  # total + obs, action, reward, value
        self.steps = 0
        self.since = time.perf_counter()

    def add(self, step_losses: torch.Tensor) -> None:
        self.sums += step_losses
        self.steps += 1

    def take(self) -> tuple[list[float], int, float]:
        """(mean losses, steps, seconds) since the last take; starts the next interval."""
        now = time.perf_counter()
        out = ((self.sums / self.steps).tolist(), self.steps, now - self.since)
        self.sums.zero_()
        self.steps, self.since = 0, now
        return out


class Trainer:
    """Owns model, optimizer and data for one run; `run()` trains until done or stopped."""

    def __init__(
        self,
        cfg: Config,
        bus: EventBus,
        controls: Controls | None = None,
        resume: Path | None = None,
        watch: bool = False,
        world: World | None = None,
    ) -> None:
        """`watch`: someone is looking (the TUI): evaluations send beam snapshots and
        can record GIFs of toggled envs to recordings/. `world`: this process's rank
        under torchrun; rank 0 alone writes and reports (the other ranks' events go
        nowhere)."""
        self.cfg = cfg
        self.world = world or World()
        self.bus = bus if self.world.main else EventBus()
        self.watch = watch
        self.controls = controls or Controls()
        # rank 0 is the run directory's one writer, from before it reads the checkpoint (a
        # second resume is refused; a run that finishes meanwhile is not retrained)
        self._lock = None
        self._resumed_from: Path | None = None  # never pruned while this training runs
        if resume is not None and self.world.main:
            run = ckpt.RunFiles(ckpt.find_run_root(resume)[0])
            if run.config.exists():  # else load_run says what is missing, and no file is made
                self._lock = ckpt.lock_run(run)
        try:
            self._build(resume)
        except BaseException:
            self._release()
            raise

    def _build(self, resume: Path | None) -> None:
        """Load the run to resume (if any), the data, the model and the optimizer, and
        open the run directory."""
        cfg = self.cfg
        loaded = ckpt.load_run(resume) if resume is not None else None
        if loaded is not None:
            check_resume_compatible(loaded.config, cfg)
        self.device = self.world.device(cfg.train.device)
        self._threads, self._threads_text = set_compute_threads(cfg.device.threads, self.device)
        torch.manual_seed(cfg.train.seed)
        np.random.seed(cfg.train.seed)
        traj, info = self._load_data(loaded)
        self._build_model(traj)
        self._build_optimizer()
        self._open_run_dir(loaded, traj, info)
        self._attach_recorders()

    def _release(self) -> None:
        """Let another process train this run."""
        if self._lock is not None:
            self._lock.release()

    def _load_data(self, loaded: ckpt.LoadedRun | None) -> tuple[Trajectories, DatasetInfo]:
        """The dataset (collected if the config says so), its tokens and training windows."""
        cfg, bus = self.cfg, self.bus
        with self.world.main_first():  # rank 0 collects and caches; the others read its files
            ds = ensure_dataset(cfg.dataset, notify=lambda text: bus.emit(Message(text)),
                                should_stop=lambda: self.controls.stop_requested)
            info = dataset_info(ds)
            t0 = time.perf_counter()
            traj, disc, tokens, cached = load_or_build_tokens(
                cfg.dataset.id, ds, cfg.dataset, default_cache_dir()
            )
        how = "loaded from cache" if cached else "tokenized"
        bus.emit(Message(f"{traj.num_transitions} transitions {how} in {time.perf_counter() - t0:.1f}s"))
        if loaded is not None and not np.array_equal(
            loaded.discretizer.to_arrays()["boundaries"], disc.to_arrays()["boundaries"]
        ):
            raise CheckpointError(
                f"{loaded.run.root}: the dataset '{cfg.dataset.id}' (or its binning rule) changed "
                f"since this run started"
            )
        windows = TokenWindows(
            tokens, traj.episode_starts, traj.episode_lengths, cfg.dataset.seq_len,
            stop_id=cfg.dataset.num_bins if cfg.model.stop_token else None,
            max_path_length=info.max_episode_steps or ORIGINAL_MAX_PATH_LENGTH,
        )
        if not len(windows):
            raise DataError(f"dataset '{cfg.dataset.id}': no training windows (every episode has one step)")
        self.windows: TokenWindows = windows.to(self.device)  # gather batches where the model is
        self.discretizer = disc
        return traj, info

    def _build_model(self, traj: Trajectories) -> None:
        """The network on the device, and which loss weight each target position takes."""
        cfg = self.cfg
        self.gpt = GPTConfig.from_config(cfg, traj.observation_dim, traj.action_dim)
        try:
            self.model = TrajectoryGPT(self.gpt).to(self.device)
        except (RuntimeError, MemoryError):  # the allocator's own message is a bug report
            n = self.gpt.num_parameters
            raise ConfigError(
                f"model: {n:,} parameters need {n * 4 / 2**30:,.1f} GiB for the weights alone "
                f"(x4 with AdamW) and could not be allocated; lower model.embedding_dim "
                f"({cfg.model.embedding_dim}) or model.n_layers ({cfg.model.n_layers})"
            ) from None
        self.kind = target_kinds(self.gpt.block_size, traj.observation_dim, traj.action_dim).to(self.device)
        t = cfg.train
        self.kind_weights = torch.tensor(
            [1.0, t.action_weight, t.reward_weight, t.value_weight], device=self.device
        )

    def _build_optimizer(self) -> None:
        """AdamW, the batch sampler, the learning-rate schedule (over the epochs, not the
        step cap: tt_core/train/schedule.py), and what the step calls (DDP, compile)."""
        cfg, t = self.cfg, self.cfg.train
        self.optimizer = make_optimizer(self.model, t, self.device)
        self.sampler = WindowSampler(len(self.windows), t.batch_size, t.seed)
        if self.sampler.batch < t.batch_size:  # every step sees the whole dataset: say so, once
            self.bus.emit(Message(f"train.batch_size={t.batch_size} is more than the dataset's "
                                  f"{len(self.windows)} training windows; each batch holds all {self.sampler.batch}",
                                  level="warning"))
        check_batch_split(self.sampler.batch, self.world.size)
        self._check_step_fits(self.sampler.batch // self.world.size)
        self.schedule: Schedule = make_schedule(
            t.schedule, t.lr, t.epochs or default_epochs(len(self.windows)), t.max_steps, self.sampler.batch,
            cfg.dataset.seq_len, self.gpt.transition_dim, self.windows.real_transitions(), t.warmup_tokens,
        )
        self.step = 0
        self.tokens = 0  # what the schedule has counted so far (tt_core/train/schedule.py)
        self.plan_cfg = cfg.plan  # live edits made during an evaluation carry over
        self.net = self.model  # what the step calls: the model, or DDP around it
        if self.world.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if t.compile:
            self.net = torch.compile(self.net)

    def _check_step_fits(self, rows: int) -> None:
        """Refuse a batch whose step cannot fit in memory before it starts (a step that
        swaps or waits on the allocator looks like a hang), and say so before a large one."""
        need = step_memory_bytes(self.gpt, rows, self.device.type, self.cfg.train.compile)
        free = available_memory(self.device)
        if free is not None and need > free:
            raise ConfigError(
                f"train.batch_size={self.cfg.train.batch_size}: one step needs at least {need / 2**30:,.1f} GiB "
                f"(activations and logits of {rows:,} windows of {self.gpt.block_size} tokens), "
                f"{free / 2**30:,.1f} GiB is free on {describe(self.device)}; lower train.batch_size"
            )
        if need > LARGE_STEP_BYTES or (free is not None and need > free / 4):
            self.bus.emit(Message(f"each step holds at least {need / 2**30:,.1f} GiB ({rows:,} windows of "
                                  f"{self.gpt.block_size} tokens): the first one may take a while"))

    def _open_run_dir(self, loaded: ckpt.LoadedRun | None, traj: Trajectories, info: DatasetInfo) -> None:
        """Resume `loaded` (its weights, optimizer, step; metrics past it dropped), or
        start a new run directory with its header (config, discretizer, dataset)."""
        cfg, bus = self.cfg, self.bus
        if loaded is not None:
            self.run_files = loaded.run
            self.dataset_meta = loaded.dataset_meta
            self._restore(loaded)
            self._resumed_from = loaded.checkpoint
            if self.world.main:
                ckpt.clean_residue(self.run_files)
                aside = ckpt.set_aside_newer(self.run_files, loaded.checkpoint, self.step)
                dropped = truncate_after_step(self.run_files.metrics, self.step)
                note = f"; {dropped} metric records past it dropped" if dropped else ""
                bus.emit(Message(f"resumed {loaded.run.root} at step {self.step}{note}"))
                if aside is not None:
                    bus.emit(Message(f"the checkpoints newer than step {self.step} were moved to {aside} "
                                     f"(this resume starts a new history from {loaded.checkpoint.name})",
                                     level="warning"))
        else:
            self.dataset_meta = _dataset_meta(cfg, traj, info)
            root = self.world.broadcast(new_run_dir(cfg) if self.world.main else None)
            self.run_files = ckpt.RunFiles(root)
            if self.world.main:
                self._lock = ckpt.lock_run(self.run_files)
                ckpt.write_run_header(self.run_files, cfg, self.discretizer, self.dataset_meta)
        if self.world.rank > 0:  # dropout masks of its own; rank 0 keeps the saved stream
            torch.manual_seed(cfg.train.seed * 1_000_003 + self.world.rank * 10_007 + self.step)

    def _attach_recorders(self) -> None:
        """Rank 0 writes metrics.jsonl, snapshots.json and the trackers' logs from the events."""
        self.trackers: list = []
        if not self.world.main:
            return
        self.metrics = MetricsWriter(self.run_files.metrics)
        self.bus.subscribe(self.metrics)
        self.bus.subscribe(SnapshotWriter(self.run_files.root))  # the beam trees, for `tt-tui show`
        self.bus.subscribe(AttentionWriter(self.run_files.root))  # attention maps, for `tt-tui report --plots`
        self.trackers = trackers(self.run_files.root, self.cfg, self.bus.emit, self.step)  # TensorBoard, W&B
        for tracker in self.trackers:
            self.bus.subscribe(tracker)

    def _restore(self, loaded: ckpt.LoadedRun) -> None:
        ckpt.load_weights(self.model, loaded.model_state, loaded.run.root)
        try:
            state = loaded.trainer_state or {}
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise CheckpointError(f"{loaded.run.root}: checkpoint does not fit the model ({first})") from None
        self.step = int(state["step"])
        torch.set_rng_state(state["torch_rng"])
        self.tokens = state.get("schedule_tokens")
        if self.tokens is None:  # saved before the count was: replay the batches it trained on
            self.tokens = sum(self.schedule.batch_tokens(self.sampler.indices(s).numpy())
                              for s in range(self.step))

    def _trainer_state(self) -> dict:
        return {
            "step": self.step,
            "schedule_tokens": self.tokens,  # what the lr schedule has counted (tt_core/train/schedule.py)
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }

    def save(self) -> Path | None:
        """Checkpoint (rank 0: every rank holds the same weights and optimizer state)."""
        if not self.world.main:
            return None
        path = ckpt.save_checkpoint(
            self.run_files, self.step, self.model.state_dict(), self._trainer_state(), protect=self._resumed_from
        )
        self.bus.emit(Checkpointed(self.step, str(path)))
        return path

    def run(self) -> Path:
        """Train to the end of the schedule or until a stop request; returns the run dir.
        Rank 0 keeps the run's heartbeat fresh meanwhile (`tt-tui runs` tells running
        runs from crashed ones by it)."""
        if not self.world.main:
            return self._train()
        try:
            with Heartbeat(self.run_files.root, lambda: self.step):
                return self._train()
        finally:
            for tracker in self.trackers:
                tracker.close()
            self._release()

    def _train(self) -> Path:
        sched, cfg = self.schedule, self.cfg
        self._announce_start()
        self.model.train()
        losses = _LossSums(self.device)
        while self.step < sched.total_steps and not self.world.any(self.controls.stop_requested):
            self.controls.wait_while_paused()
            lr = self._train_step(losses)
            if self._threads is not None:
                self._threads.tick()
            if self.step % cfg.train.log_every == 0 or self.step == sched.total_steps:
                self._log_losses(losses, lr)
            if self.step % cfg.train.checkpoint_every == 0 or self.controls.take_save_request():
                self.save()
            every = cfg.train.eval_every
            if every and self.step % every == 0 and self.step < sched.total_steps:
                self.evaluate()
                losses.since = time.perf_counter()  # tokens/s measures training only
                if self._threads is not None:  # planning chose its own count meanwhile
                    torch.set_num_threads(self._threads.current)
        stopped = self.step < sched.total_steps
        if ckpt.latest_step(self.run_files) != self.step:
            self.save()
        if cfg.train.eval_every and not stopped:
            self.evaluate()
            # a final evaluation cut short (Ctrl+C, q) scored nothing: the run is stopped, not finished
            stopped = self.world.any(self.controls.stop_requested)
        self.bus.emit(TrainFinished(self.step, str(self.run_files.root), stopped_early=stopped))
        return self.run_files.root

    def _announce_start(self) -> None:
        sched = self.schedule
        if self._threads_text and self.world.main:
            self.bus.emit(Message(self._threads_text))
        self.bus.emit(
            TrainStarted(
                run_dir=str(self.run_files.root),
                total_steps=sched.total_steps,
                start_step=self.step,
                tokens_per_step=sched.tokens_per_step,
                device=describe(self.device),
                num_params=sum(p.numel() for p in self.model.parameters()),
                dataset_id=self.cfg.dataset.id,
            )
        )

    def _train_step(self, losses: "_LossSums") -> float:
        """One optimizer step on the global batch of this step; returns its lr."""
        sched, world, t = self.schedule, self.world, self.cfg.train
        # the global batch a single process would draw; each rank takes its share
        batch = self.sampler.indices(self.step)
        counted = sched.batch_tokens(batch.numpy())  # host arithmetic: no device sync
        lr = sched.step_lr(self.step, self.tokens, counted)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        share = len(batch) // world.size
        x, y, mask = self.windows.batch(batch[world.rank * share : (world.rank + 1) * share])
        x, y, mask = (v.to(self.device, non_blocking=True) for v in (x, y, mask))
        self.optimizer.zero_grad(set_to_none=True)
        loss, kind_sum, kind_count, norm = compute_gradients(
            self.net, self.model.parameters(), x, y, mask, self.kind, self.kind_weights, t.grad_clip, t.precision,
        )
        if not bool(torch.isfinite(norm)):  # one host sync a step; the step is not applied
            raise TrainingDiverged(
                f"training diverged at step {self.step + 1} (loss {float(loss.detach()):.4g}, gradient "
                f"norm {float(norm):.4g}); {ckpt.newest_kept(self.run_files)}; lower train.lr "
                f"(now {t.lr:g})"
            )
        self.optimizer.step()
        self.step += 1
        self.tokens += counted
        # logged values are the global batch's: each rank's equal share of the mean
        # loss, and each kind's CE sum and count over all ranks
        stats = world.sum_(torch.cat([loss.detach()[None] / world.size, kind_sum, kind_count]))
        losses.add(torch.cat([stats[:1], stats[1:5] / stats[5:].clamp_min(1)]))
        return lr

    def _log_losses(self, losses: "_LossSums", lr: float) -> None:
        """A TrainStep with the mean losses since the last one (one device sync)."""
        sched = self.schedule
        means, steps, seconds = losses.take()
        self.bus.emit(
            TrainStep(
                step=self.step,
                epoch=self.step / sched.steps_per_epoch,
                tokens=self.step * sched.tokens_per_step,
                loss=means[0],
                loss_obs=means[1],
                loss_action=means[2],
                loss_reward=means[3],
                loss_value=means[4],
                lr=lr,
                tokens_per_s=steps * sched.tokens_per_step / max(seconds, 1e-9),
            )
        )

    def evaluate(self) -> list:
        """Plan eval.episodes episodes with the current weights (events only), then resume.
        Under torchrun each rank plays its share of the episodes; rank 0 reports them all."""
        agent = Agent(self.model, self.discretizer, self.cfg, self.dataset_meta,
                      self.run_files.root, self.step)
        recorder = None
        if self.watch:
            recorder = GifRecorder(Path("recordings"), f"{self.run_files.root.name}-step{self.step}",
                                   agent.env_id, fps=30)
        rollout = Rollout(agent, self.plan_cfg, self.cfg.eval, self.bus, self.controls,
                          recorder=recorder, render_size=256 if self.watch else None,
                          snapshots=True, world=self.world,  # snapshots.json keeps the last
                          first_maps=True,  # and attention.safetensors the first plan's attention
                          threads=self.cfg.device.threads)
        try:
            return rollout.run()
        finally:
            self.plan_cfg = rollout.plan_cfg
            self.model.train()


def check_resume_compatible(saved: Config, requested: Config) -> None:
    """A resumed run may change training knobs, never the data or the network."""
    for section in ("dataset", "model"):
        if getattr(saved, section) != getattr(requested, section):
            raise ConfigError(
                f"--resume: the '{section}' section differs from the run's saved config.yaml; "
                f"only train/plan/eval settings may change on resume"
            )
