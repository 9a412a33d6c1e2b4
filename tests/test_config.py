"""Every shipped config composes, validates and builds; bad configs fail with one clear line."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from gantrans.config import (
    check_train_config,
    compose_train_config,
    register_configs,
    to_plain,
)
from gantrans.errors import ConfigError
from gantrans.methods import CycleGAN, discriminator_arch, generator_arch

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def compose_train(overrides: list[str]):
    register_configs()
    with initialize_config_module("gantrans.configs", version_base="1.3"):
        return compose("train", overrides=overrides)


def test_groups_ship_the_documented_options():
    assert options("model") == ["dcgan", "resnet6", "resnet9", "unet128", "unet256"]
    assert options("discriminator") == ["dcgan", "patchgan", "pixel"]
    assert options("loss") == ["bce", "lsgan", "wgangp"]
    assert options("method") == ["cut", "cyclegan", "dcgan", "fastcut", "pix2pix"]
    assert {"shapes", "folder"} <= set(options("dataset"))


def test_paper_defaults():
    cfg = compose_train_config(["dataset=folder", "dataset.root=/data"])  # no recipe for this set
    assert cfg.method.name == "cyclegan" and cfg.loss.name == "lsgan"
    assert cfg.loss.lambda_cycle == 10.0 and cfg.loss.lambda_identity == 0.5
    assert cfg.train.lr == 2e-4 and (cfg.train.beta1, cfg.train.beta2) == (0.5, 0.999)
    assert cfg.train.pool_size == 50 and cfg.model.init_gain == 0.02
    assert cfg.model.norm == "instance" and cfg.discriminator.n_layers == 3


def test_recipes_apply_per_dataset_and_per_dataset_and_generator():
    default = compose_train([])  # shapes + resnet6: both recipe files
    assert default.model.ngf == 32 and default.loss.lambda_identity == 1.0  # shapes_cyclegan
    # the identity weight is CycleGAN's: with CUT the shapes recipe leaves it out
    assert compose_train(["method=cut"]).loss.lambda_identity is None
    assert default.model.input_skip is True
    assert compose_train(["model=resnet9"]).model.input_skip is False  # shapes.yaml only
    unet = compose_train(["model=unet128"])
    assert unet.model.ngf == 32 and "input_skip" not in unet.model
    smiles_resnet6 = compose_train(["dataset=smiles"]).model  # recipe/model/smiles_resnet6
    assert smiles_resnet6.input_skip is True and smiles_resnet6.upsample == "resize"
    smiles_resnet9 = compose_train(["dataset=smiles", "model=resnet9"]).model
    assert smiles_resnet9.input_skip is False and smiles_resnet9.upsample == "transpose"
    # the experiment takes a U-Net too: the ResNet's options are not pressed on it
    unet = compose_train(["+experiment=smiles", "model=unet128", "model.num_downs=6"]).model
    assert unet.ngf == 32 and "upsample" not in unet and "input_skip" not in unet
    # the smiles recipe drops CycleGAN's identity term, and still composes with CUT
    smiles = compose_train(["+experiment=smiles"])
    assert smiles.loss.lambda_identity == 0.0 and smiles.train.n_epochs == 3
    assert smiles.loss.lambda_tone == 2.0  # recipe/method/smiles_cyclegan.yaml
    assert compose_train_config(["+experiment=smiles", "method=cut"]).loss.lambda_identity is None


def test_cut_and_fastcut_defaults_are_the_papers():
    cut = compose_train_config(["method=cut"])
    assert (cut.method.lambda_GAN, cut.method.lambda_NCE, cut.method.nce_idt) == (1.0, 1.0, True)
    assert (cut.method.num_patches, cut.method.nce_T, cut.method.head_units) == (256, 0.07, 256)
    assert cut.method.nce_layers is None and cut.method.flip_equivariance is False
    assert cut.train.pool_size == 0 and cut.loss.lambda_cycle is None  # no buffer, no cycle
    fast = compose_train_config(["method=fastcut"])
    assert (fast.method.lambda_NCE, fast.method.nce_idt, fast.method.flip_equivariance) == (
        10.0,
        False,
        True,
    )
    # an explicit value wins over the method's default
    assert compose_train_config(["method=cut", "train.pool_size=8"]).train.pool_size == 8


def test_a_default_is_stated_once():
    """The train options' defaults live in the schema; the default run's length in its recipe."""
    assert "train:" not in (CONFIGS / "train.yaml").read_text()
    assert compose_train_config(["dataset=smiles"]).train.n_epochs_decay == 100  # the paper's
    assert compose_train_config([]).train.n_epochs_decay == 1  # the shapes recipe


TRANSLATORS = [m for m in options("model") if m != "dcgan"]  # dcgan: from noise, method=dcgan
PATCH_DISCRIMINATORS = [d for d in options("discriminator") if d != "dcgan"]


@pytest.mark.parametrize(
    "model,disc,loss",
    list(itertools.product(TRANSLATORS, PATCH_DISCRIMINATORS, options("loss"))),
)
def test_every_combination_composes_and_builds(model, disc, loss, tmp_path):
    size = {"unet128": 128, "unet256": 256}.get(model, 32)
    cfg = compose_train(
        [
            f"model={model}",
            f"discriminator={disc}",
            f"loss={loss}",
            f"dataset.image_size={size}",
            "model.ngf=2",
            "discriminator.ndf=2",
        ]
    )
    check_train_config(cfg)
    plain = to_plain(cfg)
    net = CycleGAN(generator_arch(plain["model"], 3), discriminator_arch(plain["discriminator"], 3))
    with torch.no_grad():
        out = net.G_A(torch.zeros(1, 3, size, size))
    assert out.shape == (1, 3, size, size)


@pytest.mark.parametrize(
    "disc,loss", list(itertools.product(options("discriminator"), options("loss")))
)
def test_every_dcgan_combination_composes_and_builds(disc, loss):
    from gantrans.training.engine import build_training

    overrides = ["method=dcgan", f"discriminator={disc}", f"loss={loss}", "model.ngf=2",
                 "discriminator.ndf=2", "precision=fp32"]  # fmt: skip
    if loss == "wgangp" and disc == "dcgan":
        overrides.append("discriminator.norm=none")
    st = build_training(compose_train_config(overrides), torch.device("cpu"))
    with torch.no_grad():
        fake = st.method.eval().sample(2)
        assert fake.shape == (2, 3, 32, 32) and st.method.D(fake).shape[:2] == (2, 1)


def test_folder_dataset_composes(tmp_path):
    cfg = compose_train(["dataset=folder", f"dataset.root={tmp_path}", "dataset.crop_size=64"])
    check_train_config(cfg)
    assert cfg.dataset.root == str(tmp_path) and cfg.dataset.crop_size == 64


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ["dataset=folder", "dataset.root=x", "dataset.crop_size=300"],
            "larger than dataset.load_size",
        ),
        (["train.batch_size=0"], "train.batch_size must be positive"),
        (["train.n_epochs=0", "train.n_epochs_decay=0"], "not both 0"),
        (["dataset.channels=2"], "dataset.channels must be 1 or 3"),
        (["model=unet256"], "multiple of 256"),
        (["+model.foo=1"], "model.foo is not an option"),
        (["loss.critic_steps=0"], "loss.critic_steps"),
        (["method=cut", "loss.lambda_cycle=10"], "loss.lambda_cycle does not apply to method=cut"),
        (["method=fastcut", "loss.lambda_identity=0"], "loss.lambda_identity does not apply"),
        (["method=cut", "method.num_patches=0"], "method.num_patches must be positive"),
        (["method=cut", "method.nce_layers=[4,4]"], "must be distinct layer indices"),
        (["method=cut", "method.lambda_NCE=0", "method.lambda_GAN=0"], "not both 0"),
        (
            ["method=cut", "train.eval_every=1", "train.eval_metric=fid_BtoA"],
            "not measured for method=cut, which translates AtoB only",
        ),
        (["method=cut", "train.eval_every=1", "train.eval_metric=cycle_psnr_A"], "AtoB only"),
        (["discriminator=dcgan"], "discriminator=dcgan scores whole images"),
    ],
)
def test_impossible_values_are_one_line_config_errors(overrides, message):
    cfg = compose_train(overrides)
    with pytest.raises(ConfigError, match=message) as info:
        check_train_config(cfg)
    assert "\n" not in str(info.value)


def test_resolved_config_is_plain_and_yaml_safe():
    plain = to_plain(compose_train([]))
    assert plain["model"]["norm"] == "instance" and isinstance(plain["model"]["norm"], str)
    assert OmegaConf.to_yaml(plain)


@pytest.mark.parametrize("method", options("method"))
def test_every_method_builds_and_translates_what_its_schema_says(method):
    from gantrans.config import method_directions
    from gantrans.training.engine import build_training

    overrides = [f"method={method}", "model.ngf=2", "discriminator.ndf=2", "precision=fp32"]
    st = build_training(compose_train_config(overrides), torch.device("cpu"))
    assert st.method.name == method
    assert tuple(st.method.directions) == method_directions(compose_train(overrides))
    for direction in st.method.directions:
        with torch.no_grad():
            assert st.method.translator(direction)(torch.zeros(1, 3, 32, 32)).shape == (
                1,
                3,
                32,
                32,
            )
