"""Dataclass schemas for every config group, registered in Hydra's ConfigStore.

Each YAML file under configs/ names one of these schemas first in its defaults list, so Hydra
checks keys and types while it composes: a misspelt key or a value of the wrong type stops the
run before any work is done. Checks that need more than one value (a crop larger than the load
size, say) live in `check_train_config`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from gantrans.errors import ConfigError
from gantrans.evaluation.names import LOWER_IS_BETTER, metric_available

# CycleGAN's loss weights (the paper's), the values of loss.lambda_cycle / lambda_identity when null
LAMBDA_CYCLE = 10.0
LAMBDA_IDENTITY = 0.5
AUGMENT_POLICIES = ("color", "translation", "cutout")
"""The transformations of discriminator.augment (gantrans.models.augment)."""
DCGAN_SIZES = (16, 32, 64, 128, 256)
"""Image sides the DCGAN networks build for (powers of two from 16: gantrans.models.dcgan)."""

# Overrides that drop train.yaml's per-dataset tuning (recipe/<dataset>, recipe/model/
# <dataset>_<model> and recipe/method/<dataset>_<method>), so the networks and losses are the
# method's paper settings whatever the dataset: what the benchmarks and the GPU check measure.
# `gantrans train` takes them on the command line too.
NO_DATASET_RECIPES = ("~recipe", "~recipe/model@_global_", "~recipe/method@_global_")


class Choice(str, Enum):
    """A config value from a fixed set; prints and formats as its value (`bf16`, not
    `Precision.bf16`), so typed configs read like the YAML in messages."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Norm(Choice):
    instance = "instance"
    batch = "batch"
    none = "none"


class PaddingType(Choice):
    reflect = "reflect"
    replicate = "replicate"
    zero = "zero"


class InitType(Choice):
    normal = "normal"
    xavier = "xavier"
    kaiming = "kaiming"
    orthogonal = "orthogonal"


class GanMode(Choice):
    lsgan = "lsgan"
    bce = "bce"
    wgangp = "wgangp"


class Precision(Choice):
    auto = "auto"  # bf16 where the device runs it natively (AVX-512 BF16 / AMX CPUs, recent GPUs)
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class NonFinite(Choice):
    stop = "stop"
    rollback = "rollback"


class Direction(Choice):
    AtoB = "AtoB"
    BtoA = "BtoA"


# ---------------------------------------------------------------------------------------------
# dataset group
# ---------------------------------------------------------------------------------------------
@dataclass
class DatasetConfig:
    name: str = MISSING
    channels: int = 3  # 1 = grayscale, 3 = RGB; sets the networks' input and output channels
    # the one domain a single-domain method (method=dcgan) trains on: A or B; null for the
    # two-domain methods (dcgan's default: B)
    domain: str | None = None


@dataclass
class ShapesDatasetConfig(DatasetConfig):
    name: str = "shapes"
    image_size: int = 32
    train_size: int = 2000
    test_size: int = 200
    seed: int = 0


@dataclass
class FolderDatasetConfig(DatasetConfig):
    name: str = "folder"
    root: str = MISSING
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    preprocess: str = "resize_and_crop"  # resize_and_crop | crop | scale_width_and_crop | none
    max_items: int | None = None
    strict: bool = False  # fully decode every image at start-up and stop at the first bad one
    # optional random affine augmentation during training (gantrans.data.transforms.AffineAugment)
    rotate: float = 0.0  # max |angle| in degrees
    translate: float = 0.0  # max |shift| as a fraction of the side
    shear: float = 0.0  # max |x-shear| in degrees
    zoom: float = 0.0  # scale drawn from [1 - zoom, 1 + zoom]
    brightness: list[float] | None = None  # factor range [low, high], e.g. [0.8, 1.2]


@dataclass
class AlignedDatasetConfig(DatasetConfig):
    """Paired images (gantrans.data.paired): ROOT/train, val, test of side-by-side A|B images,
    or ROOT/trainA + ROOT/trainB (+ testA, testB) matched by file name."""

    name: str = "aligned"
    root: str = MISSING
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True  # the same random crop and flip for both images of a pair
    preprocess: str = "resize_and_crop"  # resize_and_crop | crop | scale_width_and_crop | none
    max_items: int | None = None
    strict: bool = False


@dataclass
class ShapesPairedDatasetConfig(ShapesDatasetConfig):
    """The shapes set as pairs: each circle (A) with its true square (B), no files."""

    name: str = "shapes_paired"


@dataclass
class SmilesDatasetConfig(DatasetConfig):
    name: str = "smiles"
    root: str | None = None  # null: $GANTRANS_DATA/SMILEsmileD (./data/SMILEsmileD if unset)
    channels: int = 1
    image_size: int = 64
    test_fraction: float = 0.1  # held out by a hash of the file name (gantrans.data.smiles)
    augment: bool = True  # false: no random augmentation at all (no warp, no flip)
    flip: bool = True
    rotate: float = 30.0
    translate: float = 0.15
    shear: float = 10.0
    zoom: float = 0.25
    brightness: list[float] | None = field(default_factory=lambda: [0.8, 1.2])
    balance: bool = False  # true: an epoch is one pass over the smaller domain
    strict: bool = False
    max_items: int | None = None


@dataclass
class CelebADatasetConfig(DatasetConfig):
    name: str = "celeba"
    root: str | None = None  # null: $GANTRANS_DATA/celeba (./data/celeba if unset)
    attribute: str = "Smiling"  # A = attribute -1, B = +1
    image_size: int = 128
    face_crop: int = 178  # centre crop of the 178x218 faces before resizing
    flip: bool = True
    rotate: float = 0.0
    translate: float = 0.0
    shear: float = 0.0
    zoom: float = 0.0
    brightness: list[float] | None = None
    balance: bool = False
    max_items: int | None = None


# ---------------------------------------------------------------------------------------------
# model group (the generators G_A: A->B and G_B: B->A share one architecture)
# ---------------------------------------------------------------------------------------------
@dataclass
class GeneratorConfig:
    name: str = MISSING
    ngf: int = 64
    norm: Norm = Norm.instance
    dropout: bool = False
    init_type: InitType = InitType.normal
    init_gain: float = 0.02
    # a change mask: the output is m * drawn + (1 - m) * input, m in [0, 1] drawn too, so what
    # should stay is copied (penalised by loss.lambda_mask; the masks are in the image grids)
    mask: bool = False


@dataclass
class ResnetGeneratorConfig(GeneratorConfig):
    name: str = "resnet"
    n_blocks: int = 9
    padding_type: PaddingType = PaddingType.reflect
    input_skip: bool = False  # also feed the input to the last convolution (keeps colours)


@dataclass
class UnetGeneratorConfig(GeneratorConfig):
    name: str = "unet"
    num_downs: int = 8


@dataclass
class DCGANGeneratorConfig:
    """The DCGAN generator (method=dcgan): a latent vector to an image, not an image to one."""

    name: str = "dcgan"
    nz: int = 100  # latent size
    image_size: int = 64  # 16, 32, 64, 128 or 256; must be the dataset's image size
    ngf: int = 64  # channels of the last hidden layer, doubled towards the 4x4 start
    norm: Norm = Norm.batch  # batch (the paper's) or none
    init_type: InitType = InitType.normal
    init_gain: float = 0.02


# ---------------------------------------------------------------------------------------------
# discriminator group
# ---------------------------------------------------------------------------------------------
@dataclass
class DiscriminatorConfig:
    name: str = MISSING
    ndf: int = 64
    norm: Norm = Norm.instance
    init_type: InitType = InitType.normal
    init_gain: float = 0.02
    spectral_norm: bool = False  # divide each layer's weight by its largest singular value
    # DiffAugment of every image the discriminator scores (real and generated, both phases):
    # some of color, translation, cutout joined by + (color+translation+cutout); null = none
    augment: str | None = None


@dataclass
class PatchGANConfig(DiscriminatorConfig):
    name: str = "patchgan"
    n_layers: int = 3  # 3 = the 70x70 PatchGAN


@dataclass
class PixelDiscriminatorConfig(DiscriminatorConfig):
    name: str = "pixel"


@dataclass
class DCGANDiscriminatorConfig(DiscriminatorConfig):
    """The DCGAN discriminator: strided convolutions down to one logit per image; its depth
    follows model.image_size."""

    name: str = "dcgan"
    norm: Norm = Norm.batch  # batch (the paper's; none on the first layer) or none


# ---------------------------------------------------------------------------------------------
# loss group
# ---------------------------------------------------------------------------------------------
@dataclass
class LossConfig:
    name: GanMode = GanMode.lsgan
    # method=cyclegan only (null: the method's default, 10): the weight of ||G_B(G_A(A)) - A||_1
    # and ||G_A(G_B(B)) - B||_1
    lambda_cycle: float | None = None
    # method=cyclegan only (null: 0.5): the identity weight, relative to lambda_cycle as in the
    # reference: ||G_A(B) - B||_1 is weighted lambda_cycle * lambda_identity (10 * 0.5 = 5);
    # 0 switches the identity terms off
    lambda_identity: float | None = None
    lambda_gp: float = 10.0  # gradient-penalty weight, wgangp only
    # discriminator steps per generator step (the generator steps every N batches)
    critic_steps: int = 1
    # model.mask only: the masks' size penalty, lambda_mask x |area - mask_area| per image, where
    # area is the share of the image a generator redraws. A one-sided penalty (mask_area null:
    # lambda_mask x area), or a weak two-sided one, lets the cycle terms shut the masks within
    # a hundred steps (the generator becomes the identity); at weight 10, as strong as the cycle
    # terms, the area holds at its target and the network chooses where it goes
    lambda_mask: float = 10.0
    mask_area: float | None = 0.25
    # model.mask only: weight of the masks' total variation (mean |difference| of neighbouring
    # pixels); without it the area target is met by a fine mesh of single pixels, and at 10 it
    # shuts the masks as the cycle terms do (both measured on the smiles recipe)
    lambda_mask_tv: float = 2.0
    # R1 penalty (Mescheder et al. 2018): gamma / 2 * E||grad D(real)||^2, applied every
    # r1_every steps with its weight multiplied by r1_every (lazy, as in StyleGAN2); 0 = off
    r1_gamma: float = 0.0
    r1_every: int = 16


# ---------------------------------------------------------------------------------------------
# method group: what is trained (its networks and loss phases live in gantrans.methods)
# ---------------------------------------------------------------------------------------------
@dataclass
class MethodConfig:
    """A training method. Class attributes (not options) say what the other groups mean to it.

    Attributes:
        directions: what a checkpoint of the method translates ("AtoB", "BtoA").
        shared_defaults: values of other groups' options whose default depends on the method
            (null in their schemas), e.g. {"train.pool_size": 50}.
        not_applicable: other groups' options the method refuses when they are set, with the
            reason, e.g. {"loss.lambda_cycle": "it has no cycle"}.
    """

    name: str = MISSING
    directions: ClassVar[tuple[str, ...]] = ("AtoB", "BtoA")
    shared_defaults: ClassVar[dict[str, Any]] = {}
    not_applicable: ClassVar[dict[str, str]] = {}


@dataclass
class CycleGANMethodConfig(MethodConfig):
    """CycleGAN (Zhu et al. 2017): two generators, two discriminators, cycle consistency."""

    name: str = "cyclegan"
    shared_defaults: ClassVar[dict[str, Any]] = {
        "loss.lambda_cycle": LAMBDA_CYCLE,
        "loss.lambda_identity": LAMBDA_IDENTITY,
        "train.pool_size": 50,
    }


@dataclass
class CUTMethodConfig(MethodConfig):
    """CUT (Park et al. 2020): one generator A -> B kept faithful by a patchwise contrastive loss."""

    name: str = "cut"
    lambda_GAN: float = 1.0  # weight of the adversarial term of the generator's loss
    lambda_NCE: float = 1.0  # weight of PatchNCE(G(A), A) (and of PatchNCE(G(B), B))
    nce_idt: bool = True  # also PatchNCE(G(B), B): G should leave B as it is
    # encoder layers compared by PatchNCE; null: the paper's for the generator (see gantrans.methods.cut)
    nce_layers: list[int] | None = None
    num_patches: int = 256  # locations sampled per layer and image, shared by query and key
    nce_T: float = 0.07  # temperature of the contrastive softmax
    head_units: int = 256  # width of each layer's 2-layer MLP projection head
    flip_equivariance: bool = False  # flip the input half the time; features must flip with it
    directions: ClassVar[tuple[str, ...]] = ("AtoB",)
    shared_defaults: ClassVar[dict[str, Any]] = {"train.pool_size": 0}  # no image buffer
    not_applicable: ClassVar[dict[str, str]] = {
        "loss.lambda_cycle": "it has no cycle",
        "loss.lambda_identity": "its identity term is method.nce_idt",
    }


@dataclass
class FastCUTMethodConfig(CUTMethodConfig):
    """FastCUT: CUT without the identity term, a stronger PatchNCE and flip equivariance."""

    name: str = "fastcut"
    lambda_NCE: float = 10.0
    nce_idt: bool = False
    flip_equivariance: bool = True


@dataclass
class DCGANMethodConfig(MethodConfig):
    """DCGAN (Radford et al. 2016): unconditional generation of one domain's images from noise.

    It trains on `dataset.domain` only and translates nothing: `gantrans sample` draws images.
    """

    name: str = "dcgan"
    directions: ClassVar[tuple[str, ...]] = ()
    shared_defaults: ClassVar[dict[str, Any]] = {"train.pool_size": 0, "dataset.domain": "B"}
    not_applicable: ClassVar[dict[str, str]] = {
        "loss.lambda_cycle": "it has no cycle",
        "loss.lambda_identity": "it has no translation to keep the identity of",
    }
    # options that only mean something with two domains: refused when set to these values
    two_domain: ClassVar[dict[str, Any]] = {"dataset.balance": True}


@dataclass
class Pix2PixMethodConfig(MethodConfig):
    """pix2pix (Isola et al. 2017): a conditional GAN on aligned pairs, one generator input ->
    target and a discriminator that sees the input and an output side by side on channels."""

    name: str = "pix2pix"
    direction: Direction = Direction.AtoB  # AtoB: A is the input and B the target; BtoA: reverse
    lambda_L1: float = 100.0  # weight of ||G(input) - target||_1
    directions: ClassVar[tuple[str, ...]] = ("AtoB",)  # the configured one: see method_directions
    not_applicable: ClassVar[dict[str, str]] = {
        "loss.lambda_cycle": "it has no cycle",
        "loss.lambda_identity": "it has no identity term",
        "train.pool_size": "its discriminator sees each pair as it is made, without an image buffer",
    }


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


def register_configs() -> None:
    """Register every schema in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="translate_schema", node=TranslateConfig)
    evaluate = OmegaConf.structured(EvaluateConfig)
    OmegaConf.set_struct(evaluate.dataset, False)  # dataset.KEY=VALUE needs no '+'
    cs.store(name="evaluate_schema", node=evaluate)
    cs.store(name="download_schema", node=DownloadConfig)
    cs.store(name="export_schema", node=ExportConfig)
    cs.store(name="serve_schema", node=ServeConfig)
    cs.store(name="sample_schema", node=SampleConfig)
    cs.store(group="dataset", name="shapes_schema", node=ShapesDatasetConfig)
    cs.store(group="dataset", name="folder_schema", node=FolderDatasetConfig)
    cs.store(group="dataset", name="aligned_schema", node=AlignedDatasetConfig)
    cs.store(group="dataset", name="shapes_paired_schema", node=ShapesPairedDatasetConfig)
    cs.store(group="dataset", name="smiles_schema", node=SmilesDatasetConfig)
    cs.store(group="dataset", name="celeba_schema", node=CelebADatasetConfig)
    cs.store(group="model", name="resnet_schema", node=ResnetGeneratorConfig)
    cs.store(group="model", name="unet_schema", node=UnetGeneratorConfig)
    cs.store(group="model", name="dcgan_schema", node=DCGANGeneratorConfig)
    cs.store(group="discriminator", name="patchgan_schema", node=PatchGANConfig)
    cs.store(group="discriminator", name="pixel_schema", node=PixelDiscriminatorConfig)
    cs.store(group="discriminator", name="dcgan_schema", node=DCGANDiscriminatorConfig)
    cs.store(group="loss", name="loss_schema", node=LossConfig)
    cs.store(group="method", name="cyclegan_schema", node=CycleGANMethodConfig)
    cs.store(group="method", name="cut_schema", node=CUTMethodConfig)
    cs.store(group="method", name="fastcut_schema", node=FastCUTMethodConfig)
    cs.store(group="method", name="dcgan_schema", node=DCGANMethodConfig)
    cs.store(group="method", name="pix2pix_schema", node=Pix2PixMethodConfig)


def to_plain(cfg: DictConfig | Any) -> Any:
    """A resolved config (a DictConfig or a schema dataclass instance) as plain Python
    containers, enums as their string values: what a checkpoint or config.yaml can hold."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        cfg = OmegaConf.structured(cfg)
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True, throw_on_missing=True)
    return cfg


def method_schema(cfg: DictConfig) -> type[MethodConfig]:
    """The schema class of the composed config's method section."""
    schema = OmegaConf.get_type(cfg.method)
    if not (isinstance(schema, type) and issubclass(schema, MethodConfig)):
        raise ConfigError(
            f"method={cfg.method.get('name')} has no method schema: its config file must start "
            "its defaults list with cyclegan_schema, cut_schema, fastcut_schema or pix2pix_schema"
        )
    return schema


def method_directions(cfg: DictConfig) -> tuple[str, ...]:
    """What a checkpoint of the composed config's method translates (pix2pix: the configured
    method.direction; the others: their schema's `directions`)."""
    if "direction" in cfg.method:
        return (str(cfg.method.direction),)
    return method_schema(cfg).directions


def apply_method_defaults(cfg: DictConfig) -> None:
    """Fill the options left null whose default depends on the method (`shared_defaults`)."""
    for key, value in method_schema(cfg).shared_defaults.items():
        if OmegaConf.select(cfg, key) is None:
            OmegaConf.update(cfg, key, value)


def _check_method(cfg: DictConfig) -> None:
    """Options of other groups the method refuses, and the method's own values."""
    schema, m = method_schema(cfg), cfg.method
    for key, reason in schema.not_applicable.items():
        if OmegaConf.select(cfg, key) is not None:
            raise ConfigError(f"{key} does not apply to method={m.name} ({reason}): remove it")
    if issubclass(schema, CUTMethodConfig):
        for key in ("num_patches", "nce_T", "head_units"):
            _positive(m[key], f"method.{key}")
        if m.lambda_GAN < 0 or m.lambda_NCE < 0 or m.lambda_GAN == m.lambda_NCE == 0:
            raise ConfigError(
                "method.lambda_GAN and method.lambda_NCE must be >= 0 and not both 0 "
                f"(got {m.lambda_GAN} and {m.lambda_NCE})"
            )
        layers = m.nce_layers
        if layers is not None and (not layers or min(layers) < 0 or len(set(layers)) < len(layers)):
            raise ConfigError(
                f"method.nce_layers={list(layers)} must be distinct layer indices >= 0, or null "
                "for the paper's layers"
            )
    _check_domains(cfg, schema)
    if issubclass(schema, Pix2PixMethodConfig) and m.lambda_L1 < 0:
        raise ConfigError(f"method.lambda_L1 must be >= 0, got {m.lambda_L1}")
    t, directions = cfg.train, method_directions(cfg)
    if t.eval_every and not metric_available(t.eval_metric, directions):
        raise ConfigError(
            f"train.eval_metric={t.eval_metric} is not measured for method={m.name}, which "
            f"translates {' and '.join(directions)} only: choose a metric of that direction"
        )


def _check_domains(cfg: DictConfig, schema: type[MethodConfig]) -> None:
    """A single-domain method (DCGAN) against the two-domain options, and the other way round."""
    name, domain = cfg.method.name, cfg.dataset.get("domain")
    single = issubclass(schema, DCGANMethodConfig)
    if not single:
        if domain is not None:
            raise ConfigError(
                f"dataset.domain={domain} applies to method=dcgan only (method={name} trains on "
                "both domains): remove it"
            )
        if cfg.discriminator.name == "dcgan":
            raise ConfigError(
                f"discriminator=dcgan scores whole images of model.image_size for method=dcgan: "
                f"pick patchgan or pixel for method={name}"
            )
        if cfg.model.name == "dcgan":
            raise ConfigError(
                f"model=dcgan generates images from noise and cannot translate: use it with "
                f"method=dcgan, or pick a translation generator for method={name} "
                "(resnet6, resnet9, unet128, unet256)"
            )
        return
    if domain is not None and domain not in ("A", "B"):
        raise ConfigError(f"dataset.domain={domain} is not a domain: choose A or B")
    for key, value in schema.two_domain.items():
        if OmegaConf.select(cfg, key) == value:
            raise ConfigError(
                f"{key}={value} needs two domains; method=dcgan trains on one "
                "(dataset.domain): remove it"
            )
    t = cfg.train
    if t.pool_size:
        raise ConfigError(
            f"train.pool_size={t.pool_size} does not apply to method=dcgan (it keeps no buffer "
            "of generated images): remove it"
        )
    if t.eval_every:
        raise ConfigError(
            "train.eval_every does not apply to method=dcgan, which translates nothing: score "
            "its checkpoints with `gantrans evaluate ckpt=...` (FID/KID of samples)"
        )
    if cfg.model.name != "dcgan":
        raise ConfigError(
            f"method=dcgan generates from noise and needs model=dcgan, not model "
            f"{cfg.model.name} (an image-to-image generator): pass model=dcgan"
        )
    size, data_size = cfg.model.image_size, image_size(cfg.dataset)
    if size not in DCGAN_SIZES:
        raise ConfigError(
            f"model.image_size={size}: the DCGAN networks build for "
            f"{', '.join(map(str, DCGAN_SIZES))} px"
        )
    if size != data_size:
        raise ConfigError(
            f"model.image_size={size} but dataset={cfg.dataset.name} gives {data_size} px "
            "images: set model.image_size to the dataset's size or the dataset's image size "
            "(dataset.image_size, or dataset.load_size and dataset.crop_size) to the model's"
        )
    d_norm = str(cfg.discriminator.norm) if cfg.discriminator.name == "dcgan" else None
    if "instance" in (str(cfg.model.norm), d_norm):
        raise ConfigError("method=dcgan networks take norm=batch or norm=none, not instance")


def _positive(value: Any, key: str) -> None:
    if value is not None and value <= 0:
        raise ConfigError(f"{key} must be positive, got {value}")


def check_known_keys(cfg: DictConfig, prefix: str = "") -> None:
    """Refuse keys that a section's schema does not define (Hydra lets `+key=value` add them)."""
    schema = OmegaConf.get_type(cfg)
    if dataclasses.is_dataclass(schema):
        known = {f.name for f in dataclasses.fields(schema)}
        for key in cfg.keys():
            if key not in known:
                raise ConfigError(
                    f"{prefix}{key} is not an option of {schema.__name__}; "
                    f"known keys: {', '.join(sorted(known))}"
                )
    for key in cfg.keys():
        node = cfg._get_node(key)
        if isinstance(node, DictConfig):
            check_known_keys(node, f"{prefix}{key}.")


def check_train_config(cfg: DictConfig) -> None:
    """Checks across values that the schemas cannot express; raises ConfigError (one line)."""
    check_known_keys(cfg)
    t = cfg.train
    for key in ("batch_size", "log_every", "image_every", "checkpoint_every", "num_samples"):
        _positive(t[key], f"train.{key}")
    _positive(t.max_steps, "train.max_steps")
    _positive(t.lr, "train.lr")
    if t.n_epochs < 0 or t.n_epochs_decay < 0 or t.n_epochs + t.n_epochs_decay == 0:
        raise ConfigError(
            "train.n_epochs and train.n_epochs_decay must be >= 0 and not both 0 "
            f"(got {t.n_epochs} and {t.n_epochs_decay})"
        )
    if t.eval_every < 0:
        raise ConfigError(f"train.eval_every must be >= 0 (0 = off), got {t.eval_every}")
    if t.eval_every:
        if t.eval_metric not in LOWER_IS_BETTER:
            raise ConfigError(
                f"train.eval_metric={t.eval_metric} is not a metric: choose one of "
                f"{', '.join(sorted(LOWER_IS_BETTER))}"
            )
        if t.eval_metric.startswith("c2st") and not t.eval_c2st:
            raise ConfigError(f"train.eval_metric={t.eval_metric} needs train.eval_c2st=true")
    if not 0 < t.rollback_lr_factor <= 1 or t.max_rollbacks < 0:
        raise ConfigError("train.rollback_lr_factor must be in (0, 1] and train.max_rollbacks >= 0")
    if t.num_workers < 0 or (t.pool_size is not None and t.pool_size < 0):
        raise ConfigError("train.num_workers and train.pool_size must be >= 0")
    if cfg.dataset.channels not in (1, 3):
        raise ConfigError(f"dataset.channels must be 1 or 3, got {cfg.dataset.channels}")
    if "crop_size" in cfg.dataset and "load_size" in cfg.dataset:
        if cfg.dataset.crop_size > cfg.dataset.load_size and cfg.dataset.get("preprocess") not in (
            "crop",
            "none",
        ):
            raise ConfigError(
                f"dataset.crop_size={cfg.dataset.crop_size} is larger than "
                f"dataset.load_size={cfg.dataset.load_size}: set crop_size <= load_size"
            )
    for key in ("ngf",):
        _positive(cfg.model[key], f"model.{key}")
    _positive(cfg.discriminator.ndf, "discriminator.ndf")
    if cfg.model.name == "resnet" and cfg.model.n_blocks < 0:
        raise ConfigError(f"model.n_blocks must be >= 0, got {cfg.model.n_blocks}")
    if cfg.model.name == "unet" and cfg.model.num_downs < 5:
        raise ConfigError(f"model.num_downs must be at least 5, got {cfg.model.num_downs}")
    if cfg.discriminator.name == "patchgan" and cfg.discriminator.n_layers < 1:
        raise ConfigError(f"discriminator.n_layers must be >= 1, got {cfg.discriminator.n_layers}")
    if cfg.loss.critic_steps < 1:
        raise ConfigError(f"loss.critic_steps must be >= 1, got {cfg.loss.critic_steps}")
    _check_quality_options(cfg)
    for key in ("lambda_cycle", "lambda_identity", "lambda_gp"):
        if cfg.loss[key] is not None and cfg.loss[key] < 0:
            raise ConfigError(f"loss.{key} must be >= 0, got {cfg.loss[key]}")
    _check_method(cfg)
    size = image_size(cfg.dataset)
    if cfg.model.name == "unet" and size % (2**cfg.model.num_downs):
        raise ConfigError(
            f"model=unet with num_downs={cfg.model.num_downs} needs images whose side is a multiple "
            f"of {2**cfg.model.num_downs}, but the dataset gives {size}: pick unet128 for 128 px, "
            "unet256 for 256 px, or change the crop size"
        )


def _check_quality_options(cfg: DictConfig) -> None:
    """The change mask, R1, spectral norm, DiffAugment and EMA options."""
    loss, t = cfg.loss, cfg.train
    for key in ("lambda_mask", "lambda_mask_tv", "r1_gamma"):
        if loss[key] < 0:
            raise ConfigError(f"loss.{key} must be >= 0, got {loss[key]}")
    if loss.r1_every < 1:
        raise ConfigError(f"loss.r1_every must be >= 1, got {loss.r1_every}")
    if loss.mask_area is not None and not 0 <= loss.mask_area <= 1:
        raise ConfigError(f"loss.mask_area must be in [0, 1] or null, got {loss.mask_area}")
    if not 0 <= t.ema < 1:
        raise ConfigError(f"train.ema must be in [0, 1) (0 = off, e.g. 0.999), got {t.ema}")
    policy = cfg.discriminator.get("augment")
    names = [p.strip() for p in str(policy or "").replace("+", ",").split(",") if p.strip()]
    unknown = [n for n in names if n not in AUGMENT_POLICIES]
    if unknown:
        raise ConfigError(
            f"discriminator.augment={policy}: {', '.join(unknown)} is not an augmentation; "
            f"use some of {', '.join(AUGMENT_POLICIES)} joined by +, e.g. color+translation+cutout"
        )
    if loss.r1_gamma and cfg.method.name == "pix2pix":
        raise ConfigError(
            "loss.r1_gamma does not apply to method=pix2pix (its discriminator scores pairs, "
            "not images of one domain): remove it"
        )


def image_size(dataset_cfg: DictConfig) -> int:
    """The side of the square training images a dataset config produces."""
    if "crop_size" in dataset_cfg:
        return int(dataset_cfg.crop_size)
    return int(dataset_cfg.image_size)


def prepare_train_config(cfg: DictConfig) -> TrainConfig:
    """Check a composed `train` config, fill the method-dependent defaults (in `cfg` too, so
    what is recorded shows the values used) and return it as typed schema objects."""
    check_train_config(cfg)
    apply_method_defaults(cfg)
    return OmegaConf.to_object(cfg)


def compose_config(command: str, overrides: Sequence[str] = ()) -> DictConfig:
    """The config `gantrans COMMAND OVERRIDES` composes (for scripts and tests), unchecked."""
    from hydra import compose, initialize_config_module

    register_configs()
    with initialize_config_module("gantrans.configs", version_base="1.3"):
        return compose(command, overrides=list(overrides))


def compose_train_config(overrides: Sequence[str] = ()) -> TrainConfig:
    """The typed config `gantrans train OVERRIDES` would run with (for scripts and tests)."""
    return prepare_train_config(compose_config("train", overrides))
