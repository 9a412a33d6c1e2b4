"""Side-by-side training speed: the reference CycleGAN implementation against gantrans.

Times the reference's own training step (`CycleGANModel.set_input` + `optimize_parameters`
from a checkout of junyanz/pytorch-CycleGAN-and-pix2pix) and gantrans's training step
(`gantrans.training.engine.train_step`, built as `gantrans train` builds it) in the same process, in
interleaved rounds: every round runs a few steps of each contender in turn, so a change in the
machine's load hits all of them alike. Same problem for all: ResNet generators, 3-layer
PatchGANs with instance norm, LSGAN, cycle 10, identity 0.5, pool 50, Adam(2e-4, 0.5), random
images of the chosen size; the data pipeline is left out (scripts/bench_data.py measures it).

    git clone https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix ../cyclegan-reference
    python scripts/bench_reference.py --reference ../cyclegan-reference
    python scripts/bench_reference.py --reference ../cyclegan-reference --size 64 --channels 1 \
        --batch 1 --rounds 10 --json side_by_side.json

Contenders (`--contenders`, comma-separated): `plain` (fp32, one call per input in the
reference's order: the reference's math and layout), `fp32` (gantrans's defaults), `bf16`,
`bf16-cl` (bf16 + channels_last), and `fp32-compile` / `bf16-compile` (torch.compile; the first
steps compile for a minute or two and are not counted).

Before any timing, every contender's losses over the first two steps (from the reference's
initial weights, on the same batches, TF32 off) are checked against the reference's, each
within its own tolerance, relative: 1e-4 for `plain`, 1e-3 for `fp32` (fused passes sum in
another order), 1e-2 compiled, 0.1 in bf16. The JSON's
`loss_check` holds each contender's difference and tolerance; a mismatch ends the run with one
line naming the contenders, after writing that check.

Each round's steps of a contender are timed together, the device synchronised before and after
them only, and the timed steps read no loss back, so on a GPU the host can queue the next step
while the last one runs, as in training. `--quick` (3 rounds of 3 steps, 2 warm-up steps) fits
a GPU check's time:

    python scripts/bench_reference.py --reference ../cyclegan-reference --device cuda --quick \
        --model resnet9 --size 256 --channels 3
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import types
from pathlib import Path

import torch
from benchmark import batch, build, device_name, timed

from gantrans.runtime import resolve_device
from gantrans.training.engine import train_step

LOSS_NAMES = ("G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B", "D_A", "D_B")
CONTENDERS = {  # name: (precision, fuse, channels_last, compile)
    "plain": ("fp32", False, False, False),
    "fp32": ("fp32", True, False, False),
    "bf16": ("bf16", True, False, False),
    "bf16-cl": ("bf16", True, True, False),
    "fp32-compile": ("fp32", True, False, True),
    "bf16-compile": ("bf16", True, False, True),
}


@contextlib.contextmanager
def exact_fp32():
    """TF32 off while the losses are compared: on Ampere and later GPUs cuDNN runs fp32
    convolutions in TF32 (10-bit mantissa) by default, and the reference and a fused layout
    would then differ by its rounding, not by their arithmetic. The timed steps run with
    PyTorch's defaults, as training does."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def reference_model(path: Path, args: argparse.Namespace, dev: torch.device):
    """The reference's CycleGANModel, with its own option names and CycleGAN defaults."""
    if not (path / "models" / "cycle_gan_model.py").is_file():
        sys.exit(f"error: {path} is not a pytorch-CycleGAN-and-pix2pix checkout "
                 "(no models/cycle_gan_model.py): pass --reference PATH")  # fmt: skip
    sys.path.insert(0, str(path))
    try:
        from models.cycle_gan_model import CycleGANModel  # the reference's module, from `path`
    except ImportError as exc:
        sys.exit(f"error: cannot import the reference's CycleGANModel from {path} ({exc}): "
                 "install what its requirements.txt lists")  # fmt: skip

    opt = types.SimpleNamespace(
        isTrain=True, gpu_ids=[dev.index or 0] if dev.type == "cuda" else [], device=dev,
        checkpoints_dir=str(Path(args.scratch)), name="bench", preprocess="resize_and_crop",
        input_nc=args.channels, output_nc=args.channels, ngf=args.ngf, ndf=args.ndf,
        netG={"resnet6": "resnet_6blocks", "resnet9": "resnet_9blocks"}[args.model],
        netD="basic", n_layers_D=3, norm="instance", no_dropout=True, init_type="normal",
        init_gain=0.02, gan_mode="lsgan", pool_size=50, lr=2e-4, beta1=0.5, direction="AtoB",
        lambda_A=10.0, lambda_B=10.0, lambda_identity=0.5, verbose=False, continue_train=False,
    )  # fmt: skip
    torch.manual_seed(0)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # its "initialize network" prints
            return CycleGANModel(opt)
    except AttributeError as exc:
        sys.exit(f"error: this reference version wants an option the script does not set ({exc})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, type=Path,
                        help="a checkout of junyanz/pytorch-CycleGAN-and-pix2pix")  # fmt: skip
    parser.add_argument("--model", default="resnet6", choices=["resnet6", "resnet9"])
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--ndf", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--contenders", default="plain,fp32,bf16,bf16-cl",
                        help=f"comma-separated, from: {', '.join(CONTENDERS)}")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps-per-round", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--quick", action="store_true",
                        help="3 rounds of 3 steps after 2 warm-up steps")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--scratch", default="/tmp", help="the reference's checkpoints_dir")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps_per_round, args.warmup = 3, 3, 2
    names = args.contenders.split(",")
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown:
        sys.exit(f"error: unknown contender {unknown[0]!r}: choose from {', '.join(CONTENDERS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    shape = argparse.Namespace(**vars(args), channels_last=False)  # inputs, converted per contender

    ref = reference_model(args.reference.resolve(), args, dev)

    def reference_step(real_A: torch.Tensor, real_B: torch.Tensor, read: bool = True) -> dict:
        ref.set_input({"A": real_A, "B": real_B, "A_paths": [], "B_paths": []})
        ref.optimize_parameters()
        if not read:
            return {}
        losses = {name: getattr(ref, f"loss_{name}") for name in LOSS_NAMES}
        return {k: v.item() if torch.is_tensor(v) else float(v) for k, v in losses.items()}

    steps = {"reference": reference_step}
    tolerance = {"reference": 0.0}  # largest relative loss difference from the reference
    for name in names:
        precision, fuse, channels_last, compiled = CONTENDERS[name]
        cfg = argparse.Namespace(**vars(args), precision=precision, fuse=fuse,
                                 channels_last=channels_last, compile=compiled)  # fmt: skip
        st = build(cfg, dev)
        for net_name, net in st.method.networks().items():  # the reference's initial weights
            ref_net = getattr(ref, f"net{net_name}")
            # on a GPU the reference wraps each network in nn.DataParallel (keys "module.*")
            net.load_state_dict(getattr(ref_net, "module", ref_net).state_dict())

        def step(real_A, real_B, read: bool = True, st=st, cfg=cfg) -> dict:
            if cfg.channels_last:
                real_A = real_A.contiguous(memory_format=torch.channels_last)
                real_B = real_B.contiguous(memory_format=torch.channels_last)
            terms = train_step(st, {"A": real_A, "B": real_B})
            st.step += 1
            return {name: float(terms[name]) for name in LOSS_NAMES} if read else {}

        steps[f"gantrans {name}"] = step
        # bf16 rounds; inductor reorders reductions, and so does a fused pass (one convolution
        # over the inputs concatenated); Adam's first update is about lr * sign(grad), so
        # rounding noise in a near-zero gradient becomes a full-size step in the second step's
        # losses (8e-5 measured for fp32 at batch 1 with ngf 8 on a CPU)
        tolerance[f"gantrans {name}"] = (
            0.1 if precision == "bf16" else 1e-2 if compiled else 1e-3 if fuse else 1e-4
        )

    # Same math: from the same weights, on the same first two batches (the image buffers still
    # hand back the newest fakes), every contender's losses must be the reference's; the second
    # step's losses also check the first step's Adam updates.
    first = [(batch(shape, dev, args.batch), batch(shape, dev, args.batch)) for _ in range(2)]
    loss_check = {}
    for name, step in steps.items():
        with exact_fp32():
            values = [step(a.clone(), b.clone()) for a, b in first]
        if name == "reference":
            expected = values
        rel = max(abs(v - want[k]) / max(abs(want[k]), 1e-8)
                  for got, want in zip(values, expected, strict=True) for k, v in got.items())  # fmt: skip
        loss_check[name] = {"relative_difference": rel, "tolerance": tolerance[name],
                            "ok": rel <= tolerance[name]}  # fmt: skip
        print(f"losses of the first two steps, {name}: largest relative difference from the "
              f"reference {rel:.1e} (tolerance {tolerance[name]:.0e}): "
              f"{'ok' if rel <= tolerance[name] else 'MISMATCH'}", file=sys.stderr)  # fmt: skip
    result = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "device": device_name(dev),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "loss_check": loss_check,
    }
    wrong = [name for name, check in loss_check.items() if not check["ok"]]
    if wrong:  # written down either way, for the GPU check to report
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
        found = ", ".join(f"{n} {loss_check[n]['relative_difference']:.1e} > "
                          f"{loss_check[n]['tolerance']:.0e}" for n in wrong)  # fmt: skip
        sys.exit(f"error: not the reference's losses in the first two steps (largest relative "
                 f"difference > tolerance): {found}")  # fmt: skip

    for name, step in steps.items():
        warm = timed(lambda step=step: step(batch(shape, dev, args.batch),
                                             batch(shape, dev, args.batch)), dev, args.warmup)  # fmt: skip
        print(f"warm-up {name}: {sum(warm):.1f} s", file=sys.stderr, flush=True)

    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(args.rounds):
        inputs = [(batch(shape, dev, args.batch), batch(shape, dev, args.batch))
                  for _ in range(args.steps_per_round)]  # fmt: skip
        for name, step in steps.items():
            copies = [(a.clone(), b.clone()) for a, b in inputs]  # outside the timed span
            (seconds,) = timed(lambda s=step, c=copies: [s(a, b, False) for a, b in c], dev, 1)
            times[name] += [seconds / len(copies)] * len(copies)  # the round's mean per step
        print(f"round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)

    ref_median = statistics.median(times["reference"])
    rows = {
        name: {
            "sec_per_iter_median": statistics.median(t),
            "sec_per_iter_min": min(t),
            "sec_per_iter_max": max(t),
            "images_per_sec": args.batch / statistics.median(t),
            "speedup_vs_reference": ref_median / statistics.median(t),
        }
        for name, t in times.items()
    }
    result["steps_per_contender"] = len(times["reference"])
    result["results"] = rows
    print(f"{args.model} {args.size}x{args.size}x{args.channels} batch {args.batch}, "
          f"{result['device']}, {result['threads']} threads, torch {torch.__version__}, "
          f"{result['steps_per_contender']} interleaved steps each")  # fmt: skip
    print(f"{'contender':<24} {'median s/it':>11} {'min':>7} {'max':>7} {'speed-up':>9} "
          f"{'losses vs reference (tolerance)':>32}")  # fmt: skip
    for name, row in rows.items():
        check = loss_check[name]
        check = f"{check['relative_difference']:.1e} ({check['tolerance']:.0e})"
        print(f"{name:<24} {row['sec_per_iter_median']:>11.3f} {row['sec_per_iter_min']:>7.3f} "
              f"{row['sec_per_iter_max']:>7.3f} {row['speedup_vs_reference']:>8.2f}x {check:>32}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
