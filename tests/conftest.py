"""Shared fixtures: tiny configs, a tiny trained checkpoint, image folders, CLI runner."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
from PIL import Image

from gantrans import cli
from gantrans.checkpoint import pack, save_atomic
from gantrans.data import DataError
from gantrans.methods import CycleGAN

# narrow networks at 32 px: a training step takes milliseconds on a CPU
TINY_NETS = [
    "precision=fp32",  # the same numbers on every machine (auto is bf16 on some CPUs only)
    "model.ngf=4",
    "model.n_blocks=1",
    "discriminator.ndf=4",
    "train.num_workers=0",
    "train.progress=false",
    "train.log_every=1",
    "train.image_every=2",
    "train.num_samples=2",
]
TINY = [*TINY_NETS, "dataset.train_size=16", "dataset.test_size=4"]
# CUT with narrow projection heads (the paper's 256 units would dominate a tiny generator)
TINY_CUT = ["method=cut", "method.head_units=16"]

# Tiny networks gain nothing from several threads, and on a 2-core machine the subprocess
# tests (torchrun, kill -9) would oversubscribe the cores; children inherit the variable.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One gantrans cache for the whole run: the judges of a tiny dataset are trained once, and
    nothing is written to the user's ~/.cache. Tests of the cache itself set their own."""
    root = tmp_path_factory.mktemp("gantrans_cache")
    os.environ["GANTRANS_CACHE"] = str(root)
    return root


def run_cli(*args: str) -> int:
    """Run `gantrans ARGS` in this process and return its exit code."""
    return cli.main(list(args))


def one_line_error(result: tuple[int, str, str]) -> str:
    """Check a `gantrans` fixture result is a user error: exit 2 and exactly one stderr line."""
    code, _, err = result
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def raises_one_line(fn, *fragments: str) -> str:
    """Check `fn()` raises a DataError whose message is one line holding every fragment."""
    with pytest.raises(DataError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message and message.strip() == message and message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache and a network that fails at once; returns TORCH_HOME."""

    def refuse(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "no network in tests")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return tmp_path / "torch_home"


@pytest.fixture
def gantrans(capsys):
    """Call the CLI in-process; returns (exit code, stdout, stderr)."""

    def _run(*args: str) -> tuple[int, str, str]:
        code = run_cli(*args)
        out, err = capsys.readouterr()
        return code, out, err

    return _run


def write_image(path: Path, size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Path:
    g = torch.Generator().manual_seed(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4, "LA": 2}[mode]
    arr = torch.randint(0, 256, (size[1], size[0], channels), generator=g, dtype=torch.uint8)
    img = Image.fromarray(arr.squeeze(-1).numpy() if channels == 1 else arr.numpy(), mode=mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


@pytest.fixture
def two_domain_folder(tmp_path: Path) -> Path:
    """ROOT/trainA, trainB (3 images each), testA, testB (1 each), assorted sizes and modes."""
    root = tmp_path / "data"
    for i, (size, mode) in enumerate([((40, 40), "RGB"), ((50, 36), "L"), ((36, 48), "RGBA")]):
        write_image(root / "trainA" / f"a{i}.png", size, mode, seed=i)
        write_image(root / "trainB" / f"b{i}.jpg", size, "RGB", seed=10 + i)
    write_image(root / "testA" / "ta.png", (40, 40), "RGB", seed=20)
    write_image(root / "testB" / "tb.png", (40, 40), "RGB", seed=21)
    return root


def make_checkpoint(path: Path, channels: int = 3, name: str = "resnet", seed: int = 0) -> Path:
    """A valid gantrans checkpoint of an untrained tiny model (no training needed)."""
    torch.manual_seed(seed)
    gen = {
        "name": name,
        "in_channels": channels,
        "out_channels": channels,
        "ngf": 4,
        "norm": "instance",
        "dropout": False,
    }
    gen.update({"n_blocks": 1, "padding_type": "reflect"} if name == "resnet" else {"num_downs": 5})
    disc = {
        "name": "patchgan",
        "in_channels": channels,
        "ndf": 4,
        "n_layers": 3,
        "norm": "instance",
    }
    net = CycleGAN(gen, disc)
    save_atomic(
        pack(
            method="cyclegan",
            directions={"AtoB": "G_A", "BtoA": "G_B"},
            arch={"generator": gen, "discriminator": disc},
            models={n: getattr(net, n).state_dict() for n in ("G_A", "G_B", "D_A", "D_B")},
        ),
        path,
    )
    return path


@pytest.fixture
def tiny_ckpt(tmp_path: Path) -> Path:
    return make_checkpoint(tmp_path / "tiny.pt")


def make_cut_checkpoint(path: Path, *overrides: str) -> Path:
    """A valid checkpoint of an untrained tiny CUT model on the tiny shapes set."""
    from gantrans.config import compose_train_config, to_plain
    from gantrans.training.engine import build_training

    cfg = compose_train_config([*TINY, *TINY_CUT, *overrides])
    torch.manual_seed(0)
    build_training(cfg, torch.device("cpu")).save(path, to_plain(cfg))
    return path


@pytest.fixture
def cut_ckpt(tmp_path: Path) -> Path:
    return make_cut_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `cuda` are skipped, with the reason, where no CUDA GPU is visible."""
    if torch.cuda.is_available():
        return
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    skip = pytest.mark.skip(
        reason=f"needs a CUDA GPU, none is visible (torch {torch.__version__}, {build}); "
        "python scripts/gpu_check.py runs these on one"
    )
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
