"""The method plug-in interface: what the training loop asks of a training method.

A method owns its networks, its loss phases and what a checkpoint and the logs need; the loop
(gantrans.training.engine, gantrans.training.train) only asks it for the optimisers' parameter groups, the phases
of a step and the images to show, and knows nothing of cycles or contrastive losses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from gantrans.config import to_plain
from gantrans.methods.image_pool import ImagePool
from gantrans.methods.losses import tone_distance
from gantrans.models.layers import ChangeMask

if TYPE_CHECKING:
    from gantrans.config import TrainConfig

Batch = dict[str, torch.Tensor]
"""A training batch by domain: {"A": (N, C, H, W) in [-1, 1], "B": ...}."""
Terms = dict[str, torch.Tensor]
"""Detached scalar loss terms by name, as logged under loss/ in TensorBoard."""


@dataclass(frozen=True)
class Phase:
    """One optimisation phase of a training step.

    Attributes:
        optimizer: The key of `Method.param_groups` whose optimiser minimises this loss.
        loss: ``loss(batch, cache) -> (total, terms)``: the scalar to back-propagate and the
            detached terms to log. ``cache`` is a dict shared by the phases of one step, so a
            later phase can reuse what an earlier one computed (the fakes, say).
    """

    optimizer: str
    loss: Callable[[Batch, dict[str, Any]], tuple[torch.Tensor, Terms]]


class Method(nn.Module):
    """Base class of a training method (see gantrans.methods.cyclegan and .cut for two).

    What the method needs before it is built (its data, directions, option defaults and checks)
    is its options schema's (gantrans.methods.<name>_options); the batches `phases` receive are
    those of the schema's `data`: {"A", "B"} unpaired or paired, {"real"} for one domain.
    A subclass sets the class attributes below, builds its networks in `build` and implements
    the abstract methods. The networks must be registered submodules, so `.to()`, `.train()`
    and SyncBatchNorm conversion reach them.

    Class attributes:
        pooled: Domains whose generated images reach the discriminators through an image
            buffer (`self.pools[domain]`, sized by train.pool_size).
        discriminator_terms: Loss terms that are a discriminator's loss (each with an
            ``<name>_acc`` term), watched by the diagnostics.
        adversarial_terms: The generators' adversarial terms, watched by the diagnostics.
        progress_terms: The terms shown on the progress bar.
        real_domains: {discriminator name: batch key of the real images it scores}, for the
            R1 penalty (loss.r1_gamma); a method whose discriminators score something else
            (pix2pix: pairs) leaves it empty.

    Attributes:
        name: The method's name as recorded in a checkpoint (`method=NAME`).
        directions: {direction: network name} of what it translates: {"AtoB": "G_A",
            "BtoA": "G_B"} for CycleGAN, {"AtoB": "G"} for CUT; a paired method has one, an
            unconditional one none.
        pools: The image buffers of `pooled`, by domain.
        runners: The single-call modules of the phases by name (see `wrap_runners`).
    """

    pooled: ClassVar[tuple[str, ...]] = ()
    discriminator_terms: ClassVar[tuple[str, ...]] = ()
    adversarial_terms: ClassVar[tuple[str, ...]] = ()
    progress_terms: ClassVar[tuple[str, ...]] = ()
    real_domains: ClassVar[dict[str, str]] = {}
    lambda_mask: float = 0.0  # the weight of the change masks' size penalty (model.mask)
    mask_area: float | None = None  # the size it is drawn towards (None: as small as it can)
    lambda_mask_tv: float = 0.0  # the weight of the masks' total variation (model.mask)
    lambda_tone: float = 0.0  # the weight of the tone term (loss.lambda_tone; 0 = off)
    tone_cells: int = 4  # its grid of regions per side (loss.tone_cells)

    def __init__(self, name: str, directions: Mapping[str, str], pools: Mapping[str, ImagePool]):
        super().__init__()
        self.name = name
        self.directions = dict(directions)
        self.pools = dict(pools)
        self.runners: dict[str, nn.Module] = {}

    @classmethod
    def build(cls, cfg: TrainConfig, channels: int, pools: Mapping[str, ImagePool]) -> Method:
        """The method for a run's typed config, its networks initialised (from the global RNG)."""
        raise NotImplementedError

    def networks(self) -> dict[str, nn.Module]:
        """Every network with weights, by the name a checkpoint stores it under."""
        raise NotImplementedError

    def arch(self) -> dict[str, Any]:
        """What a checkpoint records to rebuild the networks: plain values only; resuming
        refuses a checkpoint whose arch differs. Holds at least {"generator": ...}."""
        raise NotImplementedError

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """The parameters of each optimiser, by the name the phases use ("G", "D")."""
        raise NotImplementedError

    def phases(self, step: int) -> list[Phase]:
        """The phases of the step after `step` steps, in order (a critic-only step has no G)."""
        raise NotImplementedError

    def grids(self, real: Batch) -> dict[str, list[torch.Tensor]]:
        """Image grids for TensorBoard from fixed samples, run in eval mode without gradients.

        Returns:
            {grid name: rows}, each row (N, C, H, W) in [-1, 1]: e.g. {"A2B2A": [real_A,
            fake_B, rec_A]}.
        """
        raise NotImplementedError

    def translator(self, direction: str) -> nn.Module:
        """The network that translates `direction`."""
        return self.networks()[self.directions[direction]]

    def generator_names(self) -> list[str]:
        """The networks that make images (averaged with train.ema): those named G..."""
        return [name for name in self.networks() if name.startswith("G")]

    def mask_terms(self) -> Terms:
        """The change masks' size penalty over the generators' forward passes since the last call
        ({} without change masks; call `clear_masks` before those passes).

        Returns:
            {"mask": lambda_mask x the mean over images of |area - mask_area| (of the area
            itself without a mask_area) + lambda_mask_tv x the masks' total variation,
            "mask_size": the mean area, "mask_tv": the total variation (both detached, for
            the logs)}, where an image's area is the mean of its mask. Only "mask" belongs in
            the loss.
        """
        masks = [m.float() for net in self._masked() for m in net.take_masks()]
        if not masks:
            return {}
        area = torch.cat([m.mean((1, 2, 3)) for m in masks])  # each image's share redrawn
        if self.mask_area is None:
            penalty = area.mean()
        else:  # two-sided: a mask that shuts (the identity) costs as much as one that spreads
            penalty = (area - self.mask_area).abs().mean()
        # total variation: without it the area is met by a fine mesh of pixels, not a region
        tv = torch.stack([total_variation(m) for m in masks]).mean()
        return {
            "mask": penalty * self.lambda_mask + tv * self.lambda_mask_tv,
            "mask_size": area.mean().detach(),
            "mask_tv": tv.detach(),
        }

    def tone_terms(self, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> Terms:
        """The tone term over (input, translation) pairs: {"tone": lambda_tone x the mean over
        the pairs of `tone_distance`}, or {} with loss.lambda_tone = 0."""
        if not self.lambda_tone:
            return {}
        distances = [tone_distance(x, y, self.tone_cells) for x, y in pairs]
        return {"tone": torch.stack(distances).mean() * self.lambda_tone}

    def penalty_terms(
        self, pairs: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[torch.Tensor | float, Terms]:
        """The change masks' terms (`mask_terms`) and the tone term over (input, translation)
        `pairs` (`tone_terms`), and the sum of those that belong in the generators' loss."""
        terms = {**self.mask_terms(), **self.tone_terms(pairs)}
        return sum(terms[k] for k in ("mask", "tone") if k in terms), terms

    def clear_masks(self) -> None:
        """Forget the masks recorded so far (by passes that no penalty is computed for)."""
        for net in self._masked():
            net.take_masks()

    def mask_grids(self, real: Batch) -> dict[str, list[torch.Tensor]]:
        """For each direction whose generator draws a change mask: [inputs, masks (white =
        redrawn, black = the input's), outputs], each (N, C, H, W) in [-1, 1]."""
        out = {}
        for direction in self.directions:
            net, inputs = self.translator(direction), real[direction[0]]
            if not _has_mask(net):
                continue
            net.take_masks()
            net.record_masks = True
            try:
                outputs = net(inputs)
            finally:
                net.record_masks = False
            mask = net.take_masks()[-1].float() * 2 - 1
            out[direction] = [inputs, mask.expand_as(inputs), outputs]
        return out

    def _masked(self) -> list[ChangeMask]:
        nets = self.networks()
        return [n for n in (nets[k] for k in self.generator_names()) if _has_mask(n)]

    def wrap_runners(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """Replace each phase's single-call module by ``wrap(module)``.

        DistributedDataParallel needs each phase's trainable work in one module call per
        backward, and torch.compile works best on such a module: the loop wraps them here.
        """
        self.runners = {name: wrap(module) for name, module in self.runners.items()}


def total_variation(mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels of (N, 1, H, W) masks."""
    return (mask[..., 1:, :] - mask[..., :-1, :]).abs().mean() + (
        mask[..., :, 1:] - mask[..., :, :-1]
    ).abs().mean()


def _has_mask(net: nn.Module) -> bool:
    return isinstance(net, ChangeMask) and net.mask


def generator_arch(model: Any, channels: int) -> dict:
    """The generator architecture a checkpoint records, from the `model` config section."""
    arch = {k: v for k, v in to_plain(model).items() if k not in ("init_type", "init_gain")}
    arch.update(in_channels=channels, out_channels=channels)
    return arch


def discriminator_arch(disc: Any, channels: int) -> dict:
    """The discriminator architecture a checkpoint records, from the `discriminator` section."""
    arch = {k: v for k, v in to_plain(disc).items() if k not in ("init_type", "init_gain")}
    arch.update(in_channels=channels)
    return arch


def fuses(section: Any, fuse_passes: bool) -> bool:
    """Whether calls of a network on several inputs may be fused into one: batch norm mixes
    the samples of a batch, so only without it (and with train.fuse_passes)."""
    return fuse_passes and str(section.norm) != "batch"


def set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    """Switch the gradients of every parameter of `nets` on or off (a network that only
    scores in a phase gets none)."""
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


def run_both(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, fuse: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """net(x) and net(y); one call on the concatenated batch when `fuse` is set.

    Fusing is the same math only for networks that treat each sample on its own (instance
    norm or none, not batch norm); it halves the number of calls and gives the CPU and GPU
    larger, more efficient convolutions.
    """
    if not fuse:
        return net(x), net(y)
    return net(torch.cat([x, y])).split(x.shape[0])
