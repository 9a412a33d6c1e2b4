"""The quality options every method can turn on: change masks, resize upsampling, the tone
term, generator EMA, DiffAugment, spectral norm and R1; and the panel of judges that scores
their effect."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gantrans import checkpoint
from gantrans.checkpoint import load_checkpoint
from gantrans.config import compose_train_config
from gantrans.errors import ConfigError
from gantrans.evaluation import controls, evaluator
from gantrans.methods.losses import tone_distance
from gantrans.models import build_discriminator, build_generator, init_weights
from gantrans.models.augment import diff_augment, parse_policy
from gantrans.training.engine import GeneratorAverage, build_training, r1_penalty, train_step
from tests.conftest import TINY, TINY_CUT, one_line_error

GEN = dict(name="resnet", in_channels=1, out_channels=1, ngf=4, norm="instance", dropout=False,
           n_blocks=1, num_downs=5)  # fmt: skip
LEVERS = [
    "model.mask=true",
    "model.upsample=resize",
    "train.ema=0.9",
    "discriminator.augment=color+translation+cutout",
    "discriminator.spectral_norm=true",
    "loss.r1_gamma=1",
    "loss.r1_every=2",
    "loss.lambda_tone=5",
]


def train_args(run_dir: Path, *extra: str) -> list[str]:
    return ["train", *TINY, f"hydra.run.dir={run_dir}", *extra]


# --------------------------------------------------------------------------------------------
# change masks
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["resnet", "unet"])
def test_a_shut_mask_copies_the_input_and_an_open_one_gives_the_drawn_content(name):
    net = build_generator({**GEN, "name": name, "mask": True})
    init_weights(net)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    conv = net.mask_conv()
    with torch.no_grad():
        conv.bias[-1].fill_(-50.0)  # tanh -> -1: m = 0 everywhere
    assert torch.allclose(net.eval()(x), x, atol=1e-6)
    with torch.no_grad():
        conv.bias[-1].fill_(50.0)  # m = 1: the output is the drawn content, not the input
        drawn = net.model(x)[:, :-1] if name == "resnet" else net.model(x)[:, :-1]
    assert torch.allclose(net(x), drawn, atol=1e-5)


def test_masks_are_recorded_in_training_mode_only_and_start_open():
    net = build_generator({**GEN, "mask": True})
    init_weights(net)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    net.eval()(x)
    assert net.take_masks() == []
    net.train()(x)
    (mask,) = net.take_masks()
    assert mask.shape == (2, 1, 32, 32) and mask.min() >= 0 and mask.max() <= 1
    assert mask.mean() > 0.9  # MASK_INIT: a new generator starts as an ordinary one
    assert net.take_masks() == []


def test_mask_needs_as_many_outputs_as_inputs():
    with pytest.raises(ValueError, match="in_channels == out_channels"):
        build_generator({**GEN, "mask": True, "out_channels": 3})


def test_the_size_penalty_is_two_sided_around_the_target_area():
    cfg = compose_train_config(
        [*TINY, "model.mask=true", "loss.mask_area=0.25", "loss.lambda_mask=1"]
    )
    st = build_training(cfg, torch.device("cpu"))
    method = st.method
    G = method.networks()["G_A"]
    G.masks = [torch.full((2, 1, 4, 4), 0.05), torch.full((1, 1, 4, 4), 0.55)]
    terms = method.mask_terms()
    # per image |area - 0.25|: 0.2, 0.2, 0.3 -> mean 0.2333, times lambda_mask (1; default 10)
    assert terms["mask"].item() == pytest.approx((0.2 + 0.2 + 0.3) / 3)
    assert terms["mask_size"].item() == pytest.approx((0.05 * 2 + 0.55) / 3)
    method.mask_area = None  # one-sided: the area itself
    G.masks = [torch.full((2, 1, 4, 4), 0.05)]
    assert method.mask_terms()["mask"].item() == pytest.approx(0.05)
    assert method.mask_terms() == {}  # taken


@pytest.mark.parametrize("method", [[], TINY_CUT], ids=["cyclegan", "cut"])
def test_every_lever_trains_logs_and_resumes(gantrans, tmp_path, method):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    extra = [*method, *LEVERS, "train.batch_size=2"]
    code, _, err = gantrans(*train_args(run, *extra, "train.max_steps=4"))
    assert code == 0, err
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    gens = ["G"] if method else ["G_A", "G_B"]
    assert {f"{g}_ema" for g in gens} <= set(ckpt["models"])
    assert ckpt["arch"]["generator"]["mask"] is True
    assert ckpt["arch"]["discriminator"]["spectral_norm"] is True
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    scalars, images = set(acc.Tags()["scalars"]), set(acc.Tags()["images"])
    assert {"loss/mask", "loss/mask_size", "loss/tone"} <= scalars
    assert any(t.endswith("_r1") for t in scalars)
    assert "test/mask_AtoB" in images
    code, _, err = gantrans(*train_args(run, *extra, "train.max_steps=6", "resume=auto"))
    assert code == 0, err
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["step"] == 6


def test_translation_uses_the_averaged_weights(tmp_path):
    cfg = compose_train_config([*TINY, "train.ema=0.5"])
    st = build_training(cfg, torch.device("cpu"))
    with torch.no_grad():
        for p in st.ema.nets["G_A"].parameters():
            p.fill_(0.25)
    path = tmp_path / "c.pt"
    st.save(path)
    weights = checkpoint.generator_weights(load_checkpoint(path), "AtoB", path)
    assert all(torch.all(v == 0.25) for k, v in weights.items() if "weight" in k)
    live = load_checkpoint(path)["models"]["G_A"]
    assert not all(torch.all(v == 0.25) for k, v in live.items() if "weight" in k)


def test_the_average_follows_its_decay_and_is_swapped_in_and_back():
    cfg = compose_train_config([*TINY])
    method = build_training(cfg, torch.device("cpu")).method
    avg = GeneratorAverage(method, decay=0.9)
    live = method.networks()["G_A"]
    before = [p.detach().clone() for p in avg.nets["G_A"].parameters()]
    with torch.no_grad():
        for p in live.parameters():
            p.add_(1.0)
    avg.update(method, step=10**6)  # late: the full decay applies
    for b, a, p in zip(before, avg.nets["G_A"].parameters(), live.parameters(), strict=True):
        assert torch.allclose(a, 0.9 * b + 0.1 * p)
    first = next(live.parameters()).detach().clone()
    with avg.swapped(method):
        assert torch.equal(next(live.parameters()), next(avg.nets["G_A"].parameters()))
    assert torch.equal(next(live.parameters()), first)


def test_early_average_does_not_keep_the_initial_weights():
    cfg = compose_train_config([*TINY])
    method = build_training(cfg, torch.device("cpu")).method
    avg = GeneratorAverage(method, decay=0.999)
    with torch.no_grad():
        for p in method.networks()["G_A"].parameters():
            p.add_(1.0)
    avg.update(method, step=0)  # decay min(0.999, 1/10): mostly the new weights
    pairs = zip(avg.nets["G_A"].parameters(), method.networks()["G_A"].parameters(), strict=True)
    gap = max((a - p).abs().max().item() for a, p in pairs)
    assert gap <= 0.1 + 1e-6


# --------------------------------------------------------------------------------------------
# discriminator options
# --------------------------------------------------------------------------------------------
def test_diff_augment_keeps_shapes_is_differentiable_and_random_per_image():
    x = torch.rand(8, 3, 16, 16, requires_grad=True)
    y = diff_augment(x, ("color", "translation", "cutout"))
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    same = torch.ones(8, 1, 16, 16).expand(8, 1, 16, 16)
    out = diff_augment(same.clone(), ("cutout",))
    assert (out == 0).float().mean((1, 2, 3)).min() > 0.2  # each image lost a square
    assert not torch.equal(out[0], out[1]) or not torch.equal(out[1], out[2])


def test_augmenting_discriminator_augments_in_training_mode_only():
    arch = dict(name="patchgan", in_channels=1, ndf=4, norm="instance", n_layers=2,
                augment="translation+cutout")  # fmt: skip
    torch.manual_seed(0)
    D = build_discriminator(arch)
    x = torch.rand(4, 1, 32, 32)
    D.eval()
    assert torch.equal(D(x), D(x))
    D.train()
    assert not torch.equal(D(x), D(x))
    assert parse_policy("color, cutout") == ("color", "cutout")
    with pytest.raises(ValueError, match="unknown augmentation"):
        parse_policy("colour")


def test_spectral_norm_bounds_the_layers_and_keeps_the_initialisation():
    arch = dict(name="patchgan", in_channels=1, ndf=4, norm="none", n_layers=2,
                spectral_norm=True)  # fmt: skip
    D = build_discriminator(arch)
    init_weights(D, "normal", 0.02)
    conv = D.model[0]
    original = conv.parametrizations.weight.original
    assert original.std().item() == pytest.approx(0.02, rel=0.5)
    for _ in range(20):  # power iterations converge in training mode
        D(torch.rand(2, 1, 32, 32))
    sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
    assert sigma.item() == pytest.approx(1.0, rel=0.1)


def test_r1_penalty_is_the_squared_input_gradient():
    net = torch.nn.Conv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(3.0)
    x = torch.rand(2, 1, 4, 4)
    # a 4x4 patch map averaged: D(x) = 3 * mean(x), gradient 3/16 per pixel, |grad|^2 = 9/16
    assert r1_penalty(net, x).item() == pytest.approx(9 / 16)


def test_a_training_step_with_r1_updates_the_discriminators():
    cfg = compose_train_config([*TINY, "loss.r1_gamma=10", "loss.r1_every=1"])
    st = build_training(cfg, torch.device("cpu"))
    batch = {"A": torch.rand(2, 3, 32, 32) * 2 - 1, "B": torch.rand(2, 3, 32, 32) * 2 - 1}
    terms = train_step(st, batch)
    assert terms["D_A_r1"].item() > 0 and terms["D_B_r1"].item() > 0


@pytest.mark.parametrize(
    "override,fragment",
    [
        ("loss.lambda_mask=-1", "loss.lambda_mask must be >= 0"),
        ("loss.lambda_mask_tv=-1", "loss.lambda_mask_tv must be >= 0"),
        ("loss.mask_area=1.5", "loss.mask_area must be in [0, 1]"),
        ("loss.r1_every=0", "loss.r1_every must be >= 1"),
        ("loss.lambda_tone=-1", "loss.lambda_tone must be >= 0"),
        ("loss.tone_cells=64", "loss.tone_cells must be between 1 and the image side (32)"),
        ("train.ema=1", "train.ema must be in [0, 1)"),
        ("discriminator.augment=colour", "colour is not an augmentation"),
    ],
)
def test_bad_quality_options_are_one_line_errors(gantrans, tmp_path, override, fragment):
    line = one_line_error(gantrans(*train_args(tmp_path / "run", override)))
    assert fragment in line


@pytest.mark.parametrize("override", ["loss.r1_gamma=1", "loss.lambda_tone=5"])
def test_r1_and_the_tone_term_are_refused_for_pix2pix(override):
    with pytest.raises(ConfigError, match="does not apply to method=pix2pix"):
        compose_train_config(["method=pix2pix", "dataset=shapes_paired", override])


def test_the_tone_term_is_refused_for_dcgan():
    with pytest.raises(ConfigError, match="does not apply to method=dcgan"):
        compose_train_config(["method=dcgan", "loss.lambda_tone=5"])


# --------------------------------------------------------------------------------------------
# the tone term
# --------------------------------------------------------------------------------------------
def test_the_tone_term_sees_a_remap_of_the_whole_image_more_than_a_local_change():
    gen = torch.Generator().manual_seed(0)
    # bright skin with darker features (the remap of a face changes its tones, not only noise)
    faces = 0.4 + 0.3 * (torch.rand(4, 1, 64, 64, generator=gen) * 2 - 1)
    smile = faces.clone()
    smile[..., 40:50, 20:44] = 0.9  # a bright mouth: one region of a 4 x 4 grid changes
    remap = -faces  # the grey levels inverted, which a second inversion undoes exactly
    assert tone_distance(faces, faces, 4).item() == 0
    local, whole = tone_distance(faces, smile, 4).item(), tone_distance(faces, remap, 4).item()
    assert 0 < local < whole / 4
    assert tone_distance(faces, faces + 0.2, 4).item() == pytest.approx(0.2, abs=1e-5)
    # and the term reaches the generators' loss with its weight, only when asked for
    cfg = compose_train_config([*TINY, "loss.lambda_tone=5", "loss.tone_cells=2"])
    method = build_training(cfg, torch.device("cpu")).method
    assert method.lambda_tone == 5 and method.tone_cells == 2
    terms = method.tone_terms([(faces, remap), (faces, faces)])
    assert terms["tone"].item() == pytest.approx(5 * tone_distance(faces, remap, 2).item() / 2)
    method.lambda_tone = 0
    assert method.tone_terms([(faces, remap)]) == {}


def test_checkpoints_without_the_new_keys_read_as_their_defaults():
    old = {
        "arch": {
            "generator": {"name": "unet", "num_downs": 5},
            "discriminator": {"name": "patchgan", "ndf": 64},
        }
    }
    arch = checkpoint.arch(old)
    assert arch["generator"]["mask"] is False
    assert (
        arch["discriminator"]["spectral_norm"] is False and arch["discriminator"]["augment"] is None
    )


# --------------------------------------------------------------------------------------------
# the panel of judges
# --------------------------------------------------------------------------------------------
def test_panel_scores_lead_with_the_mean_and_keep_the_old_keys():
    target = 1
    preds = [torch.tensor([1, 1, 1, 0]), torch.tensor([1, 0, 0, 0]), torch.tensor([1, 1, 0, 0])]
    s = evaluator.panel_scores(preds, target, "AtoB")
    assert s["panel_domain_acc_AtoB"] == pytest.approx((0.75 + 0.25 + 0.5) / 3)
    assert s["panel_min_domain_acc_AtoB"] == 0.25 and s["panel_max_domain_acc_AtoB"] == 0.75
    assert s["panel_spread_domain_acc_AtoB"] == 0.5
    assert s["panel_agreement_AtoB"] == 0.5  # images 0 and 3
    assert s["domain_acc_AtoB"] == 0.75 and s["judge2_domain_acc_AtoB"] == 0.25
    assert s["judge3_domain_acc_AtoB"] == 0.5
    assert s["judge_agreement_AtoB"] == 0.5


def test_a_wide_spread_marks_the_direction_suspect_and_a_narrow_one_does_not():
    judges = [{"arch": {"arch": a}, "test_balanced_acc": 0.93, "reliable": True}
              for a in ("strided", "pooled", "residual")]  # fmt: skip
    wide = {"panel_spread_domain_acc_AtoB": 0.2, "panel_min_domain_acc_AtoB": 0.5,
            "panel_max_domain_acc_AtoB": 0.7}  # fmt: skip
    (reason,) = controls.panel_checks(wide, "AtoB", "B", judges)
    assert "50.0% to 70.0%" in reason and "20.0 points" in reason
    narrow = {**wide, "panel_spread_domain_acc_AtoB": 0.1}
    assert controls.panel_checks(narrow, "AtoB", "B", judges) == []


def test_every_panel_key_has_a_direction_of_better():
    from gantrans.evaluation.names import LOWER_IS_BETTER

    for name in ("panel_domain_acc", "panel_spread_domain_acc", "judge3_domain_acc",
                 "panel_input_domain_acc", "panel_agreement"):  # fmt: skip
        assert f"{name}_AtoB" in LOWER_IS_BETTER
    assert LOWER_IS_BETTER["panel_spread_domain_acc_AtoB"] is True
    assert compose_train_config([*TINY]).train.eval_metric == "panel_domain_acc_AtoB"


def test_every_metric_key_is_documented():
    from gantrans.evaluation.names import LOWER_IS_BETTER, SAMPLES_LOWER_IS_BETTER, base_name

    text = (Path(__file__).parents[1] / "docs" / "evaluation-json.md").read_text()
    names = {base_name(k) for k in [*LOWER_IS_BETTER, *SAMPLES_LOWER_IS_BETTER]}
    missing = sorted(n for n in names if f"`{n}`" not in text and n not in ("kid_std",))
    assert not missing, missing


def test_judge_stability_script_runs_end_to_end(gantrans, tmp_path):
    import json

    from tests.test_scripts import load_script

    inputs = tmp_path / "inputs"
    code, _, err = gantrans("evaluate", "dataset=shapes", "dataset.test_size=8", "direction=AtoB",
                            f"export_inputs={inputs}", "progress=false")  # fmt: skip
    assert code == 0, err
    script = load_script("judge_stability")
    out = tmp_path / "stability.json"
    code = script.main([
        "dataset=shapes", "dataset.train_size=24", "dataset.test_size=8", "direction=AtoB",
        f"translations={inputs}", "judge_epochs=1", "progress=false", "--draws", "2",
        "--fraction", "0.5", "--out", str(out),
    ])  # fmt: skip
    assert code == 0
    result = json.loads(out.read_text())
    assert len(result["draws"]) == 2 and result["images"] == 8
    for draw in result["draws"]:
        assert [j["arch"] for j in draw["judges"]] == ["strided", "pooled", "residual"]
        assert draw["train_images"] == [12, 12]  # half of each domain's 24
        rates = [j["domain_acc"] for j in draw["judges"]]
        assert draw["panel_domain_acc"] == pytest.approx(sum(rates) / 3)
    assert set(result["range_by_judge"]) == {"strided", "pooled", "residual"}
    assert 0 <= result["range_of_panel_mean"] <= 1
    with pytest.raises(SystemExit) as info:  # argparse's own one-line usage error
        script.main(["dataset=shapes", "direction=AtoB", "--draws", "0"])
    assert info.value.code == 2
    assert script.main(["dataset=shapes", "direction=AtoB"]) == 2  # no translations=DIR


def test_total_variation_makes_a_mesh_cost_more_than_a_region():
    from gantrans.methods.base import total_variation

    mesh = torch.zeros(1, 1, 8, 8)
    mesh[..., ::2, ::2] = 1  # a quarter of the pixels, none next to another
    region = torch.zeros(1, 1, 8, 8)
    region[..., :4, :4] = 1  # the same quarter in one square
    assert mesh.mean() == region.mean() == 0.25
    assert total_variation(mesh) > 5 * total_variation(region)
