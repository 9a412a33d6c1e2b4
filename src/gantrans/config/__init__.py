"""The configuration: dataclass schemas for every config group, registered in Hydra's
ConfigStore, and the checks of a composed config.

Each YAML file under configs/ names one of these schemas first in its defaults list, so Hydra
checks keys and types while it composes: a misspelt key or a value of the wrong type stops the
run before any work is done. Checks that need more than one value (a crop larger than the load
size, say) live in `check_train_config` (gantrans.config.checks). The method group's schemas
live with each method (gantrans/methods/<name>_options.py) and are registered from
gantrans.methods.registry.

    choices.py   enums of fixed values and shared constants
    groups.py    dataset, model, discriminator and loss schemas
    commands.py  the primary config of each command (train, translate, serve, ...)
    checks.py    checks across values and the method checks every method shares
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from gantrans.config.checks import (
    check_known_keys,
    check_method,
    check_train_config,
    method_directions,
    method_schema,
)
from gantrans.config.choices import (
    AUGMENT_POLICIES,
    DCGAN_SIZES,
    NO_DATASET_RECIPES,
    Choice,
    Direction,
    GanMode,
    InitType,
    NonFinite,
    Norm,
    PaddingType,
    Precision,
    Upsample,
)
from gantrans.config.commands import (
    DownloadConfig,
    EvaluateConfig,
    ExportConfig,
    SampleConfig,
    ServeConfig,
    TrainConfig,
    TrainLoopConfig,
    TranslateConfig,
)
from gantrans.config.groups import (
    AlignedDatasetConfig,
    CelebADatasetConfig,
    DatasetConfig,
    DCGANDiscriminatorConfig,
    DCGANGeneratorConfig,
    DiscriminatorConfig,
    FolderDatasetConfig,
    GeneratorConfig,
    LossConfig,
    PatchGANConfig,
    PixelDiscriminatorConfig,
    ResnetGeneratorConfig,
    ShapesDatasetConfig,
    ShapesPairedDatasetConfig,
    SmilesDatasetConfig,
    UnetGeneratorConfig,
    image_size,
)
from gantrans.methods import registry
from gantrans.methods.options import MethodConfig

GROUP_SCHEMAS: dict[str, dict[str, type]] = {
    "dataset": {
        "shapes": ShapesDatasetConfig,
        "folder": FolderDatasetConfig,
        "aligned": AlignedDatasetConfig,
        "shapes_paired": ShapesPairedDatasetConfig,
        "smiles": SmilesDatasetConfig,
        "celeba": CelebADatasetConfig,
    },
    "model": {
        "resnet": ResnetGeneratorConfig,
        "unet": UnetGeneratorConfig,
        "dcgan": DCGANGeneratorConfig,
    },
    "discriminator": {
        "patchgan": PatchGANConfig,
        "pixel": PixelDiscriminatorConfig,
        "dcgan": DCGANDiscriminatorConfig,
    },
    "loss": {"loss": LossConfig},
}
"""The schema of each group's configs, stored as `<name>_schema` (the method group's come
from the registry)."""

COMMAND_SCHEMAS: dict[str, type] = {
    "train_schema": TrainConfig,
    "translate_schema": TranslateConfig,
    "download_schema": DownloadConfig,
    "export_schema": ExportConfig,
    "serve_schema": ServeConfig,
    "sample_schema": SampleConfig,
}


def register_configs() -> None:
    """Register every schema in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    for name, node in COMMAND_SCHEMAS.items():
        cs.store(name=name, node=node)
    evaluate = OmegaConf.structured(EvaluateConfig)
    OmegaConf.set_struct(evaluate.dataset, False)  # dataset.KEY=VALUE needs no '+'
    cs.store(name="evaluate_schema", node=evaluate)
    for group, schemas in GROUP_SCHEMAS.items():
        for name, node in schemas.items():
            cs.store(group=group, name=f"{name}_schema", node=node)
    for name, node in registry.schemas().items():
        cs.store(group="method", name=f"{name}_schema", node=node)


def to_plain(cfg: DictConfig | Any) -> Any:
    """A resolved config (a DictConfig or a schema dataclass instance) as plain Python
    containers, enums as their string values: what a checkpoint or config.yaml can hold."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        cfg = OmegaConf.structured(cfg)
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True, throw_on_missing=True)
    return cfg


def apply_method_defaults(cfg: DictConfig) -> None:
    """Fill the options left null whose default depends on the method (`shared_defaults`)."""
    for key, value in method_schema(cfg).shared_defaults.items():
        if OmegaConf.select(cfg, key) is None:
            OmegaConf.update(cfg, key, value)


def prepare_train_config(cfg: DictConfig) -> TrainConfig:
    """Check a composed `train` config, fill the method-dependent defaults (in `cfg` too, so
    what is recorded shows the values used) and return it as typed schema objects."""
    check_train_config(cfg)
    apply_method_defaults(cfg)
    return OmegaConf.to_object(cfg)


def compose_config(command: str, overrides: Sequence[str] = ()) -> DictConfig:
    """The config `gantrans COMMAND OVERRIDES` composes (for scripts and tests), unchecked."""
    from hydra import compose, initialize_config_module

    register_configs()
    with initialize_config_module("gantrans.configs", version_base="1.3"):
        return compose(command, overrides=list(overrides))


def compose_train_config(overrides: Sequence[str] = ()) -> TrainConfig:
    """The typed config `gantrans train OVERRIDES` would run with (for scripts and tests)."""
    return prepare_train_config(compose_config("train", overrides))


__all__ = [
    "AUGMENT_POLICIES",
    "COMMAND_SCHEMAS",
    "DCGAN_SIZES",
    "GROUP_SCHEMAS",
    "NO_DATASET_RECIPES",
    "AlignedDatasetConfig",
    "CelebADatasetConfig",
    "Choice",
    "DCGANDiscriminatorConfig",
    "DCGANGeneratorConfig",
    "DatasetConfig",
    "Direction",
    "DiscriminatorConfig",
    "DownloadConfig",
    "EvaluateConfig",
    "ExportConfig",
    "FolderDatasetConfig",
    "GanMode",
    "GeneratorConfig",
    "InitType",
    "LossConfig",
    "MethodConfig",
    "NonFinite",
    "Norm",
    "PaddingType",
    "PatchGANConfig",
    "PixelDiscriminatorConfig",
    "Precision",
    "ResnetGeneratorConfig",
    "SampleConfig",
    "ServeConfig",
    "ShapesDatasetConfig",
    "ShapesPairedDatasetConfig",
    "SmilesDatasetConfig",
    "TrainConfig",
    "TrainLoopConfig",
    "TranslateConfig",
    "Upsample",
    "UnetGeneratorConfig",
    "apply_method_defaults",
    "check_known_keys",
    "check_method",
    "check_train_config",
    "compose_config",
    "compose_train_config",
    "image_size",
    "method_directions",
    "method_schema",
    "prepare_train_config",
    "register_configs",
    "to_plain",
]
