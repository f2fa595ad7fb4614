"""The latest beam-search plan of the selected env as a tree.

Only lineages that survive to the last planned step are drawn (pruned branches are
counted), each node with its predicted reward and value; the executed (chosen) path
is highlighted and expanded. `f` freezes the view, left/right step through the last
snapshots of the env; while live it redraws at most a few times a second.
"""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Static, Tree

from tt_core.events import PlanSnapshot
from tt_tui.beams import BeamView, read_snapshot
from tt_tui.widgets.throttled import ThrottledRedraw

HISTORY = 32  # snapshots kept per env for stepping back
MAX_LEAVES = 24  # final beams drawn (the chosen one first)


def _fmt(v: float | None, spec: str) -> str:
    return "?" if v is None else format(v, spec)


class BeamTree(Tree, inherit_bindings=False):
    """A Tree that leaves left/right to the app (stepping through snapshots)."""

    BINDINGS = [
        Binding("up", "cursor_up", "Cursor up", show=False),
        Binding("down", "cursor_down", "Cursor down", show=False),
        Binding("pageup", "page_up", show=False),
        Binding("pagedown", "page_down", show=False),
        Binding("home", "scroll_home", show=False),
        Binding("end", "scroll_end", show=False),
        Binding("enter", "select_cursor", "Select", show=False),
        Binding("space", "toggle_node", "Toggle", show=False),
        Binding("shift+space", "toggle_expand_all", "Expand or collapse all", show=False),
        Binding("shift+left", "cursor_parent", "Cursor to parent", show=False),
        Binding("shift+up", "cursor_previous_sibling", show=False),
        Binding("shift+down", "cursor_next_sibling", show=False),
    ]


class BeamTreePanel(ThrottledRedraw, Vertical):
    MIN_REDRAW_S = 0.5  # a 128 x 15 tree takes ~40 ms to build: at most twice a second

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        # per env: [step, raw snapshot, BeamView once read] (read only when shown)
        self.history: dict[int, deque[list]] = {}
        self.env = 0
        self.frozen = False
        self.index = -1  # position in the env's history while frozen
        self.shown: tuple[int, int] | None = None  # (env, step) on screen

    def compose(self) -> ComposeResult:
        yield Static(id="beam-header")
        tree: Tree = BeamTree("no plan yet", id="beam-tree")
        tree.show_root = True
        yield tree

    def on_mount(self) -> None:
        self.border_title = "beam tree"
        # r: the step's predicted reward; v: the beam's value (its discounted predicted
        # rewards so far + the predicted value to go), as the planner ranks beams
        self.border_subtitle = "★ executed · r reward · V value-to-go · Σ score"
        self.redraw()

    def add(self, event: PlanSnapshot) -> None:
        if event.snapshot is None or (self.frozen and event.env_index == self.env):
            return  # a frozen env's history holds still, so stepping through it is stable
        entry = [event.step, event.snapshot, None]
        self.history.setdefault(event.env_index, deque(maxlen=HISTORY)).append(entry)
        if event.env_index == self.env and not self.frozen:
            self._dirty = True

    def select_env(self, env: int) -> None:
        self.env = env
        self.frozen, self.index = False, -1
        self.redraw()

    def toggle_freeze(self) -> None:
        self.frozen = not self.frozen
        self.index = len(self.history.get(self.env, ())) - 1
        self.redraw()

    def step_snapshot(self, delta: int) -> None:
        snaps = self.history.get(self.env)
        if not snaps:
            return
        if not self.frozen:
            self.frozen, self.index = True, len(snaps) - 1
        self.index = max(0, min(len(snaps) - 1, self.index + delta))
        self.redraw()

    def current(self) -> tuple[int, BeamView | None] | None:
        snaps = self.history.get(self.env)
        if not snaps:
            return None
        entry = snaps[self.index] if self.frozen and 0 <= self.index < len(snaps) else snaps[-1]
        if entry[2] is None:
            entry[2] = read_snapshot(entry[1]) or False  # False: nothing to draw, not retried
            entry[1] = None  # the plain view replaces the arrays
        return entry[0], (entry[2] or None)

    def redraw(self) -> None:
        self._drawn()
        header = self.query_one("#beam-header", Static)
        tree = self.query_one(Tree)
        cur = self.current()
        mode = "live"
        if self.frozen:
            mode = f"frozen {self.index + 1}/{len(self.history.get(self.env, ()))}  ←/→ step  f: live"
        self.border_title = f"beam tree · env {self.env}"
        if cur is None:
            self.shown = None
            header.update(Text(f"env {self.env}: no plan snapshot yet  [{mode}]", style="dim"))
            tree.clear()
            tree.root.set_label("no plan yet")
            return
        step, view = cur
        self.shown = (self.env, step)
        if view is None:
            header.update(Text(f"env step {step}: this snapshot has no beam data  [{mode}]", style="dim"))
            tree.clear()
            return
        header.update(Text(f"env step {step} · {view.steps} planned steps · {mode}"))
        build_tree(tree, view, f"plan at env step {step}")


def build_tree(tree: Tree, view: BeamView, title: str) -> None:
    """Fill `tree` with the surviving lineages of `view` (chosen path highlighted)."""
    tree.clear()
    tree.root.set_label(Text(title, style="bold"))
    steps = view.steps
    if steps == 0:
        return
    last = steps - 1
    chosen_final = view.chosen[last] if view.chosen else 0
    finals = [chosen_final] + [j for j in range(view.width(last)) if j != chosen_final]
    finals = finals[:MAX_LEAVES]
    # walk the kept final beams back to step 0: which beams at each step survive
    keep: list[set[int]] = [set() for _ in range(steps)]
    for j in finals:
        for t in range(last, -1, -1):
            if not 0 <= j < view.width(t):
                break
            keep[t].add(j)
            j = view.parents[t][j]
    chosen = {(t, j) for t, j in enumerate(view.chosen)}
    nodes = {}
    for t in range(steps):
        # chosen beam first, then the others by index
        for j in sorted(keep[t], key=lambda j: ((t, j) not in chosen, j)):
            parent_node = tree.root
            if t > 0:
                parent_node = nodes.get((t - 1, view.parents[t][j]), tree.root)
            on_path = (t, j) in chosen
            label = _label(view, t, j, on_path)
            node = parent_node.add(label, data=(t, j), expand=on_path, allow_expand=t < last)
            nodes[(t, j)] = node
    pruned = sum(view.width(t) - len(keep[t]) for t in range(steps))
    if pruned:
        tree.root.add_leaf(Text(f"({pruned} beams pruned before the last step not shown)", style="dim"))
    tree.root.expand()


def _label(view: BeamView, t: int, j: int, on_path: bool) -> Text:
    r, v = view.rewards[t][j], view.values[t][j]
    action = view.actions[t][j]
    a = ""
    if action:
        a = " a[" + " ".join(f"{x:+.2f}" for x in action[:3]) + (" …" if len(action) > 3 else "") + "]"
    text = Text()
    text.append("★ " if on_path else "  ", style="bold yellow")
    text.append(f"t{t} b{j}", style="bold" if on_path else "")
    score = view.scores[t][j]
    text.append(f" r {_fmt(r, '+.2f')} V {_fmt(v, '.1f')} Σ {_fmt(score, '.1f')}",
                style="green" if on_path else "")
    text.append(a, style="dim")
    return text
