"""pix2pix: its paper defaults, paired data in both layouts, its loss, and a tiny run end to end."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gantrans.checkpoint import load_checkpoint
from gantrans.config import compose_train_config
from gantrans.data import PairedSampler, build_domains, build_pairs
from gantrans.training import train
from gantrans.training.engine import build_training, train_step

from .conftest import one_line_error, raises_one_line

# a narrow U-Net (5 levels for 32 px) and PatchGAN; TINY_P2P: on 16 pairs of the built-in set
TINY_P2P_NETS = [
    "method=pix2pix",
    "precision=fp32",
    "model.ngf=4",
    "discriminator.ndf=4",
    "train.num_workers=0",
    "train.progress=false",
    "train.log_every=1",
    "train.image_every=2",
    "train.num_samples=2",
    "model.num_downs=5",
]
TINY_P2P = [*TINY_P2P_NETS, "dataset.train_size=16", "dataset.test_size=4"]


def train_args(run: Path, *extra: str, nets_only: bool = False) -> list[str]:
    return ["train", *(TINY_P2P_NETS if nets_only else TINY_P2P), f"hydra.run.dir={run}", *extra]


# ---------------------------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------------------------
def test_defaults_are_the_papers_on_the_built_in_paired_set():
    cfg = compose_train_config(["method=pix2pix"])
    assert cfg.method.name == "pix2pix" and cfg.method.lambda_L1 == 100.0
    assert str(cfg.method.direction) == "AtoB" and cfg.loss.name == "bce"
    assert cfg.model.name == "unet" and cfg.model.norm == "batch" and cfg.model.dropout is True
    assert cfg.discriminator.name == "patchgan" and cfg.discriminator.norm == "batch"
    assert cfg.train.batch_size == 1 and cfg.train.pool_size is None  # no image buffer
    assert cfg.dataset.name == "shapes_paired" and cfg.model.num_downs == 5  # 32 px recipe
    # the command line still wins over the method's choices
    other = compose_train_config(["method=pix2pix", "model=resnet6", "model.norm=instance"])
    assert other.model.name == "resnet" and other.model.norm == "instance"
    assert compose_train_config(["method=pix2pix", "loss=lsgan"]).loss.name == "lsgan"


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.pool_size=8", "train.pool_size does not apply to method=pix2pix"),
        ("loss.lambda_cycle=5", "loss.lambda_cycle does not apply to method=pix2pix"),
        ("method.lambda_L1=-1", "method.lambda_L1 must be >= 0"),
    ],
)
def test_options_of_other_methods_are_refused_in_one_line(gantrans, tmp_path, override, message):
    line = one_line_error(gantrans(*train_args(tmp_path / "run", override)))
    assert message in line


def test_unpaired_data_is_refused_in_one_line(gantrans, tmp_path):
    line = one_line_error(gantrans(*train_args(tmp_path / "run", "dataset=shapes")))
    assert "dataset=shapes gives unpaired images" in line and "dataset=aligned" in line
    assert not (tmp_path / "run").exists()  # the failed start left nothing behind


# ---------------------------------------------------------------------------------------------
# paired data
# ---------------------------------------------------------------------------------------------
def gradient(size: tuple[int, int], seed: int) -> Image.Image:
    """An RGB image with structure everywhere (so a crop's offset and a flip show)."""
    w, h = size
    g = torch.Generator().manual_seed(seed)
    x = torch.arange(w).view(1, w).expand(h, w)
    y = torch.arange(h).view(h, 1).expand(h, w)
    noise = torch.randint(0, 40, (h, w), generator=g)
    rgb = torch.stack([(x * 7 + noise) % 256, (y * 5) % 256, (x * y + noise) % 256], -1)
    return Image.fromarray(rgb.to(torch.uint8).numpy())


def side_by_side(path: Path, a: Image.Image, b: Image.Image) -> Path:
    both = Image.new("RGB", (a.width + b.width, a.height))
    both.paste(a, (0, 0))
    both.paste(b, (a.width, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    both.save(path)
    return path


@pytest.fixture
def aligned_root(tmp_path: Path) -> Path:
    """ROOT/train of 3 side-by-side pairs whose halves are the same image; ROOT/val of 2."""
    root = tmp_path / "facades"
    for i in range(3):
        img = gradient((40, 30), i)
        side_by_side(root / "train" / f"{i}.png", img, img)
    for i in range(2):
        side_by_side(root / "val" / f"v{i}.png", gradient((40, 30), 10 + i), gradient((40, 30), 20))
    return root


def aligned(root: Path, **kw) -> dict:
    return {"name": "aligned", "root": str(root), "load_size": 36, "crop_size": 32, **kw}


def test_side_by_side_pairs_get_the_same_crop_and_flip(aligned_root):
    pairs = build_pairs(aligned(aligned_root), "train", 3)
    assert len(pairs) == 3
    crops = set()
    for seed in range(12):
        a, b = pairs.load_pair(1, torch.Generator().manual_seed(seed))
        assert a.shape == (3, 32, 32) and torch.equal(a, b)  # halves alike -> crops alike
        crops.add(a.sum().item())
    assert len(crops) > 3  # the crop and flip do change with the draw


def test_side_by_side_halves_are_a_on_the_left_and_b_on_the_right(tmp_path):
    root = tmp_path / "set"
    a, b = gradient((32, 32), 1), gradient((32, 32), 2)
    side_by_side(root / "train" / "x.png", a, b)
    got_a, got_b = build_pairs(aligned(root, preprocess="none"), "train", 3).load_pair(0)
    expect = [torch.from_numpy(np.array(im)).permute(2, 0, 1) for im in (a, b)]
    assert torch.allclose((got_a + 1) * 127.5, expect[0].float(), atol=0.01)
    assert torch.allclose((got_b + 1) * 127.5, expect[1].float(), atol=0.01)


def test_test_split_reads_val_when_there_is_no_test_folder(aligned_root):
    a, b = build_domains(aligned(aligned_root), "test", 3)
    assert len(a) == len(b) == 2 and a.name(0) == "v0.png"
    assert not torch.equal(a.load(0), b.load(0))  # the A and B sides of the pair


def test_two_folders_are_matched_by_name_and_the_lone_ones_counted(tmp_path):
    root = tmp_path / "set"
    for name in ("0001", "0002", "0003"):
        (root / "trainA").mkdir(parents=True, exist_ok=True)
        gradient((32, 32), int(name)).save(root / "trainA" / f"{name}.png")
    for name in ("0001", "0003", "0009"):
        (root / "trainB").mkdir(parents=True, exist_ok=True)
        gradient((32, 32), 50 + int(name)).save(root / "trainB" / f"{name}.jpg")
    with pytest.warns(UserWarning, match=r"1 \+ 1 image\(s\) have no partner.*2 pairs are used"):
        pairs = build_pairs(aligned(root), "train", 3)
    assert [pairs.name(i) for i in range(len(pairs))] == ["0001.png", "0003.png"]


@pytest.mark.parametrize("problem", ["odd_width", "sizes", "no_match", "no_layout"])
def test_bad_paired_data_is_one_line(tmp_path, problem):
    root = tmp_path / "set"
    if problem == "odd_width":
        (root / "train").mkdir(parents=True)
        gradient((41, 20), 0).save(root / "train" / "odd.png")
        raises_one_line(lambda: build_pairs(aligned(root), "train", 3), "41 px wide", "even")
        return
    if problem == "no_layout":
        root.mkdir()
        raises_one_line(lambda: build_pairs(aligned(root), "train", 3), "neither train/")
        return
    (root / "trainA").mkdir(parents=True)
    (root / "trainB").mkdir()
    gradient((32, 32), 0).save(root / "trainA" / "x.png")
    gradient((40, 32) if problem == "sizes" else (32, 32), 1).save(
        root / "trainB" / ("x.png" if problem == "sizes" else "y.png")
    )
    if problem == "sizes":
        raises_one_line(
            lambda: build_pairs(aligned(root), "train", 3), "different sizes (32x32 and 40x32)"
        )
    else:
        raises_one_line(lambda: build_pairs(aligned(root), "train", 3), "no file of", "partner")


def test_paired_sampler_visits_each_pair_once_resumes_and_splits_across_ranks():
    keys = PairedSampler(10, seed=3, epoch=2).keys()
    assert sorted(k[0] for k in keys) == list(range(10))
    assert all(a == b for a, b, _ in keys)  # index i of A with index i of B
    resumed = list(PairedSampler(10, seed=3, epoch=2, start=4))
    assert resumed == keys[4:]
    ranks = [list(PairedSampler(10, seed=3, epoch=2, rank=r, world_size=2)) for r in (0, 1)]
    assert sorted(ranks[0] + ranks[1]) == sorted(keys)
    assert PairedSampler(10, seed=3, epoch=3).keys() != keys


def test_built_in_pairs_are_the_shapes_and_their_true_counterparts():
    cfg = {"name": "shapes_paired", "train_size": 5, "test_size": 3}
    pairs = build_pairs(cfg, "train", 3)
    shapes_a, _ = build_domains({"name": "shapes", "train_size": 5, "test_size": 3}, "train", 3)
    a, b = pairs.load_pair(2)
    assert torch.equal(a, shapes_a.load(2)) and torch.equal(b, shapes_a.counterpart(2))


# ---------------------------------------------------------------------------------------------
# the method
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_generator_loss_is_adversarial_plus_lambda_l1_and_d_sees_both_images(direction):
    cfg = compose_train_config([*TINY_P2P, f"method.direction={direction}", "method.lambda_L1=7"])
    torch.manual_seed(0)
    st = build_training(cfg, torch.device("cpu"))
    method = st.method
    assert method.directions == {direction: "G"}
    assert method.D.model[0].in_channels == 6  # input and image on channels
    pairs = build_pairs({"name": "shapes_paired", "train_size": 2, "test_size": 1}, "train", 3)
    a, b = pairs.load_pair(0)
    batch = {"A": a[None], "B": b[None]}
    source, target = (batch["A"], batch["B"]) if direction == "AtoB" else (batch["B"], batch["A"])
    cache: dict = {}
    d_phase, g_phase = method.phases(0)
    assert (d_phase.optimizer, g_phase.optimizer) == ("D", "G")  # the reference's order
    d_phase.loss(batch, cache)
    _, terms = g_phase.loss(batch, cache)
    fake = cache["fake"]
    assert torch.allclose(terms["G_L1"], 7 * (fake - target).abs().mean())
    with torch.no_grad():
        score = method.D(torch.cat([source, fake], 1))
    expected = torch.nn.functional.binary_cross_entropy_with_logits(score, torch.ones_like(score))
    assert torch.allclose(terms["G_GAN"], expected, atol=1e-6)
    assert torch.allclose(terms["G"], terms["G_GAN"] + terms["G_L1"])


def test_a_step_trains_both_networks_with_wgangp_and_critic_steps():
    cfg = compose_train_config([*TINY_P2P, "loss=wgangp", "loss.critic_steps=2"])
    torch.manual_seed(0)
    st = build_training(cfg, torch.device("cpu"))
    pairs = build_pairs({"name": "shapes_paired", "train_size": 2, "test_size": 1}, "train", 3)
    a, b = pairs.load_pair(0)
    batch = {"A": a[None], "B": b[None]}
    g0 = [p.clone() for p in st.method.G.parameters()]
    terms = train_step(st, batch)
    assert {"G", "G_GAN", "G_L1", "D", "D_gp", "D_acc"} <= set(terms)
    assert any(not torch.equal(p, q) for p, q in zip(g0, st.method.G.parameters(), strict=True))
    st.step = 1
    assert "G" not in train_step(st, batch)  # a critic-only step
    assert all(torch.isfinite(v) for v in terms.values())


# ---------------------------------------------------------------------------------------------
# end to end
# ---------------------------------------------------------------------------------------------
def test_run_writes_a_one_way_checkpoint_and_input_output_target_grids(gantrans, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    code, out, err = gantrans(*train_args(run, "train.max_steps=4", "method.direction=BtoA"))
    assert code == 0, err
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert ckpt["method"] == "pix2pix" and ckpt["directions"] == {"BtoA": "G"}
    assert set(ckpt["models"]) == {"G", "D"} and ckpt["step"] == 4
    assert ckpt["arch"]["discriminator"]["in_channels"] == 6
    events = EventAccumulator(str(run / "tb"), size_guidance={"images": 0}).Reload()
    tags = events.Tags()
    assert {"train/B2A", "test/B2A"} <= set(tags["images"])
    assert {"loss/G_GAN", "loss/G_L1", "loss/D", "loss/G"} <= set(tags["scalars"])
    grid = events.Images("train/B2A")[-1]
    # three rows (input, output, target) of train.num_samples=2 images each
    assert grid.height / grid.width == pytest.approx(3 / 2, rel=0.03)
    # translate and export use the configured direction; the other one is one line
    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "in.png")
    code, _, err = gantrans(
        "translate", f"ckpt={run / 'checkpoints' / 'latest.pt'}", f"input={tmp_path / 'in.png'}",
        f"output={tmp_path / 'out.png'}", "direction=BtoA", "progress=false",
    )  # fmt: skip
    assert code == 0, err
    assert Image.open(tmp_path / "out.png").size == (32, 32)
    line = one_line_error(
        gantrans(
            "translate",
            f"ckpt={run / 'checkpoints' / 'latest.pt'}",
            f"input={tmp_path / 'in.png'}",
            "progress=false",
        )  # fmt: skip
    )
    assert "pix2pix model, which translates BtoA only: use direction=BtoA" in line
    code, _, err = gantrans(
        "export", f"ckpt={run / 'checkpoints' / 'latest.pt'}", "format=torchscript",
        "direction=BtoA", f"output={tmp_path / 'g.pt'}",
    )  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "g.pt").is_file()


def weights(path: Path) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(path)
    return {f"{n}.{k}": v for n, sd in ckpt["models"].items() for k, v in sd.items()}


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(gantrans, tmp_path):
    # 6 pairs, batch 2: the interruption at step 4 falls mid-epoch after an epoch boundary;
    # dropout and the crops draw from the RNG streams the checkpoint carries
    common = ["dataset.train_size=6", "train.batch_size=2", "train.n_epochs=1",
              "train.n_epochs_decay=2"]  # fmt: skip
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert gantrans(*train_args(straight, *common, "train.max_steps=7"))[0] == 0
    assert gantrans(*train_args(split, *common, "train.max_steps=4"))[0] == 0
    code, out, err = gantrans(*train_args(split, *common, "train.max_steps=7", "resume=auto"))
    assert code == 0, err
    assert "resumed from" in out
    a, b = (
        weights(straight / "checkpoints" / "latest.pt"),
        weights(split / "checkpoints" / "latest.pt"),
    )
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_with_another_method_is_refused(gantrans, tmp_path):
    run = tmp_path / "run"
    assert gantrans(*train_args(run, "train.max_steps=1"))[0] == 0
    line = one_line_error(
        gantrans(
            "train",
            "precision=fp32",
            "model.ngf=4",
            "model.n_blocks=1",
            "discriminator.ndf=4",
            "train.progress=false",
            f"hydra.run.dir={run}",
            "resume=auto",
        )  # fmt: skip
    )
    assert "was trained with method=pix2pix" in line


def test_nan_stops_with_the_term_and_keeps_the_good_checkpoint(gantrans, tmp_path, monkeypatch):
    real, seen = train.train_step, set()

    def step(st, *args, **kwargs):
        terms = real(st, *args, **kwargs)
        if st.step + 1 == 4 and 4 not in seen:
            seen.add(4)
            terms["G_L1"] = torch.tensor(float("nan"))
        return terms

    monkeypatch.setattr(train, "train_step", step)
    run = tmp_path / "run"
    code, _, err = gantrans(*train_args(run, "train.max_steps=6", "train.checkpoint_every=2"))
    assert code == 2
    assert "loss G_L1 became non-finite at step 4" in err.strip().splitlines()[-1]
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["step"] == 2
    seen.clear()
    run = tmp_path / "rollback"
    code, out, err = gantrans(*train_args(run, "train.max_steps=6", "train.checkpoint_every=2",
                                          "train.on_nonfinite=rollback"))  # fmt: skip
    assert code == 0, err
    assert "rolled back to step 2" in out
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["step"] == 6


def test_sigterm_stops_a_run_with_a_checkpoint(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "gantrans", *train_args(run, "train.max_steps=100000",
           "train.checkpoint_every=100000", "train.log_every=50", "train.image_every=1000",
           "dataset.train_size=64", "train.n_epochs=1000")]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    end = time.time() + 60
    while not (run / "tb").exists() and time.time() < end:
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    assert "stopped by SIGTERM" in out and "resume=auto" in out and "Traceback" not in out
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert ckpt["method"] == "pix2pix" and ckpt["step"] > 0
    assert ckpt["step"] == ckpt["schedulers"]["G"]["last_epoch"]


def test_aligned_folder_trains_through_the_cli(gantrans, aligned_root, tmp_path):
    run = tmp_path / "run"
    code, out, err = gantrans(
        *train_args(
            run,
            "dataset=aligned",
            f"dataset.root={aligned_root}",
            "dataset.load_size=36",
            "dataset.crop_size=32",
            "train.max_steps=2",
            nets_only=True,
        )  # fmt: skip
    )
    assert code == 0, err
    assert "3 A + 3 B images" in out
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["config"]["dataset"]["name"] == (
        "aligned"
    )


def test_bad_aligned_image_stops_training_in_one_line(gantrans, tmp_path):
    root = tmp_path / "set"
    (root / "train").mkdir(parents=True)
    gradient((65, 32), 0).save(root / "train" / "odd.png")
    line = one_line_error(
        gantrans(
            *train_args(
                tmp_path / "run",
                "dataset=aligned",
                f"dataset.root={root}",
                "dataset.load_size=36",
                "dataset.crop_size=32",
                nets_only=True,
            )
        )  # fmt: skip
    )
    assert "odd.png is 65 px wide" in line


@pytest.mark.skipif(
    not torch.distributed.is_available() or shutil.which("torchrun") is None,
    reason="torch.distributed / torchrun not available",
)
def test_two_processes_match_one_process_with_the_global_batch(gantrans, tmp_path):
    """pix2pix under DDP (gloo): G and D are averaged across ranks, so two processes of batch 1
    learn what one process of batch 2 does. Instance norm and no dropout: batch norm would see
    a different batch on each rank, and dropout masks are drawn per rank."""
    from gantrans.models import build_discriminator, build_generator

    common = [*TINY_P2P, "model.norm=instance", "model.dropout=false",
              "discriminator.norm=instance", "dataset.train_size=12", "train.max_steps=3",
              "train.checkpoint_every=3"]  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "gantrans", "train", *common, f"hydra.run.dir={tmp_path / 'ddp'}"]  # fmt: skip
    ddp = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    assert "method pix2pix" in ddp.stdout and "2 processes (DDP), 2 images per step" in ddp.stdout
    code, _, err = gantrans("train", *common, "train.batch_size=2",
                            f"hydra.run.dir={tmp_path / 'single'}")  # fmt: skip
    assert code == 0, err
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out = []
    for run in ("ddp", "single"):
        ckpt = load_checkpoint(tmp_path / run / "checkpoints" / "latest.pt")
        assert ckpt["method"] == "pix2pix" and ckpt["step"] == 3
        G = build_generator(ckpt["arch"]["generator"]).eval()
        D = build_discriminator(ckpt["arch"]["discriminator"]).eval()
        G.load_state_dict(ckpt["models"]["G"])
        D.load_state_dict(ckpt["models"]["D"])
        with torch.no_grad():
            out.append((G(x), D(torch.cat([x, x], 1))))
    for a, b in zip(*out, strict=True):
        assert torch.allclose(a, b, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# evaluation against the true targets
# ---------------------------------------------------------------------------------------------
FAST_EVAL = ["features=classifier", "judge_max_images=16", "judge_epochs=1", "c2st=false",
             "controls=false", "num_samples=2", "progress=false"]  # fmt: skip


@pytest.fixture
def aligned_ckpt(tmp_path: Path) -> Path:
    """An untrained tiny pix2pix checkpoint of an aligned set with 4 train and 4 test pairs."""
    from gantrans.config import to_plain

    root = tmp_path / "pairs"
    for split, seeds in (("train", range(4)), ("test", range(10, 14))):
        for i in seeds:
            side_by_side(
                root / split / f"{i}.png", gradient((32, 32), i), gradient((32, 32), 50 + i)
            )
    cfg = compose_train_config([*TINY_P2P_NETS, "dataset=aligned", f"dataset.root={root}",
                                "dataset.load_size=32", "dataset.crop_size=32"])  # fmt: skip
    torch.manual_seed(0)
    path = tmp_path / "run" / "checkpoints" / "latest.pt"
    build_training(cfg, torch.device("cpu")).save(path, to_plain(cfg))
    return path


def test_evaluate_scores_outputs_against_the_targets_and_lpips_offline_is_one_line(
    gantrans, aligned_ckpt, offline
):
    import json

    from gantrans.evaluation import metrics
    from gantrans.evaluation.images import quantize

    code, out, err = gantrans("evaluate", f"ckpt={aligned_ckpt}", *FAST_EVAL)
    assert code == 0, err
    lines = [line for line in (out + err).splitlines() if "LPIPS" in line]
    assert len(lines) == 1 and "LPIPS not computed" in lines[0], out + err
    report = json.loads((aligned_ckpt.parent.parent / "eval" / "evaluation.json").read_text())
    m = report["metrics"]
    assert {"truth_l1_AtoB", "truth_psnr_AtoB", "truth_ssim_AtoB", "fid_AtoB", "kid_AtoB"} <= set(m)
    assert not any(k.startswith(("shape_", "input_shape")) for k in m)  # shapes only
    assert "LPIPS not computed" in report["not_computed"]["truth_lpips_AtoB"]
    # the baseline is the untranslated input against its own partner, from the files
    a, b = build_domains(report["dataset"], "test", 3)
    inputs = quantize(torch.stack([a.load(i) for i in range(4)]))
    targets = quantize(torch.stack([b.load(i) for i in range(4)]))
    assert m["input_truth_psnr_AtoB"] == pytest.approx(metrics.psnr(inputs, targets).mean().item())
    assert (
        "Paired data: distance to the true target"
        in (aligned_ckpt.parent.parent / "eval" / "evaluation.md").read_text()
    )


def test_evaluate_reports_lpips_from_the_package(gantrans, aligned_ckpt, offline, monkeypatch):
    """The lpips package's network stood in for by mean |x - y| (its real weights need a
    download): the distances reach the report per direction, for outputs and inputs."""
    import json
    import types

    from gantrans.evaluation.images import quantize

    class FakeLPIPS(torch.nn.Module):
        def __init__(self, net: str, verbose: bool) -> None:
            super().__init__()
            assert net == "alex"

        def forward(self, x, y):
            assert x.shape[1] == 3 and -1 <= x.min() and x.max() <= 1
            return (x - y).abs().mean((1, 2, 3)).view(-1, 1, 1, 1)

    monkeypatch.setitem(sys.modules, "lpips", types.SimpleNamespace(LPIPS=FakeLPIPS))
    alexnet = offline / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    alexnet.parent.mkdir(parents=True)
    alexnet.write_bytes(b"cached")  # in the cache: nothing to download
    code, out, err = gantrans("evaluate", f"ckpt={aligned_ckpt}", *FAST_EVAL)
    assert code == 0, err
    report = json.loads((aligned_ckpt.parent.parent / "eval" / "evaluation.json").read_text())
    m = report["metrics"]
    a, b = build_domains(report["dataset"], "test", 3)
    inputs = quantize(torch.stack([a.load(i) for i in range(4)]))
    targets = quantize(torch.stack([b.load(i) for i in range(4)]))
    assert m["input_truth_lpips_AtoB"] == pytest.approx((inputs - targets).abs().mean().item())
    assert m["truth_lpips_AtoB"] == pytest.approx(m["truth_l1_AtoB"], rel=1e-5)
    assert "truth_lpips_AtoB" not in report["not_computed"]
    assert "LPIPS" in out and "not computed" not in out + err


def test_a_truncated_pair_falls_back_to_the_next_with_one_warning(aligned_root):
    path = aligned_root / "train" / "1.png"
    path.write_bytes(path.read_bytes()[:200])  # the header is intact, the pixels are not
    pairs = build_pairs(aligned(aligned_root), "train", 3)
    with pytest.warns(UserWarning, match="using the next pair"):
        a, _ = pairs.load_pair(1)
    assert torch.equal(a, pairs.load_pair(2)[0])
