"""What keeps the training loop safe to stop: a signal asks it to finish its step and save, and
the loss terms' finiteness is recorded on the device and read back only when the loop looks."""

from __future__ import annotations

import logging
import signal
from typing import Any

import torch

from gantrans.methods import Terms

log = logging.getLogger("gantrans")


class StopRequest:
    """SIGINT/SIGTERM ask the loop to stop after the current step; a second SIGINT stops at once."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: leave now (checkpoints are written atomically)
        self.signal_name = signal.Signals(signum).name
        log.warning(
            "\n%s received: finishing this step and writing a checkpoint (Ctrl-C again to quit at once)",
            self.signal_name,
        )

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave the default handlers
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class FiniteWatch:
    """Whether each step's loss terms were finite, kept on the device until someone asks.

    `add` records one step without synchronising; `first_bad` reads every pending record back
    in one transfer and returns the first step with a NaN or Inf term, and those terms.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[int, list[str], torch.Tensor]] = []  # (step, names, (K,) bool)

    def add(self, step: int, terms: Terms) -> None:
        if terms:
            names = list(terms)
            flags = torch.stack([torch.isfinite(v.detach()).all() for v in terms.values()])
            self.pending.append((step, names, flags))

    def first_bad(self) -> tuple[int, list[str]] | None:
        if not self.pending:
            return None
        flags = torch.cat([f for _, _, f in self.pending]).tolist()  # the one synchronisation
        i = 0
        found = None
        for step, names, f in self.pending:
            ok = flags[i : i + f.numel()]
            i += f.numel()
            if not all(ok):
                found = step, [n for n, good in zip(names, ok, strict=True) if not good]
                break
        self.pending.clear()
        return found

    def reset(self) -> None:
        self.pending.clear()
