"""`gantrans evaluate`: score translations (a checkpoint's, or a folder's) on held-out test images."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from gantrans import __version__, checkpoint
from gantrans.applying.loader import generator_of
from gantrans.config import check_known_keys, to_plain
from gantrans.data import DataError, build_domains, list_images, open_image, pil_to_tensor
from gantrans.errors import ConfigError
from gantrans.evaluation.evaluator import (
    LABEL,
    MIN_TEST_IMAGES,
    Evaluator,
    EvaluatorOptions,
    checks,
    domains_of,
)
from gantrans.evaluation.images import spaced
from gantrans.evaluation.names import LOWER_IS_BETTER, NEEDS_GENERATOR, NEEDS_PAIRS
from gantrans.runtime import resolve_device

log = logging.getLogger("gantrans")


def resolve_dataset(recorded: Mapping[str, Any] | None, cfg: DictConfig) -> dict[str, Any]:
    """The dataset config to evaluate on: the checkpoint's, changed by the command line.

    `dataset=NAME` (a whole config of the dataset group) replaces the recorded one; plain
    `dataset.KEY=VALUE` overrides change keys of the recorded one.
    """
    node = cfg.dataset
    if dataclasses.is_dataclass(OmegaConf.get_type(node)):  # dataset=NAME picked a group option
        check_known_keys(node, "dataset.")
        return to_plain(node)
    override = to_plain(node) or {}
    if not recorded:
        raise ConfigError(
            "no dataset is known: pass dataset=NAME (shapes, smiles, folder dataset.root=DIR, ...)"
        )
    unknown = sorted(set(override) - set(recorded))
    if unknown:
        raise ConfigError(
            f"dataset.{unknown[0]} is not a key of the checkpoint's dataset "
            f"({recorded.get('name')}); known keys: {', '.join(sorted(recorded))}"
        )
    return {**recorded, **override}


def _evaluator(cfg: DictConfig, dataset: dict, channels: int, device: torch.device) -> Evaluator:
    return Evaluator(dataset, channels, device, EvaluatorOptions.from_config(cfg))


def _check_command(cfg: DictConfig) -> None:
    check_known_keys(cfg)
    if cfg.num_samples < 1:
        raise ConfigError(f"num_samples must be positive, got {cfg.num_samples}")
    EvaluatorOptions.from_config(cfg)  # one line for a bad option, before any slow work
    if cfg.direction is not None:
        domains_of(cfg.direction)


def evaluate_checkpoint(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate `cfg.ckpt` as `gantrans evaluate ckpt=...` does and write the reports.

    Every direction the checkpoint translates is scored (a CUT checkpoint: AtoB only); with two,
    each also gets its reconstructions. `direction=` keeps one. A DCGAN checkpoint's samples
    are scored against real images instead (gantrans.evaluation.samples).
    """
    _check_command(cfg)
    device = resolve_device(cfg.device)
    ckpt_path = Path(cfg.ckpt)
    ckpt = checkpoint.load_checkpoint(ckpt_path)
    if checkpoint.generates(ckpt):  # DCGAN: its samples against real images of its domain
        from gantrans.evaluation.samples import evaluate_samples

        dataset = resolve_dataset(checkpoint.recorded_config(ckpt).get("dataset"), cfg)
        return evaluate_samples(cfg, ckpt_path, dataset)
    available = checkpoint.directions(ckpt)
    if cfg.direction and cfg.direction not in available:
        checkpoint.generator_weights(ckpt, cfg.direction, ckpt_path)  # raises its one line
    channels = checkpoint.channels(ckpt)
    dataset = resolve_dataset(checkpoint.recorded_config(ckpt).get("dataset"), cfg)
    dataset["channels"] = channels
    out_dir = Path(cfg.output_dir) if cfg.output_dir else checkpoint.run_dir_of(ckpt_path) / "eval"
    wanted = [cfg.direction] if cfg.direction else available
    # every generator whatever is asked: the reverse one gives the reconstructions
    generators = {d: generator_of(ckpt, d, ckpt_path)[0].to(device) for d in available}
    check_inputs(dataset, channels, out_dir)
    evaluator = _evaluator(cfg, dataset, channels, device)
    scores, images = evaluator.run(generators)
    if cfg.direction:
        keep = _suffixes(cfg.direction)
        scores = {k: v for k, v in scores.items() if k.rsplit("_", 1)[1] in keep}
        images = {d: v for d, v in images.items() if d in wanted}
    not_computed = {}
    if len(available) == 1:
        (direction,) = available
        src, _ = domains_of(direction)
        for name in NEEDS_GENERATOR:
            key = f"{name}_{src if name.startswith('cycle_') else direction}"
            not_computed[key] = (
                f"needs the reverse generator (reconstructions): a {checkpoint.method(ckpt)} "
                "checkpoint translates one way"
            )
    source = {
        "checkpoint": str(ckpt_path.resolve()),
        "method": checkpoint.method(ckpt),
        **checkpoint.progress(ckpt),
    }
    return _report(cfg, evaluator, dataset, device, scores, images, source, not_computed, out_dir)


def _suffixes(direction: str) -> tuple[str, str]:
    src, _ = domains_of(direction)
    return (direction, src)  # fid_AtoB ..., and cycle_*_A


def _check_translations(folder: Path) -> list[Path]:
    """The image files of a folder of translations; one line if there are too few to score."""
    if not folder.is_dir():
        raise DataError(f"translations={folder} is not a folder: point it at translated images")
    files = list_images(folder)
    if not files:
        raise DataError(f"translations={folder} holds no images (.jpg, .png, .bmp, .webp)")
    if len(files) < MIN_TEST_IMAGES:
        raise DataError(
            f"translations={folder} has {len(files)} image(s): scoring needs at least "
            f"{MIN_TEST_IMAGES}"
        )
    return files


def check_inputs(dataset: dict, channels: int, out_dir: Path) -> None:
    """What the user gave that could still fail, checked before any judge is trained: the
    dataset's test images are there, and the report's folder can be written."""
    build_domains(dataset, "test", channels)  # one line for a dataset that is not there
    existing = out_dir.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the folder the report's folders would be made in
    reason = None
    if not existing.is_dir():
        reason = f"{existing} is a file"
    elif not os.access(existing, os.W_OK | os.X_OK):
        reason = f"{existing} is not writable"
    if reason:
        raise ConfigError(
            f"cannot write the report into {out_dir} ({reason}): choose another output_dir="
        )


def read_translations(
    folder: Path, evaluator: Evaluator, direction: str, limit: int | None, progress: bool
) -> tuple[torch.Tensor, list[str], int]:
    """The images of a folder at the evaluator's size: (N, C, H, W), their names, and how many
    had to be resized."""
    files = _check_translations(folder)
    files = [files[i] for i in spaced(len(files), limit)]
    src, _ = domains_of(direction)
    side = tuple(evaluator.real[src].shape[-2:])
    images, names, resized, bad = [], [], 0, []
    for path in tqdm(files, desc="load translations", disable=not progress):
        try:
            image = pil_to_tensor(open_image(path, evaluator.channels))
        except DataError:
            bad.append(path.name)
            continue
        if tuple(image.shape[-2:]) != side:
            image = F.interpolate(image[None], size=side, mode="bilinear", antialias=True)[0]
            resized += 1
        images.append(image)
        names.append(path.name)
    if bad:
        log.warning("warning: %d unreadable file(s) in %s skipped: %s", len(bad), folder,
                    ", ".join(bad[:5]))  # fmt: skip
    if len(images) < MIN_TEST_IMAGES:
        raise DataError(
            f"translations={folder} has {len(images)} readable image(s): "
            f"scoring needs at least {MIN_TEST_IMAGES}"
        )
    return torch.stack(images), names, resized


def _pair_by_name(names: list[str], source_names: list[str]) -> list[int] | None:
    """For each translation, the index of its input among the source test images, matched by
    file name without extension; None unless every translation has one."""
    index = {Path(n).stem: i for i, n in enumerate(source_names)}
    found = [index.get(Path(n).stem) for n in names]
    return None if any(i is None for i in found) else found  # type: ignore[return-value]


def evaluate_folder(cfg: DictConfig) -> dict[str, Any]:
    """Score a folder of translations as `gantrans evaluate translations=DIR` does."""
    _check_command(cfg)
    if cfg.direction is None:
        raise ConfigError("translations=DIR needs direction=AtoB or direction=BtoA")
    if cfg.ckpt is not None:
        raise ConfigError("pass ckpt=PATH or translations=DIR, not both")
    device = resolve_device(cfg.device)
    dataset = resolve_dataset(None, cfg)
    channels = int(dataset.get("channels", 3))
    folder = Path(cfg.translations)
    out_dir = Path(cfg.output_dir) if cfg.output_dir else Path("eval") / folder.resolve().name
    _check_translations(folder)
    check_inputs(dataset, channels, out_dir)
    evaluator = _evaluator(cfg, dataset, channels, device)
    direction = cfg.direction
    src, _ = domains_of(direction)
    fake, names, resized = read_translations(
        folder, evaluator, direction, cfg.max_images, cfg.progress
    )
    pairs = _pair_by_name(names, evaluator.names[src])
    inputs = evaluator.real[src][pairs] if pairs is not None else None
    truth = evaluator.truth[src][pairs] if pairs is not None and evaluator.truth else None
    scores = evaluator.score(direction, fake, inputs=inputs, truth=truth)
    not_computed = {
        f"{name}_{src if name.startswith('cycle_') else direction}": (
            "needs the generators (reconstructions): a folder of translations has none"
        )
        for name in NEEDS_GENERATOR
    }
    if pairs is None:
        for name in NEEDS_PAIRS:
            if name == "content_l1" or evaluator.truth:
                not_computed[f"{name}_{direction}"] = (
                    "needs each translation's input: name the files as the test images of the "
                    "source domain (export them with export_inputs=DIR)"
                )
    images = {direction: {"fake": fake[: cfg.num_samples]}}
    if inputs is not None:
        images[direction]["real"] = inputs[: cfg.num_samples]
    source = {
        "translations": str(folder.resolve()),
        "images": len(names),
        "resized": resized,
        "paired_with_inputs": pairs is not None,
    }
    return _report(cfg, evaluator, dataset, device, scores, images, source, not_computed, out_dir)


def export_inputs(cfg: DictConfig) -> Path:
    """Write the source domain's test images (as the judges see them) into cfg.export_inputs."""
    from gantrans.data import tensor_to_pil

    _check_command(cfg)
    if cfg.direction is None:
        raise ConfigError("export_inputs=DIR needs direction=AtoB or direction=BtoA")
    dataset = resolve_dataset(None, cfg)
    channels = int(dataset.get("channels", 3))
    src, _ = domains_of(cfg.direction)
    test = build_domains(dataset, "test", channels)[LABEL[src]]
    out = Path(cfg.export_inputs)
    out.mkdir(parents=True, exist_ok=True)
    indices = spaced(len(test), cfg.max_images)
    for i in tqdm(indices, desc=f"export test {src}", disable=not cfg.progress):
        name = Path(test.name(i)).stem + ".png"  # lossless: the judge sees exactly these
        tmp = out / f".{name}.part"
        tensor_to_pil(test.load(i)).save(tmp, format="PNG")
        tmp.replace(out / name)
    log.info("wrote %d test image(s) of domain %s to %s", len(indices), src, out)
    return out


def _report(
    cfg: DictConfig,
    evaluator: Evaluator,
    dataset: dict,
    device: torch.device,
    scores: dict[str, float],
    images: dict[str, dict[str, torch.Tensor]],
    source: dict[str, Any],
    not_computed: dict[str, str],
    out_dir: Path,
) -> dict[str, Any]:
    from gantrans.evaluation import report as eval_report

    info = evaluator.info
    report = {
        "gantrans_version": __version__,
        "source": source,
        "dataset": dataset,
        "settings": {**info, "device": str(device)},
        "metrics": scores,
        "lower_is_better": {k: LOWER_IS_BETTER[k] for k in scores},
        "checks": checks(scores, info),
        "not_computed": {
            **{
                k: v
                for k, v in evaluator.not_computed.items()
                if k.rsplit("_", 1)[1] in {d for d in images} or not images
            },
            **not_computed,
        },
    }
    eval_report.write(out_dir, report, images, cfg.num_samples)
    for line in eval_report.summary(report):
        log.info(line)
    log.info("wrote %s and %s", out_dir / eval_report.JSON_NAME, out_dir / eval_report.MD_NAME)
    return report


def main(cfg: DictConfig) -> None:
    """Entry point of `gantrans evaluate`."""
    if cfg.export_inputs is not None:
        export_inputs(cfg)
    elif cfg.translations is not None:
        evaluate_folder(cfg)
    elif cfg.ckpt is not None:
        evaluate_checkpoint(cfg)
    else:
        raise ConfigError(
            "pass ckpt=PATH (a checkpoint) or translations=DIR dataset=NAME direction=AtoB|BtoA "
            "(a folder of translated images)"
        )


__all__ = [
    "check_inputs",
    "evaluate_checkpoint",
    "evaluate_folder",
    "export_inputs",
    "main",
    "read_translations",
    "resolve_dataset",
]
