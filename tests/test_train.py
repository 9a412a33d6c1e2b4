"""A tiny real training run through the CLI: checkpoint, TensorBoard events, exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gantrans.checkpoint import load_checkpoint
from gantrans.training.train import lr_factor

from .conftest import TINY, TINY_CUT


def train_args(run_dir: Path, *extra: str) -> list[str]:
    return ["train", *TINY, f"hydra.run.dir={run_dir}", *extra]


def test_tiny_run_writes_checkpoint_events_samples_and_config(gantrans, tmp_path):
    run = tmp_path / "run"
    code, out, err = gantrans(*train_args(run, "train.max_steps=3", "train.batch_size=2"))
    assert code == 0, err
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert ckpt["step"] == 3 and ckpt["epoch_step"] == 3
    assert set(ckpt["models"]) == {"G_A", "G_B", "D_A", "D_B"}
    assert ckpt["arch"]["generator"]["ngf"] == 4 and ckpt["config"]["model"]["n_blocks"] == 1
    assert {"G", "D"} == set(ckpt["optimizers"]) and ckpt["pools"]["A"]["images"].shape[0] == 6
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert (run / "config.yaml").read_text().startswith("dataset:")
    assert sorted(p.name for p in (run / "samples").glob("*_0000002.png")) == [
        "test_A2B2A_0000002.png",
        "test_B2A2B_0000002.png",
        "train_A2B2A_0000002.png",
        "train_B2A2B_0000002.png",
    ]
    assert (run / "train.log").exists()


def test_tensorboard_has_every_loss_lr_and_speed(gantrans, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    assert gantrans(*train_args(run, "train.max_steps=2", "loss=wgangp"))[0] == 0
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ["G", "G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B", "D_A", "D_B", "D_A_gp"]:
        assert f"loss/{tag}" in tags
    assert {"lr/G", "lr/D", "speed/images_per_sec"} <= tags
    assert {"train/A2B2A", "train/B2A2B", "test/A2B2A", "test/B2A2B"} <= set(acc.Tags()["images"])
    assert all(e.value > 0 for e in acc.Scalars("loss/D_A_gp"))


def weights(path: Path) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(path)
    flat = {f"{n}.{k}": v for n, sd in ckpt["models"].items() for k, v in sd.items()}
    flat.update({f"pool.{d}": p["images"] for d, p in ckpt["pools"].items()})
    return flat


@pytest.mark.parametrize(
    "workers,method",
    [(0, []), (2, []), (0, [*TINY_CUT, "method=fastcut"])],
    ids=["cyclegan", "cyclegan-2-workers", "fastcut"],
)
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(gantrans, tmp_path, workers, method):
    # dataset.train_size=6 with batch 2: 3 steps an epoch, so the interruption at step 4 falls
    # mid-epoch, after an epoch boundary, with the pool full and replacing (pool_size=3).
    # FastCUT also draws its patches and flips from the RNG the checkpoint carries.
    common = [
        *method,
        "dataset.train_size=6",
        "train.batch_size=2",
        "train.pool_size=3",
        "model.dropout=true",
        f"train.num_workers={workers}",
        "train.n_epochs=1",
        "train.n_epochs_decay=2",
    ]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert gantrans(*train_args(straight, *common, "train.max_steps=7"))[0] == 0
    assert gantrans(*train_args(split, *common, "train.max_steps=4"))[0] == 0
    assert load_checkpoint(split / "checkpoints" / "latest.pt")["step"] == 4
    code, out, err = gantrans(*train_args(split, *common, "train.max_steps=7", "resume=auto"))
    assert code == 0, err
    a, b = (
        weights(straight / "checkpoints" / "latest.pt"),
        weights(split / "checkpoints" / "latest.pt"),
    )
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ca = load_checkpoint(straight / "checkpoints" / "latest.pt")
    cb = load_checkpoint(split / "checkpoints" / "latest.pt")
    assert ca["schedulers"]["G"] == cb["schedulers"]["G"] and ca["epoch"] == cb["epoch"] == 2


def test_refuses_to_overwrite_a_run_without_resume(gantrans, tmp_path):
    run = tmp_path / "run"
    assert gantrans(*train_args(run, "train.max_steps=1"))[0] == 0
    before = (run / "checkpoints" / "latest.pt").read_bytes()
    code, _, err = gantrans(*train_args(run, "train.max_steps=2"))
    assert code == 2 and "resume=auto" in err and len(err.strip().splitlines()) == 1
    assert (run / "checkpoints" / "latest.pt").read_bytes() == before


def test_resume_with_another_architecture_or_method_is_refused(gantrans, tmp_path):
    run = tmp_path / "run"
    assert gantrans(*train_args(run, "train.max_steps=1"))[0] == 0
    code, _, err = gantrans(*train_args(run, "train.max_steps=2", "resume=auto", "model.ngf=8"))
    assert code == 2 and "another architecture" in err and len(err.strip().splitlines()) == 1
    code, _, err = gantrans(*train_args(run, "train.max_steps=2", "resume=auto", "method=cut"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "was trained with method=cyclegan: resume it with that method" in err


@pytest.mark.parametrize("method", ["cut", "fastcut"])
def test_cut_run_writes_its_networks_losses_and_grids(gantrans, tmp_path, method):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    code, out, err = gantrans(*train_args(run, *TINY_CUT, f"method={method}", "train.max_steps=2"))
    assert code == 0, err
    assert f"method {method}" in out and "G 0.01M, D 0.01M, F 0.00M" in out
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert ckpt["method"] == method and set(ckpt["models"]) == {"G", "D", "F"}
    assert ckpt["config"]["train"]["pool_size"] == 0  # the paper's: no image buffer
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    tags, images = set(acc.Tags()["scalars"]), set(acc.Tags()["images"])
    assert {"loss/G", "loss/G_GAN", "loss/NCE", "loss/D", "loss/D_acc", "lr/G", "lr/D"} <= tags
    identity = method == "cut"  # FastCUT has no identity term
    assert ("loss/NCE_Y" in tags) == identity and not any("cycle" in t for t in tags)
    assert {"train/A2B", "test/A2B"} <= images and ("test/B2B" in images) == identity
    assert "diagnostics/diversity_AtoB" in tags and "diagnostics/diversity_BtoA" not in tags


def test_lr_schedule_constant_then_linear_to_zero():
    # 10 steps an epoch, 2 constant epochs then 2 decaying ones
    assert [lr_factor(s, 10, 2, 2) for s in (0, 10, 19)] == [1.0, 1.0, 1.0]
    assert lr_factor(20, 10, 2, 2) == 1.0
    assert lr_factor(30, 10, 2, 2) == pytest.approx(0.5)
    assert lr_factor(40, 10, 2, 2) == 0.0
    assert lr_factor(5, 10, 2, 0) == 1.0


def test_lr_in_checkpoint_follows_the_schedule(gantrans, tmp_path):
    run = tmp_path / "run"
    common = [
        "dataset.train_size=4",
        "train.n_epochs=1",
        "train.n_epochs_decay=1",
        "train.lr=0.001",
    ]
    assert gantrans(*train_args(run, *common, "train.max_steps=6"))[0] == 0
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    # 4 steps an epoch: after 6 steps we are half-way through the decay epoch
    assert ckpt["optimizers"]["G"]["param_groups"][0]["lr"] == pytest.approx(0.001 * 0.5)


@pytest.mark.parametrize("method", [[], TINY_CUT], ids=["cyclegan", "cut"])
def test_periodic_evaluation_keeps_the_best_checkpoint(gantrans, tmp_path, method):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    code, out, err = gantrans(*train_args(
        run, *method, "dataset.train_size=4", "dataset.test_size=4", "train.n_epochs=1",
        "train.n_epochs_decay=1", "train.eval_every=1", "train.eval_metric=truth_psnr_AtoB",
        "train.eval_max_images=4",
    ))  # fmt: skip
    assert code == 0, err
    assert out.count("evaluation at step") == 2
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["best"]["metric"] == "truth_psnr_AtoB" and best["best"]["step"] in (4, 8)
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["best"] == best["best"]
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"eval/truth_psnr_AtoB", "eval/fid_AtoB", "eval/domain_acc_AtoB"} <= tags
    assert ("eval/domain_acc_BtoA" in tags) == (not method)  # CUT translates one way


def test_unknown_eval_metric_is_a_config_error(gantrans, tmp_path):
    code, _, err = gantrans(
        *train_args(tmp_path / "r", "train.eval_every=1", "train.eval_metric=beauty")
    )
    assert code == 2 and "train.eval_metric=beauty is not a metric" in err


@pytest.mark.parametrize(
    "extra",
    [["precision=bf16", "train.channels_last=true"], ["loss=wgangp", "loss.critic_steps=2"]],
)
def test_bf16_channels_last_and_critic_steps_train_with_finite_losses(gantrans, tmp_path, extra):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    code, _, err = gantrans(*train_args(run, "train.max_steps=4", *extra))
    assert code == 0, err
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    values = [
        e.value
        for tag in acc.Tags()["scalars"]
        if tag.startswith("loss/")
        for e in acc.Scalars(tag)
    ]
    assert values and all(v == v and abs(v) < 1e6 for v in values)


def test_compiled_training_matches_eager(gantrans, tmp_path, monkeypatch):
    """`train.compile=true` traces both phases and learns the same weights as eager mode.

    The compiler backend is swapped for `aot_eager`: the same Dynamo capture and AOTAutograd
    forward/backward graphs that inductor receives, without minutes of C++ code generation.
    """
    compiled = []
    real_compile = torch.compile

    def compile_aot_eager(module, **kwargs):
        compiled.append(type(module).__name__)
        return real_compile(module, backend="aot_eager")

    monkeypatch.setattr(torch, "compile", compile_aot_eager)
    weights = {}
    for mode in ("false", "true"):
        run = tmp_path / f"compile_{mode}"
        code, _, err = gantrans(*train_args(run, "train.max_steps=3", f"train.compile={mode}"))
        assert code == 0, err
        weights[mode] = load_checkpoint(run / "checkpoints" / "latest.pt")["models"]
    assert compiled == ["GeneratorPair", "DiscriminatorPair"]
    for net, state in weights["false"].items():
        for key, value in state.items():
            assert torch.allclose(value, weights["true"][net][key], rtol=1e-4, atol=1e-6), key
