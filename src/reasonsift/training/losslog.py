"""The training loss as reported: logged at every optimizer step, summarised in aligned windows.

Why: the Trainer logs the mean loss since its last log. After a resume that window restarts at the
checkpoint, so with ``logging_steps=10`` a run resumed at step 4 logged the mean of steps 5-10 where
the uninterrupted run logged steps 1-10, and "final loss" came from whichever step was logged last
(with 5 steps and ``logging_steps=10``: step 1). Here every step's own loss is logged (it is saved in
each checkpoint's ``trainer_state.json``, so a resume keeps the steps before it), and every figure in
the report and on the console is computed from those per-step losses over windows aligned to
multiples of ``logging_steps``: the same whether or where the run was interrupted.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback


class EveryStepLog(TrainerCallback):
    """Make the Trainer log after every optimizer step (its logged loss is then that step's own)."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        control.should_log = True
        return control


def step_losses(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per optimizer step (the last logged one wins if a step appears twice)."""
    by_step = {e["step"]: e for e in log_history if "loss" in e and "step" in e}
    return [by_step[s] for s in sorted(by_step)]


def windows(steps: list[dict[str, Any]], every: int) -> list[dict[str, Any]]:
    """The loss curve: per window of steps ``(k-1)*every+1 .. k*every`` (the last one may be shorter), the
    mean loss of its steps, with the step, epoch, learning rate and grad norm of its last step."""
    every = max(1, every)
    groups: dict[int, list[dict[str, Any]]] = {}
    for e in steps:
        groups.setdefault((e["step"] - 1) // every, []).append(e)
    curve = []
    for _, group in sorted(groups.items()):
        last = group[-1]
        point = {k: last[k] for k in ("step", "epoch", "learning_rate", "grad_norm") if k in last}
        point["loss"] = sum(e["loss"] for e in group) / len(group)
        point["steps"] = len(group)
        curve.append(point)
    return curve


def loss_summary(log_history: list[dict[str, Any]], every: int) -> dict[str, Any]:
    """``final_loss`` (mean over the last ``every`` steps: the loss the run reached, not one noisy batch),
    ``final_loss_steps``, ``final_step_loss``, ``loss_curve`` (``windows``) and ``step_losses``."""
    steps = step_losses(log_history)
    last = steps[-max(1, every):]
    return {"final_loss": sum(e["loss"] for e in last) / len(last) if last else None,
            "final_loss_steps": len(last), "final_step_loss": steps[-1]["loss"] if steps else None,
            "loss_curve": windows(steps, every), "step_losses": [e["loss"] for e in steps]}


def print_windows(callback_cls: type, every: int) -> TrainerCallback:
    """A console callback (``ProgressCallback`` / ``PrinterCallback``) that prints the loss once per window
    of ``every`` steps (and at the first and last step) as the window's mean, not each step's log;
    ``every=0``: no log lines at all (a progress bar stays a bar)."""

    class WindowPrinter(callback_cls):  # type: ignore[misc, valid-type]
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kwargs: Any) -> Any:
            if every == 0:
                return None
            if logs and "loss" in logs:
                step = state.global_step
                if step % max(1, every) and step != 1 and step < state.max_steps:
                    return None
                window = [e for e in step_losses(state.log_history) if (e["step"] - 1) // max(1, every)
                          == (step - 1) // max(1, every) and e["step"] <= step]
                if window:
                    logs = {**logs, "loss": sum(e["loss"] for e in window) / len(window)}
            return super().on_log(args, state, control, logs=logs, **kwargs)

    return WindowPrinter()
