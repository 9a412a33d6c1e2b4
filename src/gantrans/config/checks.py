"""Checks of a composed `train` config across values, which the schemas cannot express: each
raises ConfigError with one line that says what to change."""

from __future__ import annotations

import dataclasses

from omegaconf import DictConfig, OmegaConf

from gantrans.config.choices import AUGMENT_POLICIES
from gantrans.config.groups import image_size
from gantrans.errors import ConfigError
from gantrans.evaluation.names import LOWER_IS_BETTER, metric_available
from gantrans.methods import registry
from gantrans.methods.options import MethodConfig, positive


def method_schema(cfg: DictConfig) -> type[MethodConfig]:
    """The options schema of the composed config's method section."""
    schema = OmegaConf.get_type(cfg.method)
    if not (isinstance(schema, type) and issubclass(schema, MethodConfig)):
        raise ConfigError(
            f"method={cfg.method.get('name')} has no method schema: its config file must start "
            "its defaults list with NAME_schema, one of "
            + ", ".join(f"{n}_schema" for n in registry.names())
        )
    return schema


def method_directions(cfg: DictConfig) -> tuple[str, ...]:
    """What a checkpoint of the composed config's method translates (pix2pix: the configured
    method.direction; the others: their schema's `directions`)."""
    if "direction" in cfg.method:
        return (str(cfg.method.direction),)
    return method_schema(cfg).directions


def check_method(cfg: DictConfig) -> None:
    """What every method is checked for (the options it refuses, the domains its data needs,
    the metric it can be scored by), then the method's own `validate`."""
    schema, name = method_schema(cfg), cfg.method.name
    for key, reason in schema.not_applicable.items():
        if OmegaConf.select(cfg, key) is not None:
            raise ConfigError(f"{key} does not apply to method={name} ({reason}): remove it")
    if schema.data == "single":
        domain = cfg.dataset.get("domain")
        if domain is not None and domain not in ("A", "B"):
            raise ConfigError(f"dataset.domain={domain} is not a domain: choose A or B")
    else:
        check_two_domains(cfg)
    schema.validate(cfg)
    t, directions = cfg.train, method_directions(cfg)
    if t.eval_every and not metric_available(t.eval_metric, directions):
        raise ConfigError(
            f"train.eval_metric={t.eval_metric} is not measured for method={name}, which "
            f"translates {' and '.join(directions)} only: choose a metric of that direction"
        )


def check_two_domains(cfg: DictConfig) -> None:
    """A method that translates between two domains against the one-domain options."""
    name, domain = cfg.method.name, cfg.dataset.get("domain")
    single = [f"method={n}" for n, s in registry.schemas().items() if s.data == "single"]
    if domain is not None:
        raise ConfigError(
            f"dataset.domain={domain} applies to {' and '.join(single)} only (method={name} "
            "trains on both domains): remove it"
        )
    if cfg.discriminator.name == "dcgan":
        raise ConfigError(
            f"discriminator=dcgan scores whole images of model.image_size for method=dcgan: "
            f"pick patchgan or pixel for method={name}"
        )
    if cfg.model.name == "dcgan":
        raise ConfigError(
            f"model=dcgan generates images from noise and cannot translate: use it with "
            f"method=dcgan, or pick a translation generator for method={name} "
            "(resnet6, resnet9, unet128, unet256)"
        )


def check_known_keys(cfg: DictConfig, prefix: str = "") -> None:
    """Refuse keys that a section's schema does not define (Hydra lets `+key=value` add them)."""
    schema = OmegaConf.get_type(cfg)
    if dataclasses.is_dataclass(schema):
        known = {f.name for f in dataclasses.fields(schema)}
        for key in cfg.keys():
            if key not in known:
                raise ConfigError(
                    f"{prefix}{key} is not an option of {schema.__name__}; "
                    f"known keys: {', '.join(sorted(known))}"
                )
    for key in cfg.keys():
        node = cfg._get_node(key)
        if isinstance(node, DictConfig):
            check_known_keys(node, f"{prefix}{key}.")


def check_train_config(cfg: DictConfig) -> None:
    """Checks across values that the schemas cannot express; raises ConfigError (one line)."""
    check_known_keys(cfg)
    t = cfg.train
    for key in ("batch_size", "log_every", "image_every", "checkpoint_every", "num_samples"):
        positive(t[key], f"train.{key}")
    positive(t.max_steps, "train.max_steps")
    positive(t.lr, "train.lr")
    if t.n_epochs < 0 or t.n_epochs_decay < 0 or t.n_epochs + t.n_epochs_decay == 0:
        raise ConfigError(
            "train.n_epochs and train.n_epochs_decay must be >= 0 and not both 0 "
            f"(got {t.n_epochs} and {t.n_epochs_decay})"
        )
    if t.eval_every < 0:
        raise ConfigError(f"train.eval_every must be >= 0 (0 = off), got {t.eval_every}")
    if t.eval_every:
        if t.eval_metric not in LOWER_IS_BETTER:
            raise ConfigError(
                f"train.eval_metric={t.eval_metric} is not a metric: choose one of "
                f"{', '.join(sorted(LOWER_IS_BETTER))}"
            )
        if t.eval_metric.startswith("c2st") and not t.eval_c2st:
            raise ConfigError(f"train.eval_metric={t.eval_metric} needs train.eval_c2st=true")
    if not 0 < t.rollback_lr_factor <= 1 or t.max_rollbacks < 0:
        raise ConfigError("train.rollback_lr_factor must be in (0, 1] and train.max_rollbacks >= 0")
    if t.num_workers < 0 or (t.pool_size is not None and t.pool_size < 0):
        raise ConfigError("train.num_workers and train.pool_size must be >= 0")
    if cfg.dataset.channels not in (1, 3):
        raise ConfigError(f"dataset.channels must be 1 or 3, got {cfg.dataset.channels}")
    if "crop_size" in cfg.dataset and "load_size" in cfg.dataset:
        if cfg.dataset.crop_size > cfg.dataset.load_size and cfg.dataset.get("preprocess") not in (
            "crop",
            "none",
        ):
            raise ConfigError(
                f"dataset.crop_size={cfg.dataset.crop_size} is larger than "
                f"dataset.load_size={cfg.dataset.load_size}: set crop_size <= load_size"
            )
    for key in ("ngf",):
        positive(cfg.model[key], f"model.{key}")
    positive(cfg.discriminator.ndf, "discriminator.ndf")
    if cfg.model.name == "resnet" and cfg.model.n_blocks < 0:
        raise ConfigError(f"model.n_blocks must be >= 0, got {cfg.model.n_blocks}")
    if cfg.model.name == "unet" and cfg.model.num_downs < 5:
        raise ConfigError(f"model.num_downs must be at least 5, got {cfg.model.num_downs}")
    if cfg.discriminator.name == "patchgan" and cfg.discriminator.n_layers < 1:
        raise ConfigError(f"discriminator.n_layers must be >= 1, got {cfg.discriminator.n_layers}")
    if cfg.loss.critic_steps < 1:
        raise ConfigError(f"loss.critic_steps must be >= 1, got {cfg.loss.critic_steps}")
    _check_quality_options(cfg)
    for key in ("lambda_cycle", "lambda_identity", "lambda_gp"):
        if cfg.loss[key] is not None and cfg.loss[key] < 0:
            raise ConfigError(f"loss.{key} must be >= 0, got {cfg.loss[key]}")
    check_method(cfg)
    size = image_size(cfg.dataset)
    if cfg.model.name == "unet" and size % (2**cfg.model.num_downs):
        raise ConfigError(
            f"model=unet with num_downs={cfg.model.num_downs} needs images whose side is a multiple "
            f"of {2**cfg.model.num_downs}, but the dataset gives {size}: pick unet128 for 128 px, "
            "unet256 for 256 px, or change the crop size"
        )


def _check_quality_options(cfg: DictConfig) -> None:
    """The change mask, R1, spectral norm, DiffAugment and EMA options."""
    loss, t = cfg.loss, cfg.train
    for key in ("lambda_mask", "lambda_mask_tv", "r1_gamma", "lambda_tone"):
        if loss[key] is not None and loss[key] < 0:
            raise ConfigError(f"loss.{key} must be >= 0, got {loss[key]}")
    side = image_size(cfg.dataset)
    if not 1 <= loss.tone_cells <= side:
        raise ConfigError(
            f"loss.tone_cells must be between 1 and the image side ({side}), got {loss.tone_cells}"
        )
    if loss.r1_every < 1:
        raise ConfigError(f"loss.r1_every must be >= 1, got {loss.r1_every}")
    if loss.mask_area is not None and not 0 <= loss.mask_area <= 1:
        raise ConfigError(f"loss.mask_area must be in [0, 1] or null, got {loss.mask_area}")
    if not 0 <= t.ema < 1:
        raise ConfigError(f"train.ema must be in [0, 1) (0 = off, e.g. 0.999), got {t.ema}")
    policy = cfg.discriminator.get("augment")
    names = [p.strip() for p in str(policy or "").replace("+", ",").split(",") if p.strip()]
    unknown = [n for n in names if n not in AUGMENT_POLICIES]
    if unknown:
        raise ConfigError(
            f"discriminator.augment={policy}: {', '.join(unknown)} is not an augmentation; "
            f"use some of {', '.join(AUGMENT_POLICIES)} joined by +, e.g. color+translation+cutout"
        )
