"""`gantrans sample`: draw images from an unconditional (DCGAN) checkpoint.

Writes n images (`sample_0000.png`, ...), their grid (`grid.png`) and, with interpolate=true,
a strip of latent interpolations (`interpolation.png`: each row walks from one latent vector to
another along the great circle between them, the path spherical interpolation takes, which
keeps every point as likely under N(0, I) as its ends).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from omegaconf import DictConfig
from torchvision.utils import make_grid

from gantrans.applying.loader import load_sampler
from gantrans.checkpoint import run_dir_of
from gantrans.config import check_known_keys
from gantrans.data import tensor_to_pil
from gantrans.errors import ConfigError
from gantrans.models.dcgan import latents
from gantrans.runtime import autocast, resolve_device, resolve_precision

log = logging.getLogger("gantrans")


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between latent vectors.

    Args:
        z0, z1: (N, nz) the ends.
        t: (T,) positions in [0, 1].

    Returns:
        (N, T, nz): row n goes from z0[n] (t = 0) to z1[n] (t = 1); linear where the two ends
        are (nearly) parallel.
    """
    a, b = z0[:, None, :], z1[:, None, :]  # (N, 1, nz)
    cos = torch.nn.functional.cosine_similarity(z0, z1, dim=1).clamp(-1, 1)  # (N,)
    omega = torch.arccos(cos)[:, None, None]  # (N, 1, 1)
    t = t[None, :, None]  # (1, T, 1)
    sin = torch.sin(omega)
    linear = sin.abs() < 1e-6
    safe = torch.where(linear, torch.ones_like(sin), sin)
    spherical = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / safe
    return torch.where(linear, (1 - t) * a + t * b, spherical)


@torch.no_grad()
def generate(
    net: torch.nn.Module, z: torch.Tensor, batch_size: int, precision: str
) -> torch.Tensor:
    """net(z) in batches on the network's device: (N, C, S, S) in [-1, 1], float32 on the CPU."""
    device = next(net.parameters()).device
    out = []
    for i in range(0, len(z), batch_size):
        with autocast(device, precision):
            out.append(net(z[i : i + batch_size].to(device)).float().cpu())
    return torch.cat(out).clamp(-1, 1)


def _save(image: torch.Tensor, path: Path) -> None:
    """Write a (C, H, W) image in [-1, 1] as PNG, through a temporary file renamed into place."""
    tmp = path.with_name(f".{path.name}.part")
    tensor_to_pil(image).save(tmp, format="PNG")
    tmp.replace(path)


def _grid(images: torch.Tensor, nrow: int) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] -> one (C, H', W') image in [-1, 1], 2 px white between tiles."""
    return make_grid(images, nrow=nrow, padding=2, pad_value=1.0)


def sample(cfg: DictConfig) -> Path:
    """Draw `cfg.n` images from `cfg.ckpt` as `gantrans sample` does; returns the folder."""
    check_known_keys(cfg)
    for key in ("n", "batch_size", "interpolate_rows", "interpolate_steps"):
        if cfg[key] < 1:
            raise ConfigError(f"{key} must be positive, got {cfg[key]}")
    if cfg.interpolate and cfg.interpolate_steps < 2:
        raise ConfigError("interpolate_steps must be at least 2 (the two ends)")
    device = resolve_device(cfg.device)
    precision = resolve_precision(device, str(cfg.precision))
    ckpt_path = Path(cfg.ckpt)
    net, arch, _ = load_sampler(ckpt_path, device)
    out = Path(cfg.output_dir) if cfg.output_dir else run_dir_of(ckpt_path) / "generated"
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(int(cfg.seed))
    z = latents(cfg.n, int(arch["nz"]), gen)  # (n, nz) ~ N(0, I)
    images = generate(net, z, cfg.batch_size, precision)  # (n, C, S, S) in [-1, 1]
    width = max(1, len(str(cfg.n - 1)))
    for i, image in enumerate(images):
        _save(image, out / f"sample_{i:0{max(4, width)}d}.png")
    _save(_grid(images, math.ceil(math.sqrt(cfg.n))), out / "grid.png")
    written = [f"{cfg.n} images", "grid.png"]
    if cfg.interpolate:
        rows, steps = cfg.interpolate_rows, cfg.interpolate_steps
        ends = latents(2 * rows, int(arch["nz"]), gen)
        path = slerp(ends[:rows], ends[rows:], torch.linspace(0, 1, steps))  # (rows, steps, nz)
        strip = generate(net, path.flatten(0, 1), cfg.batch_size, precision)
        _save(_grid(strip, steps), out / "interpolation.png")
        written.append(f"interpolation.png ({rows} rows of {steps})")
    log.info("wrote %s to %s (seed %d)", ", ".join(written), out, cfg.seed)
    return out


def main(cfg: DictConfig) -> None:
    """Entry point of `gantrans sample`."""
    sample(cfg)
