"""Weight initialization for the CycleGAN networks (the reference implementation's scheme)."""

from __future__ import annotations

from torch import nn
from torch.nn import init
from torch.nn.utils import parametrize

from gantrans.models.layers import ChangeMask

INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")

_WEIGHTED = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Linear,
)


def init_weights(net: nn.Module, init_type: str = "normal", gain: float = 0.02) -> None:
    """Initialize ``net``'s parameters in place.

    Conv / ConvTranspose / Linear weights:
        * ``"normal"``: w ~ N(0, gain^2) (CycleGAN paper: "Gaussian N(0, 0.02)").
        * ``"xavier"``: Glorot normal scaled by ``gain``.
        * ``"kaiming"``: He normal, fan_in, a=0 (``gain`` is ignored, as in the reference).
        * ``"orthogonal"``: orthogonal matrix scaled by ``gain``.

    Their biases are set to 0. BatchNorm weights ~ N(1, gain^2) and biases 0. InstanceNorm here
    has no parameters; other modules are left untouched. Then a change mask's logit gets its
    starting bias and a ResNet generator's input skip gets a positive gain
    (``ResnetGenerator.init_input_skip``).

    Args:
        net: The network to initialize.
        init_type: One of ``"normal"``, ``"xavier"``, ``"kaiming"``, ``"orthogonal"``.
        gain: Standard deviation (normal) or scale factor (xavier, orthogonal).

    Raises:
        ValueError: If ``init_type`` is unknown.
    """
    if init_type not in INIT_TYPES:
        raise ValueError(
            f"unknown init_type {init_type!r}; expected one of {', '.join(INIT_TYPES)}"
        )

    def init_module(m: nn.Module) -> None:
        if isinstance(m, _WEIGHTED):
            # a parametrised weight (spectral norm) is computed: initialise what it is made from
            weight = (
                m.parametrizations.weight.original
                if parametrize.is_parametrized(m, "weight")
                else m.weight
            )
            if init_type == "normal":
                init.normal_(weight, 0.0, gain)
            elif init_type == "xavier":
                init.xavier_normal_(weight, gain=gain)
            elif init_type == "kaiming":
                init.kaiming_normal_(weight, a=0, mode="fan_in")
            else:  # "orthogonal"
                init.orthogonal_(weight, gain=gain)
            if m.bias is not None:
                init.constant_(m.bias, 0.0)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            init.normal_(m.weight, 1.0, gain)
            init.constant_(m.bias, 0.0)

    net.apply(init_module)
    if isinstance(net, ChangeMask):
        net.init_mask()
    init_skip = getattr(net, "init_input_skip", None)
    if callable(init_skip):  # a ResNet generator's input skip: positive gain
        init_skip()
