"""Host-device synchronisations per training step, counted with the PyTorch profiler on any device.

Runs the real training loop (`gantrans.training.train.train`, tiny networks on the built-in shapes set)
twice, for `--steps` and for 3x`--steps` steps, under torch.profiler, and reports per step (the
difference of the two runs over the extra steps, so start-up and the final checkpoint cancel out):

- `aten::_local_scalar_dense`: a tensor read as a Python number (`.item()`, `float(t)`,
  `bool(t)`, an `if` on a tensor). On a GPU each one waits for every kernel queued before it.
- `Tensor.tolist` calls (a read-back of a whole tensor; on the CPU it records no profiler
  event, so it is counted by wrapping the method).
- `aten::_to_copy` / `aten::copy_` events: `.to()`, `.cpu()`, `.clone()` and in-place copies.

Each read-back is also attributed to the gantrans source line that asked for it, and reads of
CPU tensors that never were on the device (the image buffer's random draws from its own CPU
generator) are listed apart: on a GPU they do not wait for it.

    python scripts/profile_syncs.py --steps 20 --json syncs.json
    PYTHONPATH=/path/to/other/checkout/src python scripts/profile_syncs.py   # another version
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import sys
import tempfile
import traceback
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

import gantrans
from gantrans.config import compose_train_config

TINY = [
    "precision=fp32", "model.ngf=4", "model.n_blocks=1", "discriminator.ndf=4",
    "dataset.train_size=64", "dataset.test_size=4", "train.num_workers=0",
    "train.progress=false", "train.num_samples=2", "train.diagnostics=false",
    "train.pool_size=4",  # full after 4 steps: the steady state draws from it
]  # fmt: skip
PACKAGE = str(Path(gantrans.__file__).parent)


def call_site() -> str:
    """The innermost gantrans frame of the current stack, as `file.py:line function`."""
    stack = traceback.extract_stack()
    for frame in reversed(stack):
        if frame.filename.startswith(PACKAGE):
            site = f"{Path(frame.filename).name}:{frame.lineno} {frame.name}"
            inner = stack[-3]  # below this function and __torch_dispatch__ / the wrapper
            if not inner.filename.startswith(PACKAGE) and "torch" in inner.filename:
                site += f" (in torch's {Path(inner.filename).name}:{inner.lineno})"
            return site
    return "(outside gantrans)"


class ReadBacks(TorchDispatchMode):
    """Counts `_local_scalar_dense` by call site (dispatched for every `.item()` and `bool()`)."""

    def __init__(self) -> None:
        super().__init__()
        self.sites: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.sites[f"item  {call_site()}"] += 1
        return func(*args, **(kwargs or {}))


def run(overrides: list[str], steps: int, log_every: int) -> dict:
    """Train `steps` steps under the profiler; counts of the events above, by name and site."""
    from gantrans.training import train as train_module

    cfg = compose_train_config([
        *TINY, *overrides, f"train.max_steps={steps}", f"train.log_every={log_every}",
        f"train.image_every={10 * steps}", f"train.checkpoint_every={10 * steps}",
    ])  # fmt: skip
    modes = ReadBacks()
    real_tolist = torch.Tensor.tolist

    def tolist(self):
        modes.sites[f"tolist  {call_site()}"] += 1
        return real_tolist(self)

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        torch.Tensor.tolist = tolist
        try:
            with profile(activities=[ProfilerActivity.CPU]) as prof, modes:
                train_module.train(cfg, Path(tmp) / "run")
        finally:
            torch.Tensor.tolist = real_tolist
    events = collections.Counter()
    for e in prof.key_averages():
        if e.key in ("aten::_local_scalar_dense", "aten::item", "aten::_to_copy", "aten::copy_"):
            events[e.key] = e.count
    return {"events": dict(events), "sites": dict(modes.sites)}


def per_step(short: dict, long: dict, extra_steps: int) -> dict:
    keys = set(short) | set(long)
    return {k: (long.get(k, 0) - short.get(k, 0)) / extra_steps for k in sorted(keys)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="steps of the shorter run")
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--set", nargs="*", default=[], help="extra Hydra overrides")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    logging.getLogger("gantrans").setLevel(logging.WARNING)
    short = run(args.set, args.steps, args.log_every)
    long = run(args.set, 3 * args.steps, args.log_every)
    extra = 2 * args.steps
    result = {
        "gantrans": PACKAGE,
        "overrides": args.set,
        "log_every": args.log_every,
        "per_step_events": per_step(short["events"], long["events"], extra),
        "per_step_sites": {
            k: v for k, v in per_step(short["sites"], long["sites"], extra).items() if v
        },
    }
    pool_draws = sum(v for k, v in result["per_step_sites"].items() if "image_pool.py" in k)
    result["per_step_device_reads"] = (
        sum(result["per_step_sites"].values()) - pool_draws
    )  # what waits for a GPU
    result["per_step_pool_cpu_draws"] = pool_draws
    print(f"gantrans from {PACKAGE}; per training step (log_every={args.log_every}):")
    for k, v in result["per_step_events"].items():
        print(f"  {k:<28} {v:8.2f}")
    print("  read-backs by call site:")
    for k, v in result["per_step_sites"].items():
        print(f"    {v:6.2f}  {k}")
    print(f"  reads that wait for the device: {result['per_step_device_reads']:.2f} per step "
          f"(+ {pool_draws:.2f} draws from the image buffer's CPU generator)")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
