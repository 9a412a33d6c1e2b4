"""The primary config of each command: `gantrans train`, translate, serve, export, sample,
download and evaluate."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from gantrans.config.choices import Direction, NonFinite, Precision


# ---------------------------------------------------------------------------------------------
# train (primary config of `gantrans train`)
# ---------------------------------------------------------------------------------------------
@dataclass
class TrainLoopConfig:
    batch_size: int = 1
    n_epochs: int = 100  # epochs at the initial learning rate
    n_epochs_decay: int = 100  # epochs of linear decay to zero after that
    max_steps: int | None = None  # stop after this many steps (smoke runs, benchmarks)
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    # image history buffer per domain; 0 disables it; null: the method's (50 cyclegan, 0 cut)
    pool_size: int | None = None
    num_workers: int = 2
    log_every: int = 50  # steps between scalar logs
    image_every: int = 500  # steps between image grids (and one at the end)
    # steps between checkpoints (one is also written each epoch and at the end)
    checkpoint_every: int = 1000
    num_samples: int = 4  # images per domain in the grids
    progress: bool = True  # tqdm progress bar
    fuse_passes: bool = True  # one call per network for inputs that share it (off with batch norm)
    diagnostics: bool = True  # warn about a winning discriminator, rising G loss, mode collapse
    # a NaN/Inf loss: stop, or roll back to the last checkpoint
    on_nonfinite: NonFinite = NonFinite.stop
    rollback_lr_factor: float = 0.5  # learning-rate multiplier applied at each rollback
    max_rollbacks: int = 3
    channels_last: bool = False  # NHWC memory layout (often faster with bf16/fp16 on GPUs)
    compile: bool = False  # torch.compile both loss phases (slow first steps, faster after)
    eval_every: int = 0  # epochs between evaluations on the test split (and at the end); 0 = off
    # keeps checkpoints/best.pt by this metric (a name of gantrans evaluate's metrics); the
    # default: the share of A->B translations the panel of judges classifies as B (its mean)
    eval_metric: str = "panel_domain_acc_AtoB"
    eval_features: str = "classifier"  # classifier (offline) | inception (standard FID/KID)
    eval_max_images: int | None = 200  # test images per domain for each evaluation
    eval_c2st: bool = False  # also train the two-sample-test classifiers (slower)
    # decay of an exponential moving average of the generators' weights, used for the grids,
    # evaluation, translation and export (checkpoints keep both); 0 = off, e.g. 0.999
    ema: float = 0.0


@dataclass
class TrainConfig:
    dataset: Any = MISSING
    model: Any = MISSING
    discriminator: Any = MISSING
    loss: Any = MISSING
    method: Any = MISSING
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Precision = Precision.auto
    resume: str | None = None  # null | auto | path to a checkpoint


@dataclass
class TranslateConfig:
    ckpt: str = MISSING
    input: str | None = None  # an image, a video, or a folder of images and videos
    input_dir: str | None = None  # the same as input= (a folder)
    output: str | None = None  # a file for one input, else a folder
    output_dir: str | None = None  # the same as output= (default: translated/<input>_<direction>)
    direction: Direction = Direction.AtoB
    batch_size: int = 8
    device: str = "auto"
    precision: Precision = Precision.fp32
    progress: bool = True
    # large images: auto (tiles only where the whole image would not fit), off, or a side in px
    tile: str = "auto"
    overlap: int = 64  # pixels shared by neighbouring tiles, cross-faded
    blend: str = "smooth"  # smooth (sin^2 cross-fade) | none (cut in the middle of the overlap)
    tile_stats: str = "sampled"  # instance-norm statistics: sampled (full-res tiles) | image | tile
    stats_pixels: int = 1048576  # pixels of the one pass that gathers those statistics
    max_pixels: int | None = None  # tile=auto: the most pixels one pass may take
    memory_gb: float | None = None  # tile=auto: memory budget (default from free GPU memory / RAM)
    output_bit_depth: str = "same"  # 8 | 16 | same (16-bit and float grayscale stay deep)
    value_range: Any = "auto"  # what maps to [-1, 1]: auto | dtype | image | [lo, hi]
    video_codec: str | None = None  # default libx264 (.webm: libvpx-vp9, .avi: mpeg4)
    video_crf: int | None = None  # encoder quality, lower is better (default 18)
    temporal_smoothing: float = 0.0  # 0..<1: blend still regions with the previous output


@dataclass
class ServeConfig:
    ckpt: Any = MISSING  # a checkpoint (or pretrained:NAME), or a list [a.pt,b.pt]
    host: str = "127.0.0.1"  # 0.0.0.0 makes the page reachable from other machines
    port: int = 7860  # 0 picks a free port
    device: str = "auto"
    precision: Precision = Precision.fp32
    tile: str = "auto"  # as for translate: large uploads are translated in blended tiles
    overlap: int = 64
    max_upload_mb: float = 25.0  # larger uploads are refused
    max_pixels: int | None = None  # larger images are refused (default: what memory_gb holds)
    memory_gb: float = 2.0  # one upload at a time is decoded, translated (tiled) and encoded in it
    token: str | None = "auto"  # auto: a random one printed in the URL unless on 127.0.0.1 | off
    allowed_hosts: list[str] = field(default_factory=list)  # more names the page answers to


@dataclass
class ExportConfig:
    ckpt: str = MISSING  # a gantrans checkpoint, a reference generator file or pretrained:NAME
    format: str = MISSING  # onnx | torchscript
    direction: Direction = Direction.AtoB
    output: str | None = None  # default: <ckpt stem>_<direction>.onnx|.pt next to the checkpoint
    opset: int = 18  # ONNX opset (>= 17; 17 uses the TorchScript-based exporter)
    verify: bool = True  # run the written model at two sizes and compare it with PyTorch
    progress: bool = True  # progress bar while a pretrained model downloads


@dataclass
class SampleConfig:
    ckpt: str = MISSING  # a DCGAN checkpoint (method=dcgan)
    n: int = 64  # images to draw
    output_dir: str | None = None  # default: <run dir>/generated
    seed: int = 0  # draws the latent vectors: the same seed, the same images
    interpolate: bool = False  # also write interpolation.png (walks between latent vectors)
    interpolate_rows: int = 8  # walks in the strip
    interpolate_steps: int = 10  # images per walk, both ends included
    batch_size: int = 64
    device: str = "auto"
    precision: Precision = Precision.fp32


@dataclass
class DownloadConfig:
    name: str | None = None  # apple2orange, horse2zebra, ..., pix2pix_facades, ..., smiles, celeba
    root: str | None = None  # null: $GANTRANS_DATA, else ./data
    mirror: str | None = None  # base URL replacing the official one ($GANTRANS_DOWNLOAD_URL)
    url: str | None = None  # the archive's full URL, overriding everything else
    force: bool = False  # replace a dataset in place (re-downloads unless ROOT/NAME.zip is kept)
    keep_archive: bool = False  # keep NAME.zip after extracting it
    timeout: float = 60.0  # seconds without data before giving up
    progress: bool = True


@dataclass
class EvaluateConfig:
    ckpt: str | None = None  # a checkpoint to score (both directions, or `direction`)
    # a folder of translated images to score instead (needs dataset=NAME and direction)
    translations: str | None = None
    direction: str | None = None  # AtoB | BtoA; null with ckpt= = both
    export_inputs: str | None = None  # write the source domain's test images here and stop
    # dataset.KEY=VALUE changes one key of the dataset recorded in the checkpoint; dataset=NAME
    # (with its own keys) replaces it with a whole dataset config. Empty: the checkpoint's.
    dataset: dict[str, Any] = field(default_factory=dict)
    output_dir: str | None = None  # default: <run dir>/eval, or eval/<translations folder>
    features: str = "inception"  # inception (standard FID/KID) | classifier (offline, the judge's)
    inception_weights: str | None = None  # local copy of the FID Inception weights (.pth)
    fid_resize: str = "clean"  # clean (antialiased bicubic, clean-fid) | legacy (TF1 bilinear)
    max_images: int | None = None  # test images per domain (evenly spaced); null = all
    judge_max_images: int | None = 20000  # real training images per domain for the judges
    judge_epochs: int = 10  # the judges' longest training (early stopping on validation)
    judge_patience: int = 3  # rounds without a better validation score before stopping
    controls: bool = True  # degraded inputs, reconstructions and a second judge
    c2st: bool = True  # the real-versus-translated two-sample test
    c2st_epochs: int = 20  # epochs of each real-versus-translated two-sample-test classifier
    num_samples: int = 8  # columns of the sample grids
    batch_size: int = 32
    seed: int = 0
    device: str = "auto"
    progress: bool = True
