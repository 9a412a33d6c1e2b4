"""Domain judges: CNNs that tell real A from real B, trained to convergence and cached per dataset.

A judge decides the figures that say whether a translation reached its target domain
(``domain_acc_*``), and its penultimate layer gives the classifier-feature FID/KID. A judge that
is weak, or that keys on artefacts rather than on what separates the domains, makes those
figures worthless, so a judge here is:

- trained on the real *training* images only, with a held-out validation part of them for early
  stopping (the best validation epoch is kept), class-weighted so an unbalanced set (SMILEsmileD
  is 2.6:1) does not buy accuracy by favouring the larger domain, and augmented (flips, small
  rotations, shifts and zooms, brightness and contrast);
- scored by its **balanced accuracy** (the mean of the two per-domain accuracies) on the real
  test images, which every report prints next to the figures the judge produces;
- one of a panel of three, each of another architecture (strided convolutions, max-pooling,
  residual blocks) and seed, so a translation that fools one by accident is unlikely to fool
  the others in the same way. On real images such judges agree; on generated ones a single
  judge's figure is soft (it moves with the images it was trained on), so a report leads with
  the panel's mean and its spread (docs/results.md measures both);
- cached under ``$GANTRANS_CACHE/judges`` by a key of the dataset, its split and the judge's
  settings, so scoring many checkpoints or folders trains it once.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from gantrans.cache import cache_root
from gantrans.checkpoint import save_atomic
from gantrans.errors import GantransError
from gantrans.runtime import bf16_supported

log = logging.getLogger("gantrans")

JUDGE_FORMAT = "gantrans-judge"
JUDGE_VERSION = 1  # bump when the architectures or the training change: old caches retrain
ARCHS = ("strided", "pooled", "residual")
"""The panel's judge architectures: all-convolutional with stride-2 downsampling, VGG-style
with max-pooling, and a small ResNet."""
MAX_INPUT = 64  # larger images are scaled down to this side (antialiased): judging stays quick
RELIABLE_BALANCED_ACC = 0.85
"""Below this balanced accuracy on the real test images, a judge's domain figures are flagged."""
MIN_STEPS_PER_ROUND = 50  # tiny sets: a validation round is at least this many steps
TRAIN_ONLY_KEYS = frozenset(
    {"augment", "flip", "rotate", "translate", "shear", "zoom", "brightness", "balance", "strict",
     "domain"}
)  # fmt: skip
"""Dataset keys that only change training-time augmentation, or which domain a one-domain
method trains on: they do not change the judge (which learns both domains)."""


def _block(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class _Residual(nn.Module):
    """relu(bn(conv(relu(bn(conv_s2(x))))) + shortcut(x)): (N, c_in, H, W) -> (N, c_out, H/2, W/2)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_block(c_in, c_out, 2),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut = nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride=2, bias=False), nn.BatchNorm2d(c_out)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class JudgeNet(nn.Module):
    """A seven-convolution CNN to two logits, for images of up to MAX_INPUT pixels.

    ``strided``: 3x3 convolutions at widths w, 2w, 2w, 4w, 4w, 8w, 8w, downsampling by stride 2
    three times. ``pooled``: pairs of 3x3 convolutions at w, 2w, 4w, each pair followed by 2x2
    max-pooling, then one at 8w. ``residual``: a 3x3 stem at w, then residual blocks (two 3x3
    convolutions and a shortcut) at 2w, 4w and 8w, each downsampling by 2. All end in global
    average pooling, dropout and a linear layer.

    Args:
        channels: Input channels (1 or 3).
        arch: "strided" or "pooled".
        width: w above.
        input_size: The side inputs are resized to (bilinear, antialiased) when they differ.
    """

    def __init__(
        self, channels: int, arch: str = "strided", width: int = 16, input_size: int = MAX_INPUT
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown judge architecture {arch!r}; expected one of {ARCHS}")
        self.arch = {"channels": channels, "arch": arch, "width": width, "input_size": input_size}
        self.input_size = input_size
        w = width
        if arch == "strided":
            layers = _block(channels, w, 1) + _block(w, 2 * w, 2) + _block(2 * w, 2 * w, 1)
            layers += _block(2 * w, 4 * w, 2) + _block(4 * w, 4 * w, 1)
            layers += _block(4 * w, 8 * w, 2) + _block(8 * w, 8 * w, 1)
        elif arch == "residual":
            layers = _block(channels, w, 1)
            layers += [_Residual(w, 2 * w), _Residual(2 * w, 4 * w), _Residual(4 * w, 8 * w)]
        else:
            layers = _block(channels, w, 1) + _block(w, w, 1) + [nn.MaxPool2d(2)]
            layers += _block(w, 2 * w, 1) + _block(2 * w, 2 * w, 1) + [nn.MaxPool2d(2)]
            layers += _block(2 * w, 4 * w, 1) + _block(4 * w, 4 * w, 1) + [nn.MaxPool2d(2)]
            layers += _block(4 * w, 8 * w, 1)
        self.body = nn.Sequential(*layers)
        self.num_features = 8 * w
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(8 * w, 2)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features: (N, C, H, W) in [-1, 1] -> (N, 8 * width) float32."""
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(
                x.float(), size=(self.input_size, self.input_size), mode="bilinear", antialias=True
            )
        return self.body(x).mean((2, 3)).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, 2) of (N, C, H, W) images in [-1, 1]; class 0 = domain A, 1 = domain B."""
        return self.head(self.dropout(self.features(x)))


@dataclass
class Judge:
    """A trained judge and what is known of it (settings, validation and training numbers)."""

    net: JudgeNet
    info: dict[str, Any] = field(default_factory=dict)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Predicted domains (N,) int64 (0 = A, 1 = B) of (N, C, H, W) images in [-1, 1]."""
        device = next(self.net.parameters()).device
        self.net.eval()
        out = [
            self.net(images[i : i + batch_size].to(device)).argmax(1).cpu()
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)

    def target_rate(self, images: torch.Tensor, target: int) -> float:
        """Share of (N, C, H, W) images the judge puts in domain `target` (0 = A, 1 = B)."""
        return (self.predict(images) == target).float().mean().item()


def balanced_accuracy(pred: torch.Tensor, labels: torch.Tensor) -> tuple[float, list[float]]:
    """(mean of the per-class accuracies, [accuracy on class 0, on class 1]) of predictions (N,).

    A class with no sample counts as nan and is left out of the mean.
    """
    per_class = []
    for k in (0, 1):
        mask = labels == k
        per_class.append((pred[mask] == k).float().mean().item() if mask.any() else math.nan)
    present = [a for a in per_class if not math.isnan(a)]
    return (sum(present) / len(present) if present else math.nan), per_class


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------
def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random flips, rotations (10 degrees), zooms (10 %), shifts (8 %), brightness and contrast.

    Args:
        x: (N, C, H, W) in [-1, 1].
        gen: The source of every random draw.

    Returns:
        (N, C, H, W) in [-1, 1]; the warp repeats the edge pixels.
    """
    n = len(x)

    def uniform(scale: float) -> torch.Tensor:
        return (torch.rand(n, generator=gen) * 2 - 1) * scale

    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    angle, zoom = uniform(math.radians(10)), 1 + uniform(0.1)
    shift_x, shift_y = uniform(0.16), uniform(0.16)  # affine_grid's [-1, 1]: 8 % of the side
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1
    )  # (N, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    contrast = 1 + uniform(0.15)[:, None, None, None]
    brightness = uniform(0.1)[:, None, None, None]
    return (x * contrast + brightness).clamp(-1, 1)


def _split_validation(
    labels: torch.Tensor, fraction: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, validation): `fraction` of each class held out (none of a 1-image class)."""
    train, val = [], []
    for k in (0, 1):
        idx = torch.nonzero(labels == k).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n = len(idx)
        n_val = min(max(round(fraction * n), 1), n - 1) if n >= 2 else 0
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return torch.cat(train), torch.cat(val)


def train_judge(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    arch: str = "strided",
    width: int = 16,
    seed: int = 0,
    device: torch.device | str = "cpu",
    max_epochs: int = 10,
    patience: int = 3,
    val_fraction: float = 0.1,
    batch_size: int = 64,
    lr: float = 2e-3,
    progress: bool = False,
    desc: str = "judge",
) -> Judge:
    """Train a JudgeNet on real images of the two domains, with early stopping.

    A `val_fraction` of each domain's images is held out; after every round (one pass over the
    rest, or MIN_STEPS_PER_ROUND steps for tiny sets) the balanced accuracy on it is measured,
    and training stops after `patience` rounds without a gain. The weights of the best round
    (the latest of equal ones) are returned. AdamW with a one-cycle schedule over `max_epochs` rounds, cross-entropy with
    class weights inversely proportional to the class sizes and label smoothing 0.05; bf16
    autocast where the device runs it natively. Deterministic from `seed` on one machine.

    Args:
        images: (N, C, H, W) in [-1, 1] on the CPU.
        labels: (N,) int64: 0 = domain A, 1 = domain B; both classes must be present.

    Returns:
        The judge in eval mode, with `info` holding its settings and numbers.
    """
    device = torch.device(device)
    if not (labels == 0).any() or not (labels == 1).any():
        raise ValueError("a judge needs images of both domains")
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    train_idx, val_idx = _split_validation(labels, val_fraction, gen)
    x_train, y_train = images[train_idx], labels[train_idx]
    x_val, y_val = images[val_idx], labels[val_idx]
    # the caller's random stream is left alone: initial weights and dropout draw from a fork
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        net = JudgeNet(images.shape[1], arch, width, min(max(images.shape[-2:]), MAX_INPUT))
        judge, info = _fit(net.to(device), x_train, y_train, x_val, y_val, gen, device,
                           max_epochs, patience, batch_size, lr, progress, desc)  # fmt: skip
    info.update(seed=seed, train_seconds=round(time.perf_counter() - t0, 1))
    return judge


def _batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless minibatch indices into `n` training images: a random order drawn from `gen` (on
    the first batch), and a fresh one whenever the current one has not a full batch left."""
    order, pos = torch.randperm(n, generator=gen), 0
    while True:
        if pos + batch_size > len(order):
            order, pos = torch.randperm(n, generator=gen), 0
        yield order[pos : pos + batch_size]
        pos += batch_size


@dataclass
class _EarlyStopping:
    """The rounds' validation scores, the best round's (score, round, weights) -- a tie keeps the
    later, longer-trained weights -- and when to stop: only a gain resets the patience."""

    patience: int
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    last_gain: int = 0
    history: list[float] = field(default_factory=list)

    def update(self, rnd: int, score: float, net: nn.Module) -> bool:
        """Record round `rnd`'s (from 1) score; True when `patience` rounds brought no gain."""
        self.history.append(round(score, 4))
        if self.best is None or score > self.best[0]:
            self.last_gain = rnd
        if self.best is None or score >= self.best[0]:
            state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            self.best = (score, rnd, state)
        return rnd - self.last_gain >= self.patience

    def summary(self, max_epochs: int) -> dict[str, Any]:
        """The judge's info on its validation (with nothing held out, all `max_epochs` ran)."""
        return {
            "val_balanced_acc": self.best[0] if self.best else None,
            "best_round": self.best[1] if self.best else max_epochs,
            "rounds": len(self.history) if self.history else max_epochs,
            "val_history": self.history,
        }


def _train_step(
    net: JudgeNet,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    x: torch.Tensor,
    y: torch.Tensor,
    weights: torch.Tensor,
    use_bf16: bool,
) -> None:
    """One step on a batch `x` (on the device) of labels `y`, the loss weighted by class."""
    with torch.autocast(x.device.type, torch.bfloat16, enabled=use_bf16):
        logits = net(x)
    loss = F.cross_entropy(logits.float(), y.to(x.device), weight=weights, label_smoothing=0.05)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()


def _fit(
    net: JudgeNet,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    gen: torch.Generator,
    device: torch.device,
    max_epochs: int,
    patience: int,
    batch_size: int,
    lr: float,
    progress: bool,
    desc: str,
) -> tuple[Judge, dict[str, Any]]:
    """The training loop of `train_judge`; returns the judge and its info (without the seed)."""
    net.train()
    counts = torch.bincount(y_train, minlength=2).float()
    weights = (counts.sum() / (2 * counts)).to(device)  # inverse class frequency, mean 1
    batch_size = max(2, min(batch_size, len(x_train)))  # batch norm needs two samples
    steps_per_round = max(len(x_train) // batch_size, MIN_STEPS_PER_ROUND)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=max_epochs * steps_per_round, pct_start=0.15
    )
    use_bf16 = bf16_supported(device)
    stopping = _EarlyStopping(patience)
    bar = tqdm(total=max_epochs * steps_per_round, desc=desc, disable=not progress, leave=False)
    batches = _batches(len(x_train), batch_size, gen)
    with torch.enable_grad():  # also when called under no_grad (inside a training loop)
        for rnd in range(1, max_epochs + 1):
            for idx in itertools.islice(batches, steps_per_round):
                x = augment(x_train[idx], gen).to(device)
                _train_step(net, opt, sched, x, y_train[idx], weights, use_bf16)
                bar.update(1)
            if len(x_val) == 0:  # nothing held out (a tiny set): keep the last weights
                continue
            with torch.autocast(device.type, torch.bfloat16, enabled=use_bf16):
                val_acc, _ = balanced_accuracy(Judge(net).predict(x_val), y_val)
            net.train()
            bar.set_postfix(val=f"{val_acc:.3f}", refresh=False)
            if stopping.update(rnd, val_acc, net):
                break
    bar.close()
    if stopping.best is not None:
        net.load_state_dict(stopping.best[2])
    net.eval()
    info = {
        "arch": net.arch,
        "train_images": [int((y_train == k).sum()) for k in (0, 1)],
        "val_images": [int((y_val == k).sum()) for k in (0, 1)],
        **stopping.summary(max_epochs),
        "steps_per_round": steps_per_round,
        "max_epochs": max_epochs,
        "patience": patience,
        "bf16": use_bf16,
    }
    judge = Judge(net, info)
    return judge, judge.info


# ---------------------------------------------------------------------------------------------
# the cache
# ---------------------------------------------------------------------------------------------
def dataset_identity(dataset_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The dataset settings that decide which real images a judge learns from and is tested on.

    Augmentation-only keys are dropped (a recipe's milder augmentation uses the same judge);
    a relative ``root`` is made absolute.
    """
    out = {k: v for k, v in dataset_cfg.items() if k not in TRAIN_ONLY_KEYS}
    if out.get("root"):
        out["root"] = str(Path(str(out["root"])).expanduser().resolve())
    return out


def cache_key(payload: Mapping[str, Any]) -> str:
    """A stable hex digest of a JSON-able mapping."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def cache_path(name: str, key: str, arch: str, cache_dir: Path | None = None) -> Path:
    """Where the judge for `key` is kept: ``<cache>/judges/<dataset>-<key>-<arch>.pt``."""
    folder = cache_dir if cache_dir is not None else cache_root() / "judges"
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(name))[:40]
    return folder / f"{safe}-{key[:16]}-{arch}.pt"


def load_cached(path: Path, key: str, device: torch.device) -> Judge | None:
    """The judge saved at `path` if it was trained for `key`, else None (a bad file is ignored)."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") != JUDGE_FORMAT or payload.get("key") != key:
            return None
        net = JudgeNet(**payload["arch"])
        net.load_state_dict(payload["state_dict"])
    except Exception as exc:  # noqa: BLE001 -- a bad cache is retrained, never fatal
        log.warning("ignoring the unreadable judge cache %s (%s)", path, type(exc).__name__)
        return None
    info = dict(payload.get("info", {}))
    info.update(cached=True, path=str(path))
    return Judge(net.to(device).eval(), info)


def save_cached(path: Path, key: str, judge: Judge) -> None:
    """Save a judge atomically (tensors and primitives only); a failure only costs a retrain."""
    payload = {
        "format": JUDGE_FORMAT,
        "key": key,
        "arch": judge.net.arch,
        "state_dict": {k: v.detach().cpu() for k, v in judge.net.state_dict().items()},
        "info": {k: v for k, v in judge.info.items() if k not in ("cached", "path")},
    }
    try:
        save_atomic(payload, path)
    except GantransError as exc:
        log.warning("could not cache the judge: %s", exc)


def judges_for(
    key_payload: Mapping[str, Any],
    name: str,
    load_training: Any,
    *,
    seeds: Sequence[int],
    device: torch.device,
    cache_dir: Path | None = None,
    max_epochs: int = 10,
    patience: int = 3,
    progress: bool = False,
) -> list[Judge]:
    """The panel (one judge per architecture in ARCHS) for a dataset, from the cache or trained.

    Args:
        key_payload: What identifies the dataset, its split and the judges' settings.
        name: The dataset name (part of the file names).
        load_training: A callable returning (images (N, C, H, W), labels (N,)): the real
            training images, called only when a judge must be trained.
        seeds: One seed per judge.
    """
    judges: list[Judge] = []
    data = None
    for arch, seed in zip(ARCHS, seeds, strict=True):
        key = cache_key({**key_payload, "arch": arch, "seed": seed, "version": JUDGE_VERSION,
                         "max_epochs": max_epochs, "patience": patience})  # fmt: skip
        path = cache_path(name, key, arch, cache_dir)
        judge = load_cached(path, key, device)
        if judge is None:
            if data is None:
                data = load_training()
            log.info("training the %s judge on %d real training images", arch, len(data[1]))
            judge = train_judge(
                *data, arch=arch, seed=seed, device=device, max_epochs=max_epochs,
                patience=patience, progress=progress, desc=f"judge ({arch})",
            )  # fmt: skip
            save_cached(path, key, judge)
            judge.info.update(cached=False, path=str(path))
        judges.append(judge)
    return judges
