"""One prepared check of everything that differs on a GPU; a JSON and a Markdown summary.

Every part runs in its own subprocess with its own time limit, through the `gantrans` command
line and the scripts beside this one, so what is checked is what a user runs. A part that fails
or times out is recorded and the next one starts. Per part the summary gives pass / fail / skip,
seconds, peak memory (the process's largest resident set; on CUDA also torch's peak allocated
GPU memory) and details.

    python scripts/gpu_check.py --out gpu_check --reference ../cyclegan-reference  # CUDA, ~8 min
    python scripts/gpu_check.py --out gpu_check --device cpu --quick   # the same parts, tiny

`--out` ends up holding three files, so it can be copied back whole: gpu_check.json,
gpu_check.md and gpu_check_logs.tar.gz (every part's output and its scripts' JSON). Runs and
checkpoints go to a scratch folder (`--work`; by default a temporary one, removed at the end).
`--budget` (seconds) bounds the whole check: no part starts after it, and every part's own time
limit is cut to what is left of it. Before anything runs, the modules gantrans needs are looked
for, and any missing are named in one line (docs/gpu.md: bringing them as wheels; `--wheels
DIR` installs a folder of them for the check's processes).

Parts, most important first (what the budget leaves out is the least important):
- `pytest_cuda`: the test suite's CUDA-marked tests (`pytest -m cuda`); on the CPU they skip,
  each with its reason.
- `bench_reference_batch1`, `bench_reference_batch8`: scripts/bench_reference.py --quick side by
  side with the reference implementation (ResNet-9, 256 px), when a checkout of it is given
  (--reference or GANTRANS_REFERENCE); every contender's losses checked against the
  reference's.
- `benchmark`: scripts/benchmark.py's matrix (ResNet-9 CycleGAN, 256 px, batch 1 and 8, fp32 /
  bf16 / bf16+channels_last / +compile), with MFU against the GPU's datasheet bf16 peak.
- `train_<method>_<mode>` for every method registered in gantrans.methods, modes fp32, bf16,
  fp16 (with the gradient scaler) and channels_last: a short run at 256 px (`--quick`: 32 px,
  tiny networks), checking its losses stayed finite and its checkpoint loads with finite
  weights.
- `resume`: a run stopped half-way and resumed gives the same weights as an uninterrupted one.
- `torchrun_1`, `torchrun_2`: the run under `torchrun --nproc_per_node=1`, and with 2
  processes (NCCL) when there are 2+ GPUs; on the CPU 2 processes over gloo.
- `portable_device_to_cpu`, `portable_cpu_to_device`: translate and export a device-trained
  checkpoint on the CPU, and a CPU-trained one on the device.
- `train_<method>_compile`: as the other modes, with torch.compile (minutes of compiling).
- `loader`: scripts/bench_data.py's loader rate at 64 px with workers and pinned memory.

On the CPU the same parts run in miniature (the side-by-side too, given --reference), and the
CUDA-only ones are skipped with the reason.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
MODES = ("fp32", "bf16", "fp16", "channels_last", "compile")
CHILD_ARGS = "--gantrans-args"  # what follows it is a gantrans command line (not "--": torchrun)
ARCHIVE = "gpu_check_logs.tar.gz"
# what the check's processes import, by the distribution that brings it: pyproject.toml's
# dependencies (tests/test_scripts.py keeps the two in step), gantrans itself and pytest
MODULES = {
    "torch": "torch", "torchvision": "torchvision", "hydra": "hydra-core",
    "omegaconf": "omegaconf", "antlr4": "antlr4-python3-runtime", "PIL": "pillow",
    "tqdm": "tqdm", "tensorboard": "tensorboard", "numpy": "numpy", "scipy": "scipy",
    "torchmetrics": "torchmetrics", "torch_fidelity": "torch-fidelity", "pytest": "pytest",
    "gantrans": "gantrans",
}  # fmt: skip
MIN_TORCH = (2, 4)  # pyproject.toml's torch>=2.4


def missing_modules() -> list[str]:
    """The modules of MODULES that cannot be found, as `module (distribution)`."""
    missing = []
    for module, dist in MODULES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module if module == dist else f"{module} ({dist})")
    return missing


def dependency_problem() -> str | None:
    """One line saying what this Python lacks to run the check, or None if nothing."""
    missing = missing_modules()
    if missing:
        return (f"this Python ({sys.executable}) lacks {', '.join(missing)}: bring them as "
                "wheels (docs/gpu.md, 'A machine without a package index'; --wheels DIR "
                "installs such a folder)")  # fmt: skip
    import torch

    version = tuple(int(x) for x in re.findall(r"\d+", torch.__version__)[:2])
    if version < MIN_TORCH:
        return f"torch {torch.__version__} is older than gantrans supports (2.4)"
    return None


def install_wheels(wheels: Path, target: Path) -> None:
    """Install every wheel in `wheels` into `target` (no index, no dependencies) and put it on
    this process's and its children's path. torch-fidelity's wheel carries a top-level `tests`
    package, which would shadow the project's: it is removed."""
    found = sorted(wheels.glob("*.whl"))
    if not found:
        sys.exit(f"error: no wheels in {wheels}: build the folder with scripts/gpu_wheels.sh")
    if importlib.util.find_spec("pip") is None:  # pure-Python wheels unpack as they install
        for wheel in found:
            with zipfile.ZipFile(wheel) as whl:
                whl.extractall(target)
    else:
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
               "--upgrade", "--target", str(target), *map(str, found)]  # fmt: skip
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode:
            tail = [line for line in p.stderr.strip().splitlines() if line.strip()][-1:]
            sys.exit(f"error: installing the wheels of {wheels} failed: {' '.join(tail)}")
    shutil.rmtree(target / "tests", ignore_errors=True)
    sys.path.insert(0, str(target))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(target), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    importlib.invalidate_caches()


def method_nets(method: str, size: int, quick: bool) -> list[str]:
    """The network (and batch) overrides of a check run: tiny in --quick, the benchmark's otherwise.

    Each method brings its own generator (CycleGAN and CUT a ResNet, pix2pix a U-Net, DCGAN its
    own); a method added later runs with its defaults, only narrowed where the keys exist.
    """
    width = ["model.ngf=8", "discriminator.ndf=8"] if quick else []
    if method in ("cyclegan", "cut", "fastcut"):
        return (["model.ngf=8", "model.n_blocks=1", "discriminator.ndf=8"] if quick
                else ["model=resnet9", "model.ngf=64", "discriminator.ndf=64"])  # fmt: skip
    if method == "pix2pix":  # a U-Net of log2(size) levels reaches 1x1 at the bottom
        return [*width, f"model.num_downs={max(1, size.bit_length() - 1)}"]
    if method == "dcgan":  # batch 64 by default: more than a check's 16 training images
        return [*width, f"model.image_size={size}", "train.batch_size=4"]
    return []


@dataclass
class Part:
    """The outcome of one part of the check."""

    name: str
    status: str = "skip"  # pass | fail | skip
    seconds: float = 0.0
    peak_rss_mb: float | None = None  # the largest resident set of its processes
    peak_gpu_mb: float | None = None  # torch.cuda.max_memory_allocated, largest over its runs
    details: dict = field(default_factory=dict)
    reason: str = ""  # why it failed or was skipped


@dataclass
class Proc:
    """What one subprocess did."""

    rc: int
    seconds: float
    output: str
    timed_out: bool
    limit: float  # the time limit it ran under, in seconds


class Check:
    """Runs parts one after another, each in subprocesses with a time limit, and records them."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.out: Path = args.out  # the summaries and the archive of logs only
        self.work = work  # runs, checkpoints, logs, the scripts' JSON
        self.cuda = args.device == "cuda"
        self.parts: list[Part] = []
        self.deadline = time.monotonic() + args.budget
        self.python = sys.executable

    # -- running things -------------------------------------------------------------------
    def proc(self, cmd: list[str], timeout: float, env: dict | None = None) -> Proc:
        """Run `cmd` in its own process group, killed whole if it outlives `timeout` seconds."""
        log = self.work / "logs"
        log.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        full_env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
                    **(env or {})}  # fmt: skip
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             cwd=ROOT, env=full_env, start_new_session=True)  # fmt: skip
        timed_out = False
        try:
            output, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(p.pid, signal.SIGKILL)
            output, _ = p.communicate()
        return Proc(p.returncode, time.monotonic() - start, output or "", timed_out, timeout)

    def gantrans(self, name: str, args: list[str], timeout: float, launcher: list[str] | None = None
                 ) -> tuple[Proc, dict]:  # fmt: skip
        """`gantrans ARGS` through this script's --child wrapper, which records peak memory
        (each process its own, rank by rank under torchrun; RUSAGE_CHILDREN would only give the
        largest over every child so far)."""
        stats = self.work / "stats" / f"{name}.json"
        stats.parent.mkdir(parents=True, exist_ok=True)
        for old in stats.parent.glob(f"{name}.json*"):
            old.unlink()
        prefix = launcher or [self.python]
        cmd = [*prefix, str(Path(__file__).resolve()), "--child", str(stats),
               *(["--deterministic"] if name.startswith("resume") else []), CHILD_ARGS, *args]  # fmt: skip
        p = self.proc(cmd, timeout)
        found = [json.loads(f.read_text()) for f in stats.parent.glob(f"{name}.json*")]
        mem = {
            "peak_rss_mb": max((s["peak_rss_mb"] for s in found), default=None),
            "peak_gpu_mb": max((s["peak_gpu_mb"] for s in found if s["peak_gpu_mb"]), default=None),
        }
        (self.work / "logs" / f"{name}.log").write_text(p.output)
        return p, mem

    def part(self, name: str, fn: Callable[[Part], None], cuda_only: str | None = None) -> None:
        """Run one part; `cuda_only` is the reason it is skipped without CUDA."""
        part = Part(name)
        self.parts.append(part)
        if cuda_only and not self.cuda:
            part.reason = f"needs CUDA (--device cpu): {cuda_only}"
        elif time.monotonic() > self.deadline:
            part.reason = f"the check's time budget ({self.args.budget:.0f} s) was spent"
        else:
            start = time.monotonic()
            try:
                fn(part)
            except Exception as exc:  # a broken part must not stop the check
                part.status, part.reason = "fail", f"{type(exc).__name__}: {exc}"
            part.seconds = round(time.monotonic() - start, 2)
        mark = {"pass": "ok  ", "fail": "FAIL", "skip": "skip"}[part.status]
        print(f"[{mark}] {name:<34} {part.seconds:7.1f} s  {part.reason}", flush=True)
        self.write()

    @staticmethod
    def fold(part: Part, p: Proc, mem: dict, what: str) -> bool:
        """Fold one subprocess into `part`; False (and the part failed) if it did not succeed."""
        part.details.setdefault("runs", []).append(
            {"what": what, "rc": p.rc, "seconds": round(p.seconds, 2)}
        )
        for key in ("peak_rss_mb", "peak_gpu_mb"):
            if mem.get(key) is not None:
                setattr(part, key, round(max(getattr(part, key) or 0.0, mem[key]), 1))
        if p.rc == 0 and not p.timed_out:
            return True
        part.status = "fail"
        tail = [line for line in p.output.strip().splitlines() if line.strip()][-3:]
        part.reason = (
            f"{what}: timed out after {p.limit:.0f} s" if p.timed_out
            else f"{what}: exit {p.rc}: {' | '.join(tail)}"
        )[:600]  # fmt: skip
        return False

    # -- what runs are like ---------------------------------------------------------------
    def train_args(self, method: str, run: Path, device: str | None = None) -> list[str]:
        from gantrans.config import NO_DATASET_RECIPES

        q = self.args.quick
        size, steps = (32, 3) if q else (256, 20)
        nets = method_nets(method, size, q)
        head = ["method.head_units=16"] if q and method in ("cut", "fastcut") else []
        # the method's paper settings: not the shapes set's recipes (an input skip, identity 1.0)
        return [
            "train", *NO_DATASET_RECIPES, f"method={method}", *nets, *head,
            f"dataset.image_size={size}",
            "dataset.train_size=16", "dataset.test_size=4", f"train.max_steps={steps}",
            "train.log_every=1", f"train.image_every={steps}", "train.progress=false",
            "train.num_samples=2", f"train.num_workers={0 if q else 2}",
            f"device={device or self.args.device}", f"hydra.run.dir={run}",
        ]  # fmt: skip

    def mode_args(self, mode: str) -> list[str]:
        low = "bf16" if self.cuda else "fp32"  # bf16 on a CPU without AVX-512 BF16 is emulated
        return {
            "fp32": ["precision=fp32"],
            "bf16": ["precision=bf16"],
            "fp16": ["precision=fp16"],
            "channels_last": [f"precision={low}", "train.channels_last=true"],
            "compile": [f"precision={low}", "train.compile=true"],
        }[mode]

    def timeout(self, seconds: float) -> float:
        """A part's limit for one process: `seconds` (times --timeout-scale), cut to what is
        left of the check's budget, so no part runs past it."""
        left = self.deadline - time.monotonic()
        return max(1.0, min(seconds * self.args.timeout_scale, left))

    # -- the parts ------------------------------------------------------------------------
    def pytest_cuda(self, part: Part) -> None:
        cmd = [self.python, "-m", "pytest", "-m", "cuda", "-q", "-rs", "-p", "no:cacheprovider",
               str(ROOT / "tests")]  # fmt: skip
        p = self.proc(cmd, self.timeout(240))
        (self.work / "logs" / "pytest_cuda.log").write_text(p.output)
        part.details["limit_s"] = round(p.limit)
        counts = {
            k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", p.output)
        }
        skips = sorted(set(re.findall(r"SKIPPED \[\d+\] [^:]+(?::\d+)?: (.+)", p.output)))
        part.details.update({"counts": counts, "skip_reasons": skips})
        if p.timed_out or p.rc not in (0,):
            part.status = "fail"
            part.reason = (
                f"timed out after {p.limit:.0f} s" if p.timed_out else f"pytest exit {p.rc}"
            )
        elif counts.get("passed", 0) == 0:
            part.status = "skip"
            part.reason = f"{counts.get('skipped', 0)} CUDA tests skipped: " + "; ".join(skips)
        else:
            part.status = "pass"

    def train_mode(self, method: str, mode: str) -> Callable[[Part], None]:
        def run(part: Part) -> None:
            run_dir = self.work / "runs" / f"{method}_{mode}"
            shutil.rmtree(run_dir, ignore_errors=True)
            args = [*self.train_args(method, run_dir), *self.mode_args(mode)]
            limit = 300 if mode == "compile" else 150
            p, mem = self.gantrans(part.name, args, self.timeout(limit))
            if self.fold(part, p, mem, "train"):
                part.details.update(inspect_run(run_dir))
                part.status, part.reason = judge_run(part.details)

        return run

    def resume(self, part: Part) -> None:
        method = "cyclegan"
        whole, halves = self.work / "runs" / "resume_whole", self.work / "runs" / "resume_halves"
        for d in (whole, halves):
            shutil.rmtree(d, ignore_errors=True)
        steps = int(_arg(self.train_args(method, whole), "train.max_steps"))
        half = steps // 2
        low = self.mode_args("bf16" if self.cuda else "fp32")
        # checkpoint_every=half: both runs write (and so check) at the same steps
        common = [*low, f"train.checkpoint_every={half}"]
        runs = [
            ("resume_whole", [*self.train_args(method, whole), *common]),
            ("resume_first", with_overrides([*self.train_args(method, halves), *common],
                                            f"train.max_steps={half}")),
            ("resume_second", [*self.train_args(method, halves), *common, "resume=auto"]),
        ]  # fmt: skip
        for name, args in runs:
            p, mem = self.gantrans(name, args, self.timeout(150))
            if not self.fold(part, p, mem, name):
                return
        from gantrans.checkpoint import latest_of

        part.details["compare"] = compare_checkpoints(latest_of(whole), latest_of(halves))
        same = part.details["compare"]["identical"]
        part.status = "pass" if same else "fail"
        part.reason = "" if same else f"weights differ: {part.details['compare']}"

    def torchrun(self, n: int) -> Callable[[Part], None]:
        def run(part: Part) -> None:
            run_dir = self.work / "runs" / f"torchrun_{n}"
            shutil.rmtree(run_dir, ignore_errors=True)
            launcher = [self.python, "-m", "torch.distributed.run", "--standalone",
                        f"--nproc_per_node={n}"]  # fmt: skip
            args = [*self.train_args("cyclegan", run_dir), *self.mode_args("fp32")]
            p, mem = self.gantrans(part.name, args, self.timeout(240), launcher=launcher)
            part.details["backend"] = (
                "none (one process: no process group)" if n == 1
                else "nccl" if self.cuda else "gloo"
            )  # fmt: skip
            if self.fold(part, p, mem, f"torchrun x{n}"):
                part.details.update(inspect_run(run_dir))
                part.status, part.reason = judge_run(part.details)

        return run

    def portable(self, train_on: str, apply_on: str) -> Callable[[Part], None]:
        def run(part: Part) -> None:
            from gantrans.checkpoint import latest_of

            run_dir = self.work / "runs" / f"portable_{train_on}"
            shutil.rmtree(run_dir, ignore_errors=True)
            args = self.train_args("cyclegan", run_dir, device=train_on)
            if train_on == "cpu" and self.cuda:  # a small CPU run: the point is where it loads
                args = [a for a in args if not a.startswith(("model=", "model.", "discrim"))]
                args = with_overrides(args, "model.ngf=8", "model.n_blocks=1",
                                      "discriminator.ndf=8", "dataset.image_size=32",
                                      "train.max_steps=2", "train.image_every=2")  # fmt: skip
            p, mem = self.gantrans(f"{part.name}_train", [*args, "precision=fp32"],
                                   self.timeout(150))  # fmt: skip
            if not self.fold(part, p, mem, f"train on {train_on}"):
                return
            ckpt = latest_of(run_dir)
            images = write_inputs(self.work / "runs" / "portable_inputs")
            out_dir = self.work / "runs" / f"portable_{train_on}_translated"
            shutil.rmtree(out_dir, ignore_errors=True)
            translate = ["translate", f"ckpt={ckpt}", f"input={images}", f"output_dir={out_dir}",
                         f"device={apply_on}", "progress=false"]  # fmt: skip
            p, mem = self.gantrans(f"{part.name}_translate", translate, self.timeout(120))
            if not self.fold(part, p, mem, f"translate on {apply_on}"):
                return
            written = sorted(out_dir.rglob("*.png"))
            export_path = self.work / "runs" / f"portable_{train_on}.pt"
            export = ["export", f"ckpt={ckpt}", "format=torchscript", f"output={export_path}",
                      "progress=false"]  # fmt: skip
            p, mem = self.gantrans(f"{part.name}_export", export, self.timeout(120))
            if not self.fold(part, p, mem, "export (torchscript, verified on the CPU)"):
                return
            part.details.update({"trained_on": train_on, "applied_on": apply_on,
                                 "translated_images": len(written),
                                 "exported": export_path.is_file()})  # fmt: skip
            ok = bool(written) and export_path.is_file()
            part.status = "pass" if ok else "fail"
            part.reason = "" if ok else "translate wrote no images or export wrote no file"

        return run

    def script(self, name: str, args: list[str], limit: float) -> Callable[[Part], None]:
        def run(part: Part) -> None:
            result = self.work / "results" / f"{part.name}.json"
            result.parent.mkdir(parents=True, exist_ok=True)
            result.unlink(missing_ok=True)
            p = self.proc([self.python, str(SCRIPTS / name), *args, "--json", str(result)],
                          self.timeout(limit))  # fmt: skip
            (self.work / "logs" / f"{part.name}.log").write_text(p.output)
            ok = self.fold(part, p, {}, name)
            if result.is_file():  # bench_reference writes its loss check even when it fails
                part.details["result"] = json.loads(result.read_text())
            if ok:
                part.status = "pass"

        return run

    # -- writing it down ------------------------------------------------------------------
    def write(self) -> None:
        counts = {s: sum(p.status == s for p in self.parts) for s in ("pass", "fail", "skip")}
        summary = {
            "device": self.args.device,
            "device_name": device_name(self.cuda),
            "quick": self.args.quick,
            "python": platform.python_version(),
            "torch": torch_version(),
            "gantrans": gantrans_path(),
            "budget_s": self.args.budget,
            "counts": counts,
            "parts": [asdict(p) for p in self.parts],
        }
        (self.out / "gpu_check.json").write_text(json.dumps(summary, indent=2))
        (self.out / "gpu_check.md").write_text(markdown(summary))
        self.archive()

    def archive(self) -> None:
        """Every log and script result so far, in one file of --out (rewritten after each part,
        so a check stopped from outside still leaves what it had)."""
        tmp = self.out / f".{ARCHIVE}.tmp"
        with tarfile.open(tmp, "w:gz") as tar:
            for sub in ("logs", "results"):
                if (self.work / sub).is_dir():
                    tar.add(self.work / sub, arcname=sub)
        tmp.replace(self.out / ARCHIVE)


def write_inputs(folder: Path, n: int = 2, size: tuple[int, int] = (48, 40)) -> Path:
    """A few random RGB PNGs (not square, not a multiple of 32) for translate to read."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"input_{i}.png")
    return folder


def with_overrides(args: list[str], *overrides: str) -> list[str]:
    """`args` with each KEY=VALUE of `overrides` replacing any earlier value of KEY."""
    keys = {o.split("=", 1)[0] for o in overrides}
    return [a for a in args if a.split("=", 1)[0] not in keys] + list(overrides)


def _arg(args: list[str], key: str) -> str:
    return next(a.split("=", 1)[1] for a in reversed(args) if a.startswith(f"{key}="))


def gantrans_path() -> str:
    """Where the gantrans the check runs comes from (a wheel's copy or this checkout)."""
    spec = importlib.util.find_spec("gantrans")
    return str(Path(spec.origin).parent) if spec and spec.origin else "not found"


def torch_version() -> str:
    import torch

    return torch.__version__


def device_name(cuda: bool) -> str:
    import torch

    if cuda and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line for line in f if line.startswith("model name"))
        return f"{model.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def inspect_run(run_dir: Path) -> dict:
    """The loss terms a run logged (last value, and whether all were finite) and its checkpoint."""
    import torch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from gantrans.checkpoint import latest_of, load_checkpoint

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    losses = {t: [e.value for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]
              if t.startswith("loss/")}  # fmt: skip
    ckpt_path = latest_of(run_dir)
    info: dict = {
        "logged_steps": max((len(v) for v in losses.values()), default=0),
        "losses_finite": all(math.isfinite(x) for v in losses.values() for x in v),
        "last_losses": {k.removeprefix("loss/"): round(v[-1], 4) for k, v in losses.items()},
        "checkpoint": ckpt_path.is_file(),
    }
    if ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path)
        info["checkpoint_step"] = ckpt["step"]
        info["weights_finite"] = all(
            bool(torch.isfinite(v).all())
            for sd in ckpt["models"].values() for v in sd.values() if v.is_floating_point()
        )  # fmt: skip
    return info


def judge_run(info: dict) -> tuple[str, str]:
    if not info["checkpoint"]:
        return "fail", "no checkpoint written"
    if not info["losses_finite"] or not info.get("weights_finite", False):
        return "fail", "non-finite losses or weights"
    if info["logged_steps"] == 0:
        return "fail", "no losses logged"
    return "pass", ""


def compare_checkpoints(a: Path, b: Path) -> dict:
    """Whether two checkpoints hold the same weights (bit for bit), and the largest difference."""
    import torch

    from gantrans.checkpoint import load_checkpoint

    ca, cb = load_checkpoint(a), load_checkpoint(b)
    worst, identical = 0.0, ca["step"] == cb["step"]
    for net, sd in ca["models"].items():
        for key, v in sd.items():
            w = cb["models"][net][key]
            identical &= torch.equal(v, w)
            if v.is_floating_point():
                worst = max(worst, (v.float() - w.float()).abs().max().item())
    return {"identical": bool(identical), "max_abs_difference": worst,
            "steps": [ca["step"], cb["step"]]}  # fmt: skip


def markdown(summary: dict) -> str:
    c = summary["counts"]
    lines = [
        "# gantrans GPU check",
        "",
        f"Device: {summary['device']} ({summary['device_name']}), torch {summary['torch']}, "
        f"{'quick' if summary['quick'] else 'full'} run: {c['pass']} passed, {c['fail']} failed, "
        f"{c['skip']} skipped.",
        "",
        "| part | result | seconds | peak RSS MB | peak GPU MB | notes |",
        "|---|---|---:|---:|---:|---|",
    ]
    for p in summary["parts"]:
        notes = p["reason"]
        d = p["details"]
        if not notes and "last_losses" in d:
            notes = ", ".join(f"{k} {v}" for k, v in list(d["last_losses"].items())[:4])
        if not notes and "compare" in d:
            notes = f"max |difference| {d['compare']['max_abs_difference']:.3g}"
        fmt = lambda v: "" if v is None else f"{v:.0f}"  # noqa: E731
        notes = notes.replace("|", "/").replace("\n", " ")
        lines.append(f"| {p['name']} | {p['status']} | {p['seconds']:.1f} | "
                     f"{fmt(p['peak_rss_mb'])} | {fmt(p['peak_gpu_mb'])} | {notes} |")  # fmt: skip
    for p in summary["parts"]:
        result = p["details"].get("result") or {}
        if p["name"].startswith("bench_reference") and result.get("loss_check"):
            lines += ["", f"## Side by side with the reference, {p['name']}", "",
                      side_by_side_table(result)]  # fmt: skip
    bench = next((p for p in summary["parts"] if p["name"] == "benchmark"), None)
    rows = ((bench or {}).get("details", {}).get("result", {}) or {}).get("matrix")
    if rows:
        lines += ["", "## Benchmark", "", benchmark_table(rows)]
    return "\n".join(lines) + "\n"


def side_by_side_table(result: dict) -> str:
    """bench_reference.py's JSON as a table: each contender's speed and its loss check."""
    out = ["| contender | s/iter | images/s | speed-up | losses vs reference | tolerance |",
           "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    rows = result.get("results", {})
    for name, check in result["loss_check"].items():
        r = rows.get(name)
        speed = (f"{r['sec_per_iter_median']:.4f} | {r['images_per_sec']:.1f} | "
                 f"{r['speedup_vs_reference']:.2f}x" if r else "not timed | | ")  # fmt: skip
        ok = "" if check["ok"] else " MISMATCH"
        out.append(f"| {name} | {speed} | {check['relative_difference']:.1e}{ok} | "
                   f"{check['tolerance']:.0e} |")  # fmt: skip
    return "\n".join(out)


def benchmark_table(rows: list[dict]) -> str:
    out = ["| mode | batch | s/iter | images/s | peak MB | TFLOP/s | MFU (bf16 peak) |",
           "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        if "error" in r:
            out.append(f"| {r['mode']} | {r['batch']} | failed: {r['error'][:80]} | | | | |")
            continue
        mfu = r.get("mfu")
        out.append(
            f"| {r['mode']} | {r['batch']} | {r['sec_per_iter_median']:.4f} | "
            f"{r['images_per_sec']:.1f} | {r['peak_memory_mb']:.0f} | "
            f"{r.get('achieved_tflops', 0):.1f} | {'' if mfu is None else f'{100 * mfu:.1f} %'} |"
        )
    return "\n".join(out)


def child(stats: Path, deterministic: bool, argv: list[str]) -> int:
    """Run `gantrans ARGV` in this process and write its peak memory to `stats` (per rank)."""
    import resource

    import torch

    from gantrans import cli

    if deterministic:  # bit-for-bit comparisons: no autotuned or atomics-based kernels
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        from gantrans.training import train as train_module

        start = train_module.start

        def deterministic_start(*args, **kwargs):
            run = start(*args, **kwargs)
            torch.backends.cudnn.benchmark = False  # start() turns it on for speed
            torch.backends.cudnn.deterministic = True
            return run

        train_module.start = deterministic_start
    code = 1
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        rank = os.environ.get("RANK")
        path = stats if rank in (None, "0") else stats.with_name(f"{stats.name}.{rank}")
        gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_initialized() else None
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        path.write_text(json.dumps({"peak_rss_mb": rss, "peak_gpu_mb": gpu}))
    return code


def plan_parts(check: Check, args: argparse.Namespace, gpus: int
               ) -> list[tuple[str, Callable[[Part], None], str | None]]:  # fmt: skip
    """Every part as (name, function, why it is skipped without CUDA), most important first."""
    from gantrans.methods import METHODS

    q, cuda = args.quick, args.device == "cuda"
    plan: list[tuple[str, Callable[[Part], None], str | None]] = [
        ("pytest_cuda", check.pytest_cuda, None),
    ]
    ref = args.reference
    if cuda:  # the paper's CycleGAN at 256 px, the reference's training step against ours
        ref_args = ["--model", "resnet9", "--size", "256", "--channels", "3", "--quick"]
    else:  # the same comparison in miniature, so the script and its loss check are exercised
        ref_args = ["--model", "resnet6", "--ngf", "8", "--ndf", "8", "--size", "32",
                    "--channels", "3", "--rounds", "2", "--steps-per-round", "2", "--warmup",
                    "1"]  # fmt: skip
    for n in (1, 8):
        name = f"bench_reference_batch{n}"
        if ref:
            args_n = ["--reference", str(ref), "--device", args.device, *ref_args, "--batch",
                      str(n), "--scratch", str(check.work / "reference")]  # fmt: skip
            plan.append((name, check.script("bench_reference.py", args_n, 240 if cuda else 180),
                         None))  # fmt: skip
        else:
            plan.append((name, no_reference, None))
    bench = ["--matrix", "--model", "resnet9", "--size", "256", "--channels", "3", "--batches",
             "1", "8", "--steps", "5" if q else "10", "--warmup", "2" if q else "3"]  # fmt: skip
    if not cuda:  # the same matrix in miniature, so the script itself is exercised
        bench = ["--matrix", "--model", "resnet6", "--ngf", "4", "--ndf", "4", "--size", "32",
                 "--channels", "3", "--batches", "1", "2", "--steps", "2", "--warmup", "1",
                 "--modes", "fp32", "--device", "cpu"]  # fmt: skip
    plan.append(("benchmark", check.script("benchmark.py", bench, 300 if cuda else 120), None))
    compiled = []  # compiling takes the longest: those runs go after the others
    for method in METHODS:  # every registered method, including ones added later
        for mode in MODES:
            why = "fp16 autocast is for CUDA" if mode == "fp16" else None
            if mode == "compile" and not cuda and q:
                why = "torch.compile takes minutes on a CPU: run without --quick"
            entry = (f"train_{method}_{mode}", check.train_mode(method, mode), why)
            (compiled if mode == "compile" else plan).append(entry)
    plan += [
        ("resume", check.resume, None),
        ("torchrun_1", check.torchrun(1), None),
        ("torchrun_2", check.torchrun(2),
         None if (not cuda or gpus >= 2) else f"2+ GPUs (this machine has {gpus})"),
        ("portable_device_to_cpu", check.portable(args.device, "cpu"), None),
        ("portable_cpu_to_device", check.portable("cpu", "cuda"), "a CUDA device to load onto"),
    ]  # fmt: skip
    plan += compiled
    loader = ["--datasets", "shapes", "--set", "dataset.image_size=64", "--batches", "8",
              "--workers", "0", "2", *(["4", "8"] if cuda else []), "--images",
              "64" if q else "1024", "--steps", "0", "--device", args.device]  # fmt: skip
    plan.append(("loader", check.script("bench_data.py", loader, 180), None))
    return plan


def no_reference(part: Part) -> None:
    part.reason = "no reference checkout: pass --reference PATH or set GANTRANS_REFERENCE"


def main() -> None:
    if "--child" in sys.argv:  # the wrapper around one gantrans command (see Check.gantrans)
        i, j = sys.argv.index("--child"), sys.argv.index(CHILD_ARGS)
        sys.exit(child(Path(sys.argv[i + 1]), "--deterministic" in sys.argv[:j], sys.argv[j + 1 :]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for the JSON and Markdown summaries and the logs' archive")  # fmt: skip
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None,
                        help="default: cuda when a GPU is visible, else cpu")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="tiny sizes and steps")
    parser.add_argument("--budget", type=float, default=480.0,
                        help="seconds for the whole check: no part starts after it, and each "
                             "part's limit is cut to what is left (default 480)")  # fmt: skip
    parser.add_argument("--timeout-scale", type=float, default=1.0, help="multiplies each limit")
    parser.add_argument("--reference", type=Path, default=os.environ.get("GANTRANS_REFERENCE"),
                        help="a pytorch-CycleGAN-and-pix2pix checkout, for bench_reference")  # fmt: skip
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for runs and checkpoints, kept (default: a temporary one, "
                             "removed at the end)")  # fmt: skip
    parser.add_argument("--wheels", type=Path, default=None,
                        help="a folder of wheels (scripts/gpu_wheels.sh) to install for the "
                             "check's processes first, without a package index")  # fmt: skip
    parser.add_argument(
        "--only", nargs="*", default=None, help="run only parts whose names start so"
    )
    args = parser.parse_args()
    for key in ("out", "reference", "work", "wheels"):  # the parts run in the repository root
        if getattr(args, key) is not None:
            setattr(args, key, Path(getattr(args, key)).resolve())
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.wheels:
            install_wheels(args.wheels, work / "site")
        problem = dependency_problem()
        if problem:  # one line here and in the summary, not a failure in every part
            (args.out / "gpu_check.json").write_text(json.dumps({"error": problem}, indent=2))
            sys.exit(f"error: {problem}")
        if args.reference and not (args.reference / "models" / "cycle_gan_model.py").is_file():
            sys.exit(f"error: --reference {args.reference} is not a pytorch-CycleGAN-and-pix2pix "
                     "checkout (no models/cycle_gan_model.py)")  # fmt: skip
        run_check(args, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def run_check(args: argparse.Namespace, work: Path) -> None:
    import torch

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but no CUDA GPU is visible: use --device cpu")
    check = Check(args, work)
    gpus = torch.cuda.device_count() if args.device == "cuda" else 0
    for name, fn, why in plan_parts(check, args, gpus):
        if args.only is None or any(name.startswith(o) for o in args.only):
            check.part(name, fn, why)
    check.write()
    c = {s: sum(p.status == s for p in check.parts) for s in ("pass", "fail", "skip")}
    print(f"{c['pass']} passed, {c['fail']} failed, {c['skip']} skipped: "
          f"{args.out / 'gpu_check.md'}")  # fmt: skip
    sys.exit(1 if c["fail"] else 0)


if __name__ == "__main__":
    main()
