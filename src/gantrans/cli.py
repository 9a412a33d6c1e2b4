"""The `gantrans` command: a thin dispatcher from a subcommand to its Hydra entry point."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from gantrans import __version__
from gantrans.config import register_configs
from gantrans.errors import GantransError
from gantrans.methods import registry
from gantrans.training import distributed

CONFIG_PATH = "pkg://gantrans.configs"


@dataclass(frozen=True)
class Subcommand:
    config_name: str  # primary config in configs/
    target: str  # "module:function" taking the composed DictConfig
    summary: str


SUBCOMMANDS: dict[str, Subcommand] = {
    "train": Subcommand(
        "train",
        "gantrans.training.train:main",
        "train a model from configs (method=NAME, below)",
    ),
    "translate": Subcommand(
        "translate",
        "gantrans.applying.translate:main",
        "apply a trained checkpoint to images, videos or a folder of them",
    ),
    "sample": Subcommand(
        "sample",
        "gantrans.applying.sample:main",
        "draw images from a DCGAN checkpoint (method=dcgan)",
    ),
    "serve": Subcommand(
        "serve", "gantrans.applying.serve:main", "a local web page that translates uploaded images"
    ),
    "evaluate": Subcommand(
        "evaluate",
        "gantrans.evaluation.evaluate:main",
        "score a checkpoint: FID, KID, domain accuracy, ...",
    ),
    "download": Subcommand("download", "gantrans.data.download:main", "fetch a dataset by name"),
    "export": Subcommand(
        "export", "gantrans.applying.export:main", "write a generator as ONNX or TorchScript"
    ),
}

USAGE = """usage: gantrans <command> [key=value ...] [hydra flags]

Image-to-image translation and image generation GANs from Hydra configs.

commands:
{commands}

methods (gantrans train method=NAME):
{methods}

Every command takes Hydra overrides (key=value, group=option) and Hydra's flags:
  --cfg job        print the composed config and exit
  --help           the command's config groups and options
  -m / --multirun  sweep over comma-separated values
examples:
  gantrans train                                   # built-in shapes dataset, ~10 min on a CPU
  gantrans train dataset=folder dataset.root=DIR model=resnet9
  gantrans train method=cut                        # CUT instead of CycleGAN
  gantrans train method=dcgan dataset=smiles dataset.domain=B   # generate smiling faces
  gantrans sample ckpt=runs/.../checkpoints/latest.pt n=64 interpolate=true
  gantrans translate ckpt=runs/.../checkpoints/latest.pt input=photos/
  gantrans serve ckpt=runs/.../checkpoints/latest.pt      # then open http://127.0.0.1:7860
"""


def _usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = [f"  {name:<{width}}  {sub.summary}" for name, sub in SUBCOMMANDS.items()]
    return USAGE.format(commands="\n".join(lines), methods=registry.listing())


def _load(target: str) -> Callable[[DictConfig], object]:
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


def _one_line(exc: BaseException) -> str:
    """Hydra and OmegaConf errors span several lines; keep what names the key and the problem."""
    parts: list[str] = []
    seen: set[str] = set()
    while exc is not None:
        if type(exc).__name__ == "MissingMandatoryValue" and getattr(exc, "full_key", None):
            key = exc.full_key
            parts.append(f"{key} is required: pass {key}=... on the command line")
            break
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        first = lines[0] if lines else type(exc).__name__
        if first.endswith(":") and len(lines) > 1:  # "... raised while composing config:\n<reason>"
            first = f"{first} {lines[1]}"
        full_key = getattr(exc, "full_key", None)
        if full_key and full_key not in first:
            first = f"{full_key}: {first}"
        if "Available options in" in str(exc):  # an unknown group option: list the real ones
            options = []
            for line in str(exc).split("Available options in", 1)[1].splitlines()[1:]:
                if not line.startswith("\t"):
                    break
                if not line.strip().endswith("_schema"):
                    options.append(line.strip())
            first = f"{first}; choose one of: {', '.join(options)}"
        if first not in seen:
            parts.append(first)
            seen.add(first)
        if isinstance(exc, GantransError):
            break  # its message is complete: what lies beneath is detail for the log, not the line
        exc = exc.__cause__
    return " - ".join(parts)


def _user_error_types() -> tuple[type[BaseException], ...]:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    types: list[type[BaseException]] = [GantransError, HydraException, OmegaConfBaseException]
    return tuple(types)


def run_subcommand(name: str, args: list[str]) -> int:
    """Compose the subcommand's config from `args` with Hydra and run it; returns the exit code."""
    sub = SUBCOMMANDS[name]
    register_configs()
    task = _load(sub.target)

    user_wants_traceback = bool(os.environ.get("HYDRA_FULL_ERROR"))

    @hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=sub.config_name)
    def _entry(cfg: DictConfig) -> None:
        try:
            task(cfg)
        except _user_error_types() as exc:
            if user_wants_traceback or HydraConfig.get().mode == RunMode.MULTIRUN:
                raise  # a sweep goes on with its other jobs; Hydra re-raises at the end
            # report here: past this point Hydra adds a line of its own to stderr
            print(f"gantrans {name}: error: {_one_line(exc)}", file=sys.stderr)
            raise SystemExit(2) from exc

    # Hydra reads sys.argv; it prints its own errors with tracebacks unless told to raise them,
    # so let it raise and turn user errors into one line here. A user who sets HYDRA_FULL_ERROR
    # gets the full traceback, as Hydra documents.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    saved_argv = sys.argv
    if name == "train" and distributed.env_rank() > 0:
        # under torchrun only rank 0 owns the run directory (it tells the others where it is)
        args = [*args, "hydra.output_subdir=null", "hydra.run.dir=.", "hydra/job_logging=stdout"]
    sys.argv = [f"gantrans {name}", *args]
    try:
        _entry()
    except _user_error_types() as exc:
        if user_wants_traceback:
            raise
        print(f"gantrans {name}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gantrans {name}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # Hydra's --help and --cfg exit through here
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved_argv
        if not user_wants_traceback:
            os.environ.pop("HYDRA_FULL_ERROR", None)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `gantrans` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"gantrans {__version__}")
        return 0
    name = argv[0]
    if name not in SUBCOMMANDS:
        print(
            f"gantrans: error: unknown command '{name}'; choose one of: {', '.join(SUBCOMMANDS)}",
            file=sys.stderr,
        )
        return 2
    args = argv[1:]
    if name == "download" and args and "=" not in args[0] and not args[0].startswith("-"):
        args = [f"name={args[0]}", *args[1:]]  # `gantrans download apple2orange`
    return run_subcommand(name, args)


if __name__ == "__main__":
    sys.exit(main())
