"""Every key the app answers to: the one list its bindings, its help screen and the
key table of docs/app.md are made from or checked against (tests/test_app.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Key:
    """One action and the keys that trigger it."""

    keys: tuple[str, ...]  # Textual key names; the first is the one the footer shows
    action: str | None  # the app's action_<name>; None: Textual's own (focus moves)
    what: str  # the help screen's line
    mode: Literal["all", "train", "eval"]  # eval: needs a running (or shown) evaluation
    footer: str | None = None  # the footer's label; None: not in the footer
    steers: bool = False  # changes the job: not in a read-only view (`tt-tui show`)
    priority: tuple[str, ...] = ()  # keys that act even while an input has focus


KEYS: tuple[Key, ...] = (
    Key(("q", "ctrl+c"), "quit", "stop the job cleanly (training saves first) and quit; twice aborts",
        "all", "Quit", priority=("ctrl+c",)),
    Key(("p",), "pause", "pause / resume the job", "all", "Pause", steers=True),
    Key(("s",), "save", "save a checkpoint now", "train", "Save", steers=True),
    Key(("l",), "toggle_lr", "loss curves / learning rate", "train", "Loss/LR"),
    Key(("left_square_bracket",), "prev_env", "previous env", "eval", "Env-"),
    Key(("right_square_bracket",), "next_env", "next env", "eval", "Env+"),
    Key(("f",), "freeze", "freeze / unfreeze the beam tree", "eval", "Freeze"),
    Key(("v",), "toggle_predictions", "beam tree / the plans' prediction error by step into the plan", "eval"),
    Key(("a",), "toggle_attention", "beam tree / the model's attention over the selected env's plan window", "eval"),
    Key(("L",), "next_layer", "attention: the next layer", "eval"),
    Key(("H",), "next_head", "attention: the next head (after the last, their mean)", "eval"),
    Key(("left",), "snap_prev", "the selected env's previous plan (freezes)", "eval"),
    Key(("right",), "snap_next", "the selected env's next plan (freezes)", "eval"),
    Key(("r",), "record", "start / stop a GIF recording of the selected env", "eval", "Rec", steers=True),
    # no footer label: at 80 columns it would push `? Help` off the line; `?` lists it
    Key(("g",), "plan_gif", "save the selected env's next plan beside the simulator as a GIF", "eval", steers=True),
    Key(("o",), "toggle_objective", "rank plans by reward / by likelihood (imitation), from the next plan", "eval",
        steers=True),
    Key(("e",), "edit_plan", "edit the planning parameters (enter applies)", "eval", "Edit plan", steers=True),
    Key(("escape",), "leave_input", "leave the planning inputs", "all", "Done editing"),
    Key(("tab", "shift+tab"), None, "move focus between the tree and the inputs", "all"),
    Key(("ctrl+s", "S"), "screenshot", "save an SVG screenshot", "all"),
    Key(("question_mark", "f1"), "help", "this help", "all", "Help"),
)

# How a key is written for people, where its Textual name is not how it looks.
SHOWN = {"left_square_bracket": "[", "right_square_bracket": "]", "question_mark": "?",
         "left": "←", "right": "→", "escape": "esc"}


def shown(key: str) -> str:
    return SHOWN.get(key, key)


def actions(mode: str) -> set[str]:
    """The actions that only make sense in `mode` (train or eval)."""
    return {k.action for k in KEYS if k.mode == mode and k.action}


STEERING = {k.action for k in KEYS if k.steers}  # what a read-only view cannot do


# The side-by-side view of several runs (`tt-tui show RUN1 RUN2 ...`, tt_tui/compare.py).
COMPARE_KEYS: tuple[Key, ...] = (
    Key(("q",), "quit", "quit (nothing is written)", "all", "Quit"),
    Key(("l",), "next_loss", "the next loss: total, observation, action, reward, value", "all", "Next loss"),
)
