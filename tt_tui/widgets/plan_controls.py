"""Live planning parameters: width, steps, context and expand, validated in the UI.

Enter (or the Apply button) checks every field (whole numbers, ranges, KV-cache
memory); an invalid edit shows the reason and sends nothing, a valid one posts
PlanParamsRequested for the app to hand to the engine.
"""

from __future__ import annotations

from typing import Callable

from tt_core.config import PlanConfig

from textual.app import ComposeResult
from textual.containers import Grid, Vertical
from textual.validation import Integer
from textual.widgets import Button, Input, Label, Static

from tt_tui.messages import PlanEditRefused, PlanParamsRequested
from tt_tui.plan_edit import EDITABLE, check_plan_edit, edit_bounds
from tt_tui.resources import ModelDims, available_memory_bytes, human_bytes


class PlanControls(Vertical):
    def __init__(self, available: Callable[[], int | None] = available_memory_bytes, **kwargs) -> None:
        super().__init__(**kwargs)
        self.available = available
        self.current: PlanConfig | None = None  # the parameters in force
        self.envs = 1
        self.dims: ModelDims | None = None
        self.in_use: int | None = None  # bytes of the planner's cache now (from the engine)
        self.device = "cpu"  # the engine's device (EvalStarted.device)

    def compose(self) -> ComposeResult:
        with Grid(id="plan-grid"):
            for key, label in EDITABLE.items():
                lo, hi = edit_bounds(key)
                yield Label(label, classes="plan-label")
                yield Input(
                    placeholder="-", id=f"plan-{key}", type="integer", compact=True,
                    validators=[Integer(minimum=lo, maximum=hi)], validate_on=["changed", "submitted"],
                )
        yield Static(id="plan-message")
        yield Button("apply", id="plan-apply", compact=True)

    def on_mount(self) -> None:
        self.border_title = "planning · e to edit"

    def set_plan(self, plan: PlanConfig, envs: int, dims: ModelDims | None, cache_bytes: int | None,
                 device: str = "cpu") -> None:
        """The parameters in force (EvalStarted.plan) and what the memory check needs."""
        self.current = plan
        self.border_subtitle = f"o: by {plan.objective}"
        self.device = device
        self.envs = max(int(envs), 1)
        self.dims = dims
        self.in_use = cache_bytes
        for key in EDITABLE:
            self.query_one(f"#plan-{key}", Input).value = str(getattr(plan, key))
        self._show_estimate()

    def confirm(self, plan: PlanConfig, cache_bytes: int) -> None:
        """The engine applied an edit: `plan` is now in force."""
        self.current = plan
        self.border_subtitle = f"o: by {plan.objective}"
        self.in_use = cache_bytes
        self._show_estimate()

    def _show_estimate(self) -> None:
        if self.current is None:
            return
        edit = check_plan_edit(self._texts(), self.current, self.envs, self.dims, self.available, self.in_use,
                               self.device)
        msg = self.query_one("#plan-message", Static)
        msg.remove_class("-error")
        if edit.estimate_bytes is not None:
            msg.update(f"KV cache ~{human_bytes(edit.estimate_bytes)} "
                       f"(free {human_bytes(self.available())})")
        else:
            msg.update("")

    def _texts(self) -> dict[str, str]:
        return {key: self.query_one(f"#plan-{key}", Input).value for key in EDITABLE}

    def focus_first(self) -> None:
        self.query_one("#plan-beam_width", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.apply()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.apply()

    def apply(self) -> None:
        msg = self.query_one("#plan-message", Static)
        if self.current is None:
            self._refuse("no evaluation is running yet")
            return
        edit = check_plan_edit(self._texts(), self.current, self.envs, self.dims, self.available, self.in_use,
                               self.device)
        if edit.params is None:
            self._refuse(edit.error or "invalid")
            return
        msg.remove_class("-error")
        if not edit.params:
            msg.update("no change")
            return
        msg.update("sent: " + ", ".join(f"{k}={v}" for k, v in edit.params.items()))
        self.post_message(PlanParamsRequested(edit.params))

    def _refuse(self, reason: str) -> None:
        msg = self.query_one("#plan-message", Static)
        msg.add_class("-error")
        msg.update(reason)
        self.post_message(PlanEditRefused(reason))
