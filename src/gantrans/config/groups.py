"""The schemas of the config groups a run is assembled from: dataset, model (the generator),
discriminator and loss. The method group's schemas live with each method
(gantrans/methods/<name>_options.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING, DictConfig

from gantrans.config.choices import GanMode, InitType, Norm, PaddingType, Upsample


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
    # transpose: stride-2 transposed convolutions (the paper's); resize: nearest-neighbour x2
    # then a 3x3 convolution, without the transposed convolutions' checkerboard
    upsample: Upsample = Upsample.transpose


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
    # translation methods with an unpaired input (cyclegan, cut, fastcut): lambda_tone x the mean
    # |difference| between the input's and the translation's mean values over a tone_cells x
    # tone_cells grid of regions. It keeps the coarse tones: a cycle can undo a remap of the
    # whole image's grey levels, so the cycle term lets it through; null (or 0) = off
    lambda_tone: float | None = None
    tone_cells: int = 4


def image_size(dataset_cfg: DictConfig) -> int:
    """The side of the square training images a dataset config produces."""
    if "crop_size" in dataset_cfg:
        return int(dataset_cfg.crop_size)
    return int(dataset_cfg.image_size)
