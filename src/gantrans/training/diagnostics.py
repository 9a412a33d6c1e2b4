"""Failure-mode diagnostics for GAN training: a discriminator that wins outright, a generator
loss that climbs without bound, and collapsed output diversity.

Each check looks at a window of logging intervals, so one noisy interval does not raise a
warning; a warning is given when a condition starts and again only after it has cleared.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import torch


@dataclass
class DiagnosticsConfig:
    window: int = 5  # logging intervals a condition must hold
    d_acc_max: float = 0.98  # discriminator accuracy above this, sustained, = it wins outright
    d_loss_min: float = 0.01  # ... or its loss below this (lsgan/bce)
    g_rise_factor: float = 3.0  # adversarial G loss this many times its lowest interval mean
    diversity_min: float = 0.1  # std across translated samples / std across their inputs


@dataclass
class Diagnostics:
    """Feed it interval means (`observe`) and sample batches (`observe_samples`); it returns
    the warnings that start now, each with its evidence, as one line."""

    config: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    gan_mode: str = "lsgan"
    discriminators: tuple[str, ...] = ("D_A", "D_B")  # loss terms of discriminators (+ "_acc")
    adversarial: tuple[str, ...] = ("G_A", "G_B")  # the generators' adversarial terms
    history: dict[str, deque] = field(default_factory=dict)
    g_floor: float = float("inf")
    active: set[str] = field(default_factory=set)

    def _push(self, key: str, value: float) -> deque:
        h = self.history.setdefault(key, deque(maxlen=self.config.window))
        h.append(value)
        return h

    def _edge(self, name: str, condition: bool, message: str) -> list[str]:
        """Report a condition when it becomes true; forget it when it clears."""
        if condition and name not in self.active:
            self.active.add(name)
            return [message]
        if not condition:
            self.active.discard(name)
        return []

    def observe(self, step: int, means: dict[str, float]) -> list[str]:
        """Check one logging interval's mean loss terms (keys as logged under loss/)."""
        c, out = self.config, []
        for d in self.discriminators:
            if f"{d}_acc" not in means:
                continue
            acc = self._push(f"{d}_acc", means[f"{d}_acc"])
            loss = self._push(d, means[d])
            full = len(acc) == c.window
            wins = full and min(acc) > c.d_acc_max
            if self.gan_mode != "wgangp":
                wins = wins or (full and max(loss) < c.d_loss_min)
            out += self._edge(
                f"{d}_wins",
                wins,
                f"step {step}: discriminator {d} wins outright: accuracy {acc[-1]:.1%}, loss "
                f"{loss[-1]:.4f} over the last {c.window} log intervals; the generator gets no "
                "useful gradient (try a lower train.lr, loss=lsgan, or a smaller discriminator)",
            )
        if self.adversarial and all(k in means for k in self.adversarial):
            g = self._push("G_adv", sum(means[k] for k in self.adversarial))
            if len(g) == c.window:
                self.g_floor = min(self.g_floor, min(g))
            rising = (
                len(g) == c.window
                and self.gan_mode != "wgangp"  # wgan critic scores have no fixed scale
                and self.g_floor > 0
                and all(b > a for a, b in zip(list(g), list(g)[1:], strict=False))
                and g[-1] > c.g_rise_factor * self.g_floor
            )
            out += self._edge(
                "G_rising",
                rising,
                f"step {step}: the generators' adversarial loss keeps rising: {g[-1]:.3f} now, "
                f"{self.g_floor:.3f} at its lowest, up in each of the last {c.window} intervals",
            )
        return out

    def observe_samples(
        self, step: int, inputs: torch.Tensor, outputs: torch.Tensor, direction: str
    ) -> tuple[float, list[str]]:
        """Diversity of a generator's outputs for distinct inputs, (N, C, H, W) each, N >= 2.

        Returns the ratio std(outputs across N) / std(inputs across N) and any new warning.
        """
        if inputs.shape[0] < 2:
            return float("nan"), []
        spread_in = inputs.float().std(0).mean().item()
        spread_out = outputs.float().std(0).mean().item()
        ratio = spread_out / max(spread_in, 1e-8)
        warnings = self._edge(
            f"collapse_{direction}",
            ratio < self.config.diversity_min,
            f"step {step}: {direction} outputs have collapsed: their spread across {inputs.shape[0]} "
            f"different inputs is {ratio:.1%} of the inputs' spread (mode collapse)",
        )
        return ratio, warnings
