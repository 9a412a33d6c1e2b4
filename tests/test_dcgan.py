"""method=dcgan: the networks, the config checks, training (resume, faults, signals), `gantrans
sample`, and translate/export/serve/evaluate on a DCGAN checkpoint."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from gantrans.applying.sample import slerp
from gantrans.checkpoint import load_checkpoint
from gantrans.config import compose_train_config
from gantrans.data import build_domain
from gantrans.data.train_data import build_data
from gantrans.evaluation.samples import diversity
from gantrans.models.dcgan import DCGANDiscriminator, DCGANGenerator
from gantrans.training.distributed import DistInfo

from .conftest import make_checkpoint, one_line_error, write_image
from .test_reliability import _wait_for, poison_step

# 16 px shapes (the shapes recipe makes model.image_size follow dataset.image_size), 4 filters
TINY_DCGAN = [
    "method=dcgan",
    "precision=fp32",
    "model.ngf=4",
    "model.nz=8",
    "discriminator.ndf=4",
    "dataset.image_size=16",
    "dataset.train_size=16",
    "dataset.test_size=8",
    "train.batch_size=4",
    "train.num_workers=0",
    "train.progress=false",
    "train.log_every=1",
    "train.image_every=2",
    "train.num_samples=2",
]


def train_args(run: Path, *extra: str) -> list[str]:
    return ["train", *TINY_DCGAN, f"hydra.run.dir={run}", *extra]


@pytest.fixture(scope="module")
def dcgan_run(tmp_path_factory) -> Path:
    """A tiny DCGAN run of 4 steps on the shapes' squares; returns its run directory."""
    from gantrans import cli

    run = tmp_path_factory.mktemp("dcgan") / "run"
    assert cli.main(train_args(run, "train.max_steps=4")) == 0
    return run


# ---------------------------------------------------------------------------------------------
# networks
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [16, 32, 64, 128])
def test_networks_build_for_each_size(size):
    G, D = DCGANGenerator(10, 3, size, ngf=4), DCGANDiscriminator(3, size, ndf=4)
    images = G(torch.randn(2, 10))
    assert images.shape == (2, 3, size, size)
    assert images.min() >= -1 and images.max() <= 1  # tanh
    assert D(images).shape == (2, 1, 1, 1)  # one logit per image


def test_networks_at_64_px_are_the_papers():
    """The parameter counts of the DCGAN paper's 64 px networks (nz 100, ngf = ndf = 64, RGB),
    as in PyTorch's DCGAN example: 3,576,704 and 2,765,568."""
    G, D = DCGANGenerator(100, 3, 64, 64), DCGANDiscriminator(3, 64, 64)
    assert sum(p.numel() for p in G.parameters()) == 3_576_704
    assert sum(p.numel() for p in D.parameters()) == 2_765_568
    kinds = [type(m).__name__ for m in G.main]
    assert kinds.count("ConvTranspose2d") == 5 and kinds.count("BatchNorm2d") == 4
    assert kinds[-1] == "Tanh" and "ReLU" in kinds
    kinds = [type(m).__name__ for m in D.main]
    assert kinds.count("LeakyReLU") == 4 and kinds.count("BatchNorm2d") == 3
    assert all(m.stride == (2, 2) for m in D.main[:-1] if isinstance(m, torch.nn.Conv2d))


# ---------------------------------------------------------------------------------------------
# configs
# ---------------------------------------------------------------------------------------------
def test_method_dcgan_brings_its_networks_loss_and_optimiser():
    cfg = compose_train_config(["method=dcgan", "dataset=smiles"])
    assert cfg.model.name == "dcgan" and cfg.discriminator.name == "dcgan"
    assert str(cfg.loss.name) == "bce" and cfg.model.nz == 100 and cfg.model.image_size == 64
    assert (cfg.train.lr, cfg.train.beta1, cfg.train.n_epochs_decay) == (2e-4, 0.5, 0)
    assert cfg.dataset.domain == "B" and cfg.dataset.image_size == 64 and cfg.dataset.rotate == 0
    cfg = compose_train_config(["method=dcgan", "dataset=celeba", "model.image_size=128"])
    assert cfg.dataset.image_size == 128  # the dataset follows the networks' side
    cfg = compose_train_config(["method=dcgan", "loss=wgangp", "dataset.domain=A"])
    assert str(cfg.loss.name) == "wgangp" and cfg.dataset.domain == "A"


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ["method=dcgan", "loss.lambda_cycle=5"],
            "loss.lambda_cycle does not apply to method=dcgan",
        ),
        (
            ["method=dcgan", "dataset=smiles", "dataset.balance=true"],
            "dataset.balance=True needs two domains",
        ),
        (
            ["method=dcgan", "train.pool_size=50"],
            "train.pool_size=50 does not apply to method=dcgan",
        ),
        (["method=dcgan", "train.eval_every=1"], "gantrans evaluate ckpt="),
        (
            ["method=dcgan", "model=resnet6"],
            "method=dcgan generates from noise and needs model=dcgan",
        ),
        (["model=dcgan"], "model=dcgan generates images from noise and cannot translate"),
        (["dataset.domain=B"], "dataset.domain=B applies to method=dcgan only"),
        (["method=dcgan", "dataset.domain=C"], "dataset.domain=C is not a domain"),
        (["method=dcgan", "model.image_size=24"], "model.image_size=24: the DCGAN networks"),
        (
            ["method=dcgan", "dataset=smiles", "model.image_size=32", "dataset.image_size=64"],
            "model.image_size=32 but dataset=smiles gives 64 px",
        ),
    ],  # fmt: skip
)
def test_two_domain_options_and_wrong_networks_are_one_line(gantrans, tmp_path, overrides, message):
    line = one_line_error(gantrans("train", *overrides, f"hydra.run.dir={tmp_path / 'run'}"))
    assert message in line
    assert not (tmp_path / "run").exists()  # the failed start leaves nothing behind


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------
def test_tiny_run_writes_its_networks_losses_grids_and_checkpoint(dcgan_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ckpt = load_checkpoint(dcgan_run / "checkpoints" / "latest.pt")
    assert ckpt["method"] == "dcgan" and ckpt["directions"] == {} and ckpt["step"] == 4
    assert set(ckpt["models"]) == {"G", "D"} and set(ckpt["optimizers"]) == {"G", "D"}
    assert ckpt["arch"]["generator"] == {
        "name": "dcgan", "nz": 8, "image_size": 16, "ngf": 4, "norm": "batch", "out_channels": 3,
    }  # fmt: skip
    assert ckpt["config"]["dataset"]["domain"] == "B"
    acc = EventAccumulator(str(dcgan_run / "tb"))
    acc.Reload()
    assert {"loss/G_GAN", "loss/D", "loss/D_acc", "loss/G", "lr/G", "lr/D"} <= set(
        acc.Tags()["scalars"]
    )
    assert "test/samples" in acc.Tags()["images"]
    grid = Image.open(dcgan_run / "samples" / "test_samples_0000004.png")
    assert grid.width < grid.height * 2  # 2 columns: a row of real images over 3 of samples
    log = (dcgan_run / "train.log").read_text()
    assert "method dcgan" in log and "16 images of domain B" in log


def test_trains_on_the_domain_asked_for():
    cfg = {"name": "shapes", "image_size": 16, "train_size": 8, "test_size": 4, "seed": 0}
    a = build_domain({**cfg, "domain": "A"}, "train", 3).load(0)
    b = build_domain({**cfg, "domain": "B"}, "train", 3).load(0)
    # the same colour, place and size: a circle (A) has background in its corners, a square not
    assert not torch.equal(a, b)
    with pytest.raises(Exception, match="dataset.domain='C' is not a domain"):
        build_domain({**cfg, "domain": "C"}, "train", 3)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(path)
    return {f"{n}.{k}": v for n, sd in ckpt["models"].items() for k, v in sd.items()}


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(gantrans, tmp_path):
    # 4 steps an epoch: the interruption at step 5 falls mid-epoch after an epoch boundary;
    # the latents come from the RNG the checkpoint carries, batch norm keeps running stats
    common = ["train.n_epochs=2", "train.n_epochs_decay=1"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert gantrans(*train_args(straight, *common, "train.max_steps=7"))[0] == 0
    assert gantrans(*train_args(split, *common, "train.max_steps=5"))[0] == 0
    code, _, err = gantrans(*train_args(split, *common, "train.max_steps=7", "resume=auto"))
    assert code == 0, err
    a = _weights(straight / "checkpoints" / "latest.pt")
    b = _weights(split / "checkpoints" / "latest.pt")
    assert a.keys() == b.keys() and any("running_mean" in k for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize(
    "extra,term",
    [(["loss=wgangp", "discriminator.norm=none", "loss.critic_steps=2"], "D_gp"),
     (["loss=lsgan", "discriminator=patchgan", "discriminator.n_layers=1"], "D_acc")],
    ids=["wgangp", "lsgan-patchgan"],
)  # fmt: skip
def test_other_losses_and_discriminators_train(gantrans, tmp_path, extra, term):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    code, _, err = gantrans(*train_args(run, *extra, "train.max_steps=4"))
    assert code == 0, err
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    values = [e.value for e in acc.Scalars(f"loss/{term}")]
    assert values and all(torch.isfinite(torch.tensor(values)))
    if "loss.critic_steps=2" in extra:  # G steps every second batch only
        assert len(acc.Scalars("loss/G_GAN")) < len(acc.Scalars("loss/D"))


def test_nan_stops_and_rollback_recovers(gantrans, tmp_path, monkeypatch):
    poison_step(monkeypatch, {3}, "G_GAN")
    run = tmp_path / "stop"
    code, _, err = gantrans(*train_args(run, "train.max_steps=4", "train.checkpoint_every=2"))
    assert code == 2 and "loss G_GAN became non-finite at step 3" in err.strip().splitlines()[-1]
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["step"] == 2
    poison_step(monkeypatch, {3}, "G_GAN")
    run = tmp_path / "rollback"
    code, out, err = gantrans(*train_args(run, "train.max_steps=4", "train.checkpoint_every=2",
                                          "train.on_nonfinite=rollback"))  # fmt: skip
    assert code == 0, err
    assert "rolled back to step 2" in out
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["step"] == 4


def test_sigterm_stops_with_a_checkpoint(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "gantrans", *train_args(run), "train.max_steps=100000",
           "train.checkpoint_every=100000", "train.log_every=50", "train.image_every=1000"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(run / "tb", 60)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    assert "stopped by SIGTERM" in out and "resume=auto" in out and "Traceback" not in out
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert ckpt["method"] == "dcgan" and ckpt["step"] == ckpt["schedulers"]["G"]["last_epoch"]


def test_train_step_is_the_losses_of_the_paper():
    """One step's logged terms are BCE of D on real (target 1) and G(z) (target 0), halved, and
    BCE of D(G(z)) against 1: recomputed here from the same latents."""
    from gantrans.training.engine import build_training, train_step

    cfg = compose_train_config([*TINY_DCGAN])
    torch.manual_seed(0)
    st = build_training(cfg, torch.device("cpu"))
    real = torch.rand(4, 3, 16, 16) * 2 - 1
    state = torch.get_rng_state()
    G, D = st.method.G, st.method.D
    import copy

    G0, D0 = copy.deepcopy(G), copy.deepcopy(D)
    terms = train_step(st, {"real": real})
    torch.set_rng_state(state)
    z = torch.randn(4, 8)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    fake = G0(z)
    pr, pf = D0(real), D0(fake.detach())
    d_loss = 0.5 * (bce(pr, torch.ones_like(pr)) + bce(pf, torch.zeros_like(pf)))
    torch.testing.assert_close(terms["D"], d_loss.detach())
    assert 0 <= terms["D_acc"] <= 1 and torch.isfinite(terms["G_GAN"])


# ---------------------------------------------------------------------------------------------
# gantrans sample
# ---------------------------------------------------------------------------------------------
def test_sample_writes_images_a_grid_and_an_interpolation_strip(gantrans, dcgan_run, tmp_path):
    ckpt = dcgan_run / "checkpoints" / "latest.pt"
    out = tmp_path / "a"
    code, _, err = gantrans("sample", f"ckpt={ckpt}", "n=5", f"output_dir={out}",
                            "interpolate=true", "interpolate_rows=2", "interpolate_steps=4")  # fmt: skip
    assert code == 0, err
    files = sorted(p.name for p in out.glob("sample_*.png"))
    assert files == [f"sample_{i:04d}.png" for i in range(5)]
    assert Image.open(out / "sample_0000.png").size == (16, 16)
    assert Image.open(out / "grid.png").size == (3 * 18 + 2, 2 * 18 + 2)  # 3 columns, 2 rows
    assert Image.open(out / "interpolation.png").size == (4 * 18 + 2, 2 * 18 + 2)
    # the same seed, the same images; another seed, others
    assert gantrans("sample", f"ckpt={ckpt}", "n=5", f"output_dir={tmp_path / 'b'}")[0] == 0
    assert (
        gantrans("sample", f"ckpt={ckpt}", "n=5", "seed=1", f"output_dir={tmp_path / 'c'}")[0] == 0
    )
    same = (out / "grid.png").read_bytes() == (tmp_path / "b" / "grid.png").read_bytes()
    other = (out / "grid.png").read_bytes() != (tmp_path / "c" / "grid.png").read_bytes()
    assert same and other


def test_sample_default_folder_is_in_the_run(gantrans, dcgan_run):
    assert gantrans("sample", f"ckpt={dcgan_run / 'checkpoints' / 'latest.pt'}", "n=2")[0] == 0
    assert (dcgan_run / "generated" / "grid.png").exists()


def test_sample_on_a_translation_checkpoint_is_one_line(gantrans, tmp_path):
    ckpt = make_checkpoint(tmp_path / "cyclegan.pt")
    line = one_line_error(gantrans("sample", f"ckpt={ckpt}", f"output_dir={tmp_path / 'out'}"))
    assert "is a cyclegan model, which translates images rather than generating them" in line
    assert "gantrans translate" in line and not (tmp_path / "out").exists()
    assert "n must be positive" in one_line_error(gantrans("sample", f"ckpt={ckpt}", "n=0"))


def test_slerp_keeps_its_ends_and_the_norm_between_them():
    z0, z1 = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    path = slerp(z0, z1, torch.linspace(0, 1, 5))  # (1, 5, 2)
    torch.testing.assert_close(path[0, 0], z0[0])
    torch.testing.assert_close(path[0, -1], z1[0])
    torch.testing.assert_close(path.norm(dim=-1), torch.full((1, 5), 3.0))
    same = slerp(z0, z0, torch.linspace(0, 1, 3))  # parallel ends: no division by sin(0)
    assert torch.isfinite(same).all()


# ---------------------------------------------------------------------------------------------
# the other commands on a DCGAN checkpoint
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "command", [["translate", "input=IN"], ["export", "format=onnx"], ["serve", "port=0"]]
)
def test_translating_commands_say_it_generates(gantrans, dcgan_run, tmp_path, command):
    image = write_image(tmp_path / "in.png", (16, 16))
    args = [a.replace("IN", str(image)) for a in command]
    ckpt = dcgan_run / "checkpoints" / "latest.pt"
    line = one_line_error(gantrans(args[0], f"ckpt={ckpt}", *args[1:]))
    assert "is a dcgan model: it generates images from noise rather than translating them" in line
    assert "gantrans sample" in line


def test_evaluate_scores_samples_against_real_images(gantrans, dcgan_run, tmp_path):
    out = tmp_path / "eval"
    code, stdout, err = gantrans(
        "evaluate", f"ckpt={dcgan_run / 'checkpoints' / 'latest.pt'}", "features=classifier",
        "judge_epochs=1", "c2st_epochs=1", "progress=false", f"output_dir={out}",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((out / "evaluation.json").read_text())
    m = report["metrics"]
    for key in ("fid_samples", "kid_samples", "domain_acc_samples", "real_domain_acc_samples",
                "c2st_acc_samples", "pixel_diversity_samples", "feature_diversity_samples",
                "nn_train_ratio_samples"):  # fmt: skip
        assert key in m and m[key] == m[key], key  # present and not NaN
    assert report["settings"]["domain"] == "B" and report["settings"]["samples"] == 8
    assert (out / "samples.png").exists() and "fid_samples" in (out / "evaluation.md").read_text()
    assert "samples of domain B against 8 real test images" in stdout
    line = one_line_error(gantrans("evaluate", f"ckpt={dcgan_run / 'checkpoints' / 'latest.pt'}",
                                   "direction=AtoB"))  # fmt: skip
    assert "direction= does not apply to a dcgan checkpoint" in line


def test_diversity_figures_tell_collapse_and_copies():
    g = torch.Generator().manual_seed(0)
    real, train_images = torch.rand(16, 1, 8, 8, generator=g), torch.rand(32, 1, 8, 8, generator=g)
    feats = lambda x: x.flatten(1)  # noqa: E731 -- pixels as features
    collapsed = real[:1].repeat(16, 1, 1, 1)
    d = diversity(collapsed, real, feats(collapsed), feats(real), feats(train_images))
    assert d["pixel_diversity_samples"] == 0 and d["feature_diversity_samples"] == 0
    copies = train_images[:16]
    d = diversity(copies, real, feats(copies), feats(real), feats(train_images))
    assert d["nn_train_ratio_samples"] == 0 and 0.7 < d["pixel_diversity_samples"] < 1.3


def test_a_plain_folder_of_images_is_one_domain(tmp_path):
    for i in range(30):
        write_image(tmp_path / "faces" / f"{i:03d}.png", (20, 20), seed=i)
    cfg = {"name": "folder", "root": str(tmp_path / "faces"), "load_size": 16, "crop_size": 16,
           "preprocess": "resize_and_crop", "flip": True, "domain": "B"}  # fmt: skip
    tr, te = build_domain(cfg, "train", 3), build_domain(cfg, "test", 3)
    names = {tr.name(i) for i in range(len(tr))} | {te.name(i) for i in range(len(te))}
    assert len(tr) + len(te) == 30 and len(names) == 30 and len(te) >= 1
    assert tr.load(0).shape == (3, 16, 16)


def test_train_data_is_single_domain(monkeypatch):
    cfg = compose_train_config([*TINY_DCGAN])
    data = build_data("single", cfg, DistInfo(), torch.device("cpu"))
    batch = next(iter(data.loader))
    assert batch["real"].shape == (4, 3, 16, 16) and data.steps_per_epoch == 4
    assert data.sizes == (16,) and set(data.samples["test"]) == {"real"}
