"""CUT and FastCUT (Park et al. 2020): one generator kept faithful by PatchNCE, and its plug-in.

G translates A -> B and a discriminator D judges domain B; there is no second generator and
no cycle. Content is kept by PatchNCE: G's own encoder sees the input A and the translation
G(A); at `num_patches` random places per layer, a small MLP head F projects both feature
vectors, and each patch of G(A) must pick the patch of A at the same place among the image's
other patches (temperature nce_T). CUT also asks G(B) to keep B this way (nce_idt); FastCUT
drops that, weighs PatchNCE 10x and flips the input half the time, the features having to flip
with it (flip equivariance).

Layers (`nce_layers`). The paper compares the layers 0, 4, 8, 12, 16 of its ResNet, whose
downsamplings are anti-aliased (four modules each): the padded input, the two downsampling
convolutions, and the outputs of the first and fifth residual blocks. In this project's ResNet
(the CycleGAN layout, three modules per downsampling) the same features are the layers
0, 4, 7, 10 and 14 (`model.N`); with fewer than five residual blocks the last one stands in for
the fifth. For the U-Net, a layer is a level of its encoder: 0 the input, k the output of the
k-th downsampling convolution; the default 0-4 takes the input and four scales, as the paper's
layers do. The heads are built from the generator's architecture when the method is, so
checkpoints, optimiser state, resume and DDP hold them from the first step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gantrans.errors import ConfigError
from gantrans.methods.base import (
    Batch,
    Method,
    Phase,
    Terms,
    discriminator_arch,
    fuses,
    generator_arch,
    run_both,
    set_requires_grad,
)
from gantrans.methods.image_pool import ImagePool
from gantrans.methods.losses import (
    AdversarialLoss,
    discriminator_terms,
    gradient_penalty,
    patch_nce,
)
from gantrans.models import build_discriminator, build_generator, init_weights

if TYPE_CHECKING:
    from gantrans.config import TrainConfig


def paper_nce_layers(gen_arch: Mapping[str, Any]) -> list[int]:
    """The PatchNCE layers of the paper for a generator architecture (see the module docstring).

    Args:
        gen_arch: A generator architecture (as for `gantrans.models.build_generator`).

    Returns:
        Indices into the ResNet's ``model`` layers, or U-Net encoder levels.
    """
    if gen_arch["name"] == "resnet":
        n_blocks = int(gen_arch["n_blocks"])
        blocks = [10, 10 + min(4, n_blocks - 1)] if n_blocks else []
        return sorted({0, 4, 7, *blocks})
    return [0, 1, 2, 3, 4]


class PatchSampler(nn.Module):
    """The projection heads F: feature vectors at sampled places, through a 2-layer MLP each.

    One head per layer: Linear(C_l, units), ReLU, Linear(units, units), then L2 normalisation,
    as the paper's PatchSampleF (mlp_sample).
    """

    def __init__(self, channels: Sequence[int], units: int = 256) -> None:
        super().__init__()
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(c, units), nn.ReLU(), nn.Linear(units, units)) for c in channels
        )

    def forward(
        self,
        feats: Sequence[torch.Tensor],
        num_patches: int,
        patch_ids: Sequence[torch.Tensor] | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Sample and project each layer's features.

        Args:
            feats: One (N, C_l, H_l, W_l) feature map per layer.
            num_patches: Places per layer (all of them if the map is smaller), the same for
                every image of the batch, drawn without replacement from the global RNG.
            patch_ids: The places to take (the keys' ids, for the queries); None draws them.

        Returns:
            ([(N * P_l, units) L2-normalised vectors, fp32; row n * P_l + p is place p of
            image n], [(P_l,) the flat indices of the places]).
        """
        out, ids = [], []
        for i, (feat, mlp) in enumerate(zip(feats, self.mlps, strict=True)):
            flat = feat.permute(0, 2, 3, 1).flatten(1, 2)  # (N, H * W, C)
            if patch_ids is None:
                places = flat.shape[1]
                index = torch.randperm(places)[: min(num_patches, places)].to(feat.device)
            else:
                index = patch_ids[i]
            x = mlp(flat[:, index].flatten(0, 1)).float()  # (N * P, units)
            out.append(x / (x.norm(dim=1, keepdim=True) + 1e-7))
            ids.append(index)
        return out, ids


class CUTGenerator(nn.Module):
    """Everything the generator phase trains, as one call (what DDP wraps): the translations
    and the PatchNCE terms through G's encoder and the heads F.

    Returns (fake_B, idt_B, nce, nce_idt): idt_B = G(B) and nce_idt only with `nce_idt`; the
    two PatchNCE terms (unweighted means over layers and patches) only with `nce`.
    """

    def __init__(
        self,
        G: nn.Module,
        F: PatchSampler | None,
        layers: Sequence[int],
        num_patches: int,
        temperature: float,
        nce_idt: bool,
        fuse: bool,
    ) -> None:
        super().__init__()
        self.G, self.F = G, F  # references: the method owns them
        self.layers, self.num_patches, self.temperature = list(layers), num_patches, temperature
        self.nce_idt, self.fuse = nce_idt, fuse
        # the translation pass gives the inputs' features too when they are the same values as
        # a separate encoding: per-sample norms (fused), no dropout (and no flip, per step); a
        # generator whose forward is more than its layers in a row (input_skip) encodes apart
        self.keys_from_translation = (
            fuse
            and hasattr(G, "translate_and_encode")
            and not getattr(G, "input_skip", False)
            and not any(isinstance(m, nn.Dropout) for m in G.modules())
        )

    def forward(self, real_A: torch.Tensor, real_B: torch.Tensor, flip: bool = False) -> tuple:
        n = real_A.shape[0]
        # G(A) and G(B) in one call, flipped together (as the paper's code does, batch norm too)
        real = torch.cat([real_A, real_B]) if self.nce_idt else real_A
        keys = None
        if self.F is not None and self.keys_from_translation and not flip:
            # the translation's own encoder features are the keys: one encoder pass fewer
            fake, feats = self.G.translate_and_encode(real, self.layers)
            keys = self._split([f.detach() for f in feats], n)
        else:
            fake = self.G(real.flip(3) if flip else real)
        fake_B, idt_B = fake[:n], (fake[n:] if self.nce_idt else None)
        if self.F is None:
            return fake_B, idt_B, None, None
        pairs = [(real_A, fake_B)] + ([(real_B, idt_B)] if self.nce_idt else [])
        terms = self._nce(pairs, flip, keys)
        return fake_B, idt_B, terms[0], (terms[1] if self.nce_idt else None)

    def _nce(
        self,
        pairs: list[tuple[torch.Tensor, torch.Tensor]],
        flip: bool,
        keys: list[list[torch.Tensor]] | None = None,
    ) -> list:
        """PatchNCE(translation, input) for each (input, translation) pair; `keys`: the inputs'
        features if already known."""
        # No gradient flows through the keys (the paper detaches them in the loss), so they are
        # computed without a graph: the same gradients, and backward skips their half.
        n = pairs[0][0].shape[0]
        if self.fuse:  # one encoder call for the queries, one for the keys: per-sample norms
            queries = self._split(self.G.encode(torch.cat([q for _, q in pairs]), self.layers), n)
            if keys is None:
                with torch.no_grad():
                    inputs = torch.cat([k for k, _ in pairs])
                    keys = self._split(self.G.encode(inputs, self.layers), n)
        else:  # the paper's calls: the translation's features, then the input's
            queries, keys = [], []
            for key, query in pairs:
                queries.append(self.G.encode(query, self.layers))
                with torch.no_grad():
                    keys.append(self.G.encode(key, self.layers))
        losses = []
        for q_feats, k_feats in zip(queries, keys, strict=True):
            if flip:  # G saw the flipped input: flip its features back to the input's places
                q_feats = [f.flip(3) for f in q_feats]
            with torch.no_grad():
                k_pool, ids = self.F(k_feats, self.num_patches)
            q_pool, _ = self.F(q_feats, self.num_patches, ids)
            per_layer = [
                patch_nce(q, k, n, self.temperature).mean()
                for q, k in zip(q_pool, k_pool, strict=True)
            ]
            losses.append(sum(per_layer) / len(per_layer))
        return losses

    @staticmethod
    def _split(feats: list[torch.Tensor], n: int) -> list[list[torch.Tensor]]:
        """Per-layer features of k stacked batches of n -> k lists of per-layer features."""
        chunks = [f.split(n) for f in feats]
        return [list(per_layer) for per_layer in zip(*chunks, strict=True)]


class DiscriminatorScores(nn.Module):
    """One discriminator's scores of real and fake images (and the WGAN-GP penalty), one call.

    Returns (D(real), D(fake), penalty or None).
    """

    def __init__(self, D: nn.Module, penalty: bool, fuse: bool) -> None:
        super().__init__()
        self.D, self.penalty, self.fuse = D, penalty, fuse

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> tuple:
        real_score, fake_score = run_both(self.D, real, fake, self.fuse)
        gp = gradient_penalty(self.D, real, fake) if self.penalty else None
        return real_score, fake_score, gp


class CUT(Method):
    """`method=cut` and `method=fastcut` for the training loop.

    A step runs, in the paper's order, G's forward (translations and PatchNCE features), the
    discriminator's update on real B against G(A) (detached), then the generator's update on
    lambda_GAN * adversarial + lambda_NCE * PatchNCE (averaged with the identity PatchNCE when
    nce_idt), with D frozen. With loss.critic_steps = k only every k-th step updates G.
    """

    pooled = ("B",)  # train.pool_size > 0 puts a buffer between G(A) and D (0 in the paper)
    discriminator_terms = ("D",)
    adversarial_terms = ("G_GAN",)
    progress_terms = ("G", "D", "NCE")
    real_domains = {"D": "B"}

    def __init__(
        self,
        name: str,
        archs: tuple[dict, dict],
        G: nn.Module,
        D: nn.Module,
        F: PatchSampler,
        layers: Sequence[int],
        options: Any,
        loss: Any,
        pools: Mapping[str, ImagePool],
        fuse_generator: bool = True,
        fuse_discriminator: bool = True,
    ) -> None:
        super().__init__(name, {"AtoB": "G"}, pools)
        self.gen_arch, self.disc_arch = dict(archs[0]), dict(archs[1])
        self.G, self.D, self.F = G, D, F
        self.layers = list(layers)
        self.gan_mode = str(loss.name)
        self.adv = AdversarialLoss(self.gan_mode)
        self.lambda_gp, self.critic_steps = loss.lambda_gp, loss.critic_steps
        self.lambda_GAN, self.lambda_NCE = options.lambda_GAN, options.lambda_NCE
        self.nce_idt, self.flip = options.nce_idt, options.flip_equivariance
        self.head_units = options.head_units
        self.runners = {
            "G": CUTGenerator(
                G, F if self.lambda_NCE > 0 else None, self.layers, options.num_patches,
                options.nce_T, self.nce_idt, fuse_generator,
            ),
            "D": DiscriminatorScores(D, self.gan_mode == "wgangp", fuse_discriminator),
        }  # fmt: skip

    @classmethod
    def build(cls, cfg: TrainConfig, channels: int, pools: Mapping[str, ImagePool]) -> CUT:
        model, disc, options = cfg.model, cfg.discriminator, cfg.method
        gen_arch = generator_arch(model, channels)
        disc_arch = discriminator_arch(disc, channels)
        G, D = build_generator(gen_arch), build_discriminator(disc_arch)
        layers = paper_nce_layers(gen_arch) if options.nce_layers is None else options.nce_layers
        if max(layers) >= G.encoder_layers:
            what = "layer (model.N)" if gen_arch["name"] == "resnet" else "level"
            raise ConfigError(
                f"method.nce_layers={list(layers)}: this generator's encoder has {what} 0 to "
                f"{G.encoder_layers - 1}; pick layers in that range, or null for the paper's"
            )
        F = PatchSampler(G.encoder_channels(layers), options.head_units)
        init_weights(G, str(model.init_type), model.init_gain)
        init_weights(F, str(model.init_type), model.init_gain)  # the heads: like the generator
        init_weights(D, str(disc.init_type), disc.init_gain)
        return cls(
            str(options.name), (gen_arch, disc_arch), G, D, F, layers, options, cfg.loss, pools,
            fuse_generator=fuses(model, cfg.train.fuse_passes),
            fuse_discriminator=fuses(disc, cfg.train.fuse_passes),
        )  # fmt: skip

    def networks(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D, "F": self.F}

    def arch(self) -> dict[str, Any]:
        return {
            "generator": dict(self.gen_arch),
            "discriminator": dict(self.disc_arch),
            "heads": {"layers": self.layers, "units": self.head_units},
        }

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        heads = list(self.F.parameters()) if self.lambda_NCE > 0 else []  # untrained without NCE
        return {"G": [*self.G.parameters(), *heads], "D": list(self.D.parameters())}

    def phases(self, step: int) -> list[Phase]:
        update_g = step % self.critic_steps == 0
        d_phase = Phase("D", partial(self._discriminator_loss, with_generator=update_g))
        return [d_phase, Phase("G", self._generator_loss)] if update_g else [d_phase]

    def _discriminator_loss(
        self, batch: Batch, cache: dict, with_generator: bool
    ) -> tuple[torch.Tensor, Terms]:
        """D on real B versus G(A); G's forward runs here, once, for both phases."""
        real_A, real_B = batch["A"], batch["B"]
        if with_generator:
            flip = self.flip and bool(torch.rand(()) < 0.5)
            self.clear_masks()
            cache["G"] = self.runners["G"](real_A, real_B, flip)
            fake_B = cache["G"][0].detach()
        else:  # critic-only step: fresh fakes, no graph
            with torch.no_grad():
                fake_B = self.G(real_A)
        real_score, fake_score, gp = self.runners["D"](real_B, self.pools["B"].query(fake_B))
        return discriminator_terms(
            self.adv, self.gan_mode, self.lambda_gp, real_score, fake_score, gp
        )

    def _generator_loss(self, batch: Batch, cache: dict) -> tuple[torch.Tensor, Terms]:
        """lambda_GAN * GAN(D(G(A))) + lambda_NCE * PatchNCE, with D frozen."""
        fake_B, _, nce, nce_idt = cache["G"]
        terms: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=fake_B.device)
        if self.lambda_GAN > 0:
            set_requires_grad([self.D], False)  # D only scores here: no gradients for it
            try:
                terms["G_GAN"] = self.adv(self.D(fake_B), True) * self.lambda_GAN
            finally:
                set_requires_grad([self.D], True)
            total = total + terms["G_GAN"]
        if nce is not None:
            terms["NCE"] = nce * self.lambda_NCE  # PatchNCE(G(A), A)
            both = terms["NCE"]
            if nce_idt is not None:
                terms["NCE_Y"] = nce_idt * self.lambda_NCE  # PatchNCE(G(B), B)
                both = 0.5 * (terms["NCE"] + terms["NCE_Y"])
            total = total + both
        penalty, extra = self.penalty_terms([(batch["A"], fake_B)])
        terms.update(extra)
        total = total + penalty
        terms["G"] = total
        return total, {k: v.detach() for k, v in terms.items()}

    def grids(self, real: Batch) -> dict[str, list[torch.Tensor]]:
        out = {"A2B": [real["A"], self.G(real["A"])]}  # inputs, translations
        if self.nce_idt:
            out["B2B"] = [real["B"], self.G(real["B"])]  # inputs from B, the identity output
        return out
