"""Input-pipeline throughput (images/s) next to the training step's rate, per dataset config.

For each dataset the train config is composed as `gantrans train dataset=NAME [overrides]` would
compose it; the pipeline is the training loop's (UnpairedDataset with augmentation, the seeded
UnpairedSampler, a DataLoader with persistent workers and pin_memory on CUDA), timed for 0/1/2
workers at batch 1 and 8 after the first batch (worker start-up is reported apart). The step is
the loop's generator + discriminator update on one batch, timed after two warm-up steps. An
"image" is one A + B pair. Prints a table and, with --json, writes the numbers.

    GANTRANS_DATA=../shared/datasets python scripts/bench_data.py
    python scripts/bench_data.py --datasets shapes --set model.ngf=32 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch
from torch.utils.data import DataLoader

from gantrans.config import TrainConfig, compose_train_config, to_plain
from gantrans.data import UnpairedDataset, UnpairedSampler, build_domains
from gantrans.runtime import resolve_device
from gantrans.training.engine import build_training, train_step


def loader_rate(
    data: UnpairedDataset, workers: int, batch: int, images: int, pin: bool
) -> tuple[float, float]:
    """(pairs per second after the first batch, seconds to the first batch)."""
    n = min(len(data), images + batch)
    sampler = UnpairedSampler(len(data.domain_a), len(data.domain_b), seed=0)
    loader = DataLoader(
        data,
        batch_size=batch,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=pin,
        drop_last=True,
    )
    start = time.perf_counter()
    it = iter(loader)
    next(it)  # (batch, C, H, W) pairs
    first = time.perf_counter() - start
    count, t0 = 0, time.perf_counter()
    for _ in range(n // batch - 1):
        batch_dict = next(it)
        count += batch_dict["A"].shape[0]
    elapsed = time.perf_counter() - t0
    del it, loader
    return count / max(elapsed, 1e-9), first


def step_rate(
    cfg: TrainConfig, data: UnpairedDataset, batch: int, steps: int, device: str
) -> float:
    """Training pairs per second of the loop's own step (`gantrans.training.engine.train_step`), built
    as `gantrans train` builds it; the data is already in memory."""
    dev = resolve_device(device)
    torch.manual_seed(cfg.seed)
    st = build_training(cfg, dev)
    items = [data[(i, i, i)] for i in range(batch)]
    real = {  # (N, C, H, W) in [-1, 1]
        d: torch.stack([x[d] for x in items]).to(dev) for d in ("A", "B")
    }
    times = []
    for _ in range(steps + 2):
        t0 = time.perf_counter()
        train_step(st, real)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return batch * steps / sum(times[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["smiles", "shapes"])
    parser.add_argument("--set", nargs="*", default=[], help="extra Hydra overrides")
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--images", type=int, default=512, help="pairs timed per setting")
    parser.add_argument("--steps", type=int, default=10, help="training steps timed (0: skip)")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: one per CPU core)"
    )
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads or min(torch.get_num_threads(), os.cpu_count() or 1))
    pin = resolve_device(args.device).type == "cuda"

    results = []
    for name in args.datasets:
        cfg = compose_train_config([f"dataset={name}", *args.set])
        t0 = time.perf_counter()
        a, b = build_domains(to_plain(cfg.dataset), "train", int(cfg.dataset.channels))
        build_s = time.perf_counter() - t0
        data = UnpairedDataset(a, b, augment=True)
        row = {"dataset": name, "pairs": len(data), "build_s": round(build_s, 2), "loader": []}
        for batch in args.batches:
            for workers in args.workers:
                rate, first = loader_rate(data, workers, batch, args.images, pin)
                row["loader"].append(
                    {
                        "workers": workers,
                        "batch": batch,
                        "pairs_per_s": rate,
                        "first_batch_s": first,
                    }
                )
            if args.steps:
                row[f"step_pairs_per_s_batch{batch}"] = step_rate(
                    cfg, data, batch, args.steps, args.device
                )
        results.append(row)

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    info = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": load,
        "platform": platform.platform(),
        "torch": torch.__version__,
        "overrides": args.set,
    }
    print(
        f"{'dataset':<8} {'batch':>5} {'workers':>7} {'pairs/s':>9} {'1st batch s':>11} {'train step pairs/s':>19}"
    )
    for row in results:
        for r in row["loader"]:
            step = row.get(f"step_pairs_per_s_batch{r['batch']}")
            shown = f"{step:.2f}" if step is not None and r["workers"] == 0 else ""
            print(
                f"{row['dataset']:<8} {r['batch']:>5} {r['workers']:>7} {r['pairs_per_s']:>9.0f} "
                f"{r['first_batch_s']:>11.2f} {shown:>19}"
            )
    print(json.dumps({"info": info, "results": results}, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
