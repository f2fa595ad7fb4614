"""CUDA graphs for the planner's one-token decode: captured per cache layout, replayed.

A beam-search plan decodes one token per row a few hundred times, each through a few
hundred small kernels (4 layers x layer norms, projections, the cascade's per-level
attention and merge). On a GPU the launches, not the arithmetic, bound that loop; a CUDA
graph replays all of a decode's kernels in one launch.

A graph fixes every shape and address it touched, so it is keyed by the layout of the
decode (`CascadeLevel.layout`): the level decoded into, and for that level and every
level above it the key/value and token buffers, rows and length (which also fix the
position and the mask's rows and columns); the network is fixed for a set of graphs. A plan walks the same layouts every env step once the history
fills its window, so the graphs of one plan are replayed at every later one.

Policy: a layout decodes eagerly the first time it is seen (the warm-up torch asks for
before a capture, done on the capture stream) and is captured the second time; from
then on it is replayed. A layout that changes (envs leaving the batch, a live edit of
the beam width, a crop) is simply a new key; all graphs are dropped when the plan's
shape (envs x beams x expand, dtype) or the network's weight addresses change, and when
more than MAX_GRAPHS are held.
Prefills and crops (several tokens at once, once per plan) stay eager. On the CPU, or
with graphs off (`plan.cuda_graphs: false`, `--no-cuda-graphs`), every decode is the
eager `TrajectoryGPT.decode`.

A graph must never take an evaluation down: if a capture or a replay raises, the decode
is rewound and run eagerly, graphs stay off for the rest of the run, and `fallback`
holds the one line the rollout reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable

import torch

from tt_core.model.cache import CascadeLevel
from tt_core.model.gpt import TrajectoryGPT

MAX_GRAPHS = 4096  # a 128 x 15 walker2d plan walks ~375 layouts


@dataclass
class _Graph:
    graph: "torch.cuda.CUDAGraph"
    tokens: torch.Tensor  # the static input [rows]
    logits: torch.Tensor  # the static output [rows, N], shared by graphs of as many rows


@dataclass
class GraphStats:
    eager: int = 0  # decodes run eagerly (first sight of a layout, or graphs off)
    captured: int = 0
    replayed: int = 0


class DecodeGraphs:
    """`decode(net, tokens, level)`: the next-token logits of one new token per row,
    exactly `net.decode(tokens[:, None], level, logits="next")`, through CUDA graphs
    when `enabled` (CUDA devices only)."""

    def __init__(self, device: torch.device, enabled: bool = True):
        self.enabled = enabled and device.type == "cuda"
        self.fallback: str | None = None  # why graphs were turned off mid-run, once they were
        self.stats = GraphStats()
        self._graphs: dict[Hashable, _Graph] = {}
        self._seen: set[Hashable] = set()
        self._shape: Hashable = None
        self._outputs: dict[tuple, torch.Tensor] = {}  # (rows, bins, dtype) -> shared output
        if self.enabled:
            self._stream = torch.cuda.Stream(device)
            self._pool = torch.cuda.graph_pool_handle()

    def begin_plan(self, net: TrajectoryGPT, shape: Hashable) -> None:
        """Drop every graph when the plan's shape (envs x beams x expand, dtype) changes,
        since their layouts will not recur, or when the network's weights moved (graphs
        read them by address; optimizer steps update them in place, which is fine)."""
        shape = (shape, id(net), net.training, tuple(p.data_ptr() for p in net.parameters()))
        if shape != self._shape:
            self._drop_graphs()
            self._shape = shape

    def decode(self, net: TrajectoryGPT, tokens: torch.Tensor, level: CascadeLevel) -> torch.Tensor:
        if self.enabled:
            mark = level.mark()
            try:
                return self._graph_decode(net, tokens, level)
            except Exception as exc:  # a failed capture or replay: finish eagerly, stay eager
                self._turn_off(exc)
                level.rewind(mark)
        self.stats.eager += 1
        return net.decode(tokens[:, None], level, logits="next")

    def _turn_off(self, exc: Exception) -> None:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        self.fallback = (f"CUDA graphs failed ({type(exc).__name__}: {first}); planning eagerly "
                         "for the rest of this run (--no-cuda-graphs skips them)")
        self.enabled = False
        self._drop_graphs()

    def _drop_graphs(self) -> None:
        self._graphs.clear()
        self._seen.clear()
        self._outputs.clear()

    def _graph_decode(self, net: TrajectoryGPT, tokens: torch.Tensor, level: CascadeLevel) -> torch.Tensor:
        """Replay this layout's graph, or see it eagerly first, or capture it."""
        key = level.layout()
        entry = self._graphs.get(key)
        if entry is not None:
            entry.tokens.copy_(tokens)
            entry.graph.replay()
            level.advance(1)  # the host half of the decode the graph replayed
            self.stats.replayed += 1
            return entry.logits.clone()  # the shared output is rewritten by the next replay
        if key not in self._seen:
            self._seen.add(key)
            return self._eager_on_capture_stream(net, tokens, level)
        if len(self._graphs) >= MAX_GRAPHS:  # layouts that churn: start over
            self._graphs.clear()
            self._seen = {key}
        entry = self._capture(net, tokens, level)
        self._graphs[key] = entry
        return entry.logits.clone()

    def _eager_on_capture_stream(self, net, tokens, level) -> torch.Tensor:
        current = torch.cuda.current_stream(tokens.device)
        self._stream.wait_stream(current)
        with torch.cuda.stream(self._stream):
            logits = net.decode(tokens[:, None], level, logits="next")
        current.wait_stream(self._stream)
        logits.record_stream(current)  # made on the capture stream, read on this one
        self.stats.eager += 1
        return logits

    def _capture(self, net, tokens, level) -> _Graph:
        """Capture runs the decode's host code once (the cache's length advances) and
        records its kernels without running them; the replay after it runs them.

        Graphs of the same row count write their logits into one shared buffer made
        outside the graph pool, so a thousand graphs do not hold a thousand outputs."""
        static = tokens.clone()
        key = (tokens.shape[0], net.cfg.vocab_size, net.pos_emb.dtype)
        if key not in self._outputs:
            self._outputs[key] = torch.empty(key[:2], dtype=key[2], device=tokens.device)
        logits = self._outputs[key]
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool, stream=self._stream, capture_error_mode="thread_local"):
            logits.copy_(net.decode(static[:, None], level, logits="next"))
        graph.replay()
        self.stats.captured += 1
        return _Graph(graph, static, logits)
