"""The base of every method's options (torch-free): what `method=NAME` means to the other
config groups and how the method checks its own values.

Each method keeps its schema next to its code, in `gantrans/methods/<name>_options.py`: a
dataclass deriving from `MethodConfig` that names its plug-in class. The registry
(gantrans.methods.registry) finds those modules by their name, so adding a method touches no
shared file (docs/adding-a-method.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from omegaconf import MISSING, DictConfig

from gantrans.errors import ConfigError


@dataclass
class MethodConfig:
    """A training method's options. Class attributes (not options) say what the method is and
    what the other groups mean to it.

    Attributes:
        summary: One line for `gantrans --help` and the lists of methods.
        order: Where it stands in those lists (lowest first; ties by name).
        plugin: "module:Class" of its gantrans.methods.base.Method subclass (imported only
            when a run builds it, so checking a config needs no torch).
        data: The training batches it needs: "unpaired" (a random A and a random B image per
            sample), "paired" (image i of A with its partner in B) or "single" (images of the
            one domain `dataset.domain`); gantrans.data.train_data builds each.
        directions: What a checkpoint of the method translates ("AtoB", "BtoA"); none for an
            unconditional method.
        shared_defaults: Values of other groups' options whose default depends on the method
            (null in their schemas), e.g. {"train.pool_size": 50}.
        not_applicable: Other groups' options the method refuses when they are set, with the
            reason, e.g. {"loss.lambda_cycle": "it has no cycle"}.
    """

    name: str = MISSING
    summary: ClassVar[str] = ""
    order: ClassVar[int] = 100
    plugin: ClassVar[str] = ""
    data: ClassVar[str] = "unpaired"
    directions: ClassVar[tuple[str, ...]] = ("AtoB", "BtoA")
    shared_defaults: ClassVar[dict[str, Any]] = {}
    not_applicable: ClassVar[dict[str, str]] = {}

    @classmethod
    def validate(cls, cfg: DictConfig) -> None:
        """The method's own checks of a composed `train` config (its `method` section and how
        it combines with the other groups); raises ConfigError with one line. The checks every
        method shares (not_applicable, the domains its data needs) run before it."""


def positive(value: Any, key: str) -> None:
    """Refuse a value <= 0 of option `key` (None passes: the default applies)."""
    if value is not None and value <= 0:
        raise ConfigError(f"{key} must be positive, got {value}")
