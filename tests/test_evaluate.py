"""`gantrans evaluate` end to end: checkpoints, folders of translations, judges and controls."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gantrans.checkpoint import load_checkpoint, run_dir_of
from gantrans.data import build_domains, tensor_to_pil
from gantrans.evaluation import judges
from gantrans.evaluation.evaluator import Evaluator, EvaluatorOptions, checks
from gantrans.evaluation.names import LOWER_IS_BETTER, NEEDS_GENERATOR
from gantrans.methods import CycleGAN

from .conftest import TINY, make_checkpoint, one_line_error
from .test_metrics import random_inception_weights

FAST = [
    "features=classifier",
    "judge_max_images=64",
    "judge_epochs=2",
    "c2st_epochs=1",
    "num_samples=2",
    "progress=false",
]
SHAPES = {"name": "shapes", "channels": 3, "image_size": 32, "train_size": 16, "test_size": 4}
TINY_SHAPES = ["dataset=shapes", "dataset.train_size=16", "dataset.test_size=4"]
JUDGE_FAST = dict(judge_max_images=64, judge_epochs=2, c2st_epochs=1)
# enough real images for judges that generalise (16 per domain do not); trained once per run
JUDGED = {**SHAPES, "train_size": 64, "test_size": 8}
JUDGED_ARGS = ["dataset=shapes", "dataset.train_size=64", "dataset.test_size=8"]


def test_evaluate_a_trained_shapes_checkpoint(gantrans, tmp_path, monkeypatch):
    monkeypatch.setenv("GANTRANS_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    code, _, err = gantrans("train", *TINY, "train.max_steps=2", f"hydra.run.dir={run}")
    assert code == 0, err
    ckpt = run / "checkpoints" / "latest.pt"

    code, out, err = gantrans("evaluate", f"ckpt={ckpt}", *FAST)
    assert code == 0, err
    eval_dir = run / "eval"
    report = json.loads((eval_dir / "evaluation.json").read_text())
    # shapes: every metric, both ways (but LPIPS, which is scored on paired sets only)
    lpips = {k for k in LOWER_IS_BETTER if "lpips" in k}
    assert set(report["metrics"]) == set(LOWER_IS_BETTER) - lpips
    assert report["source"]["step"] == 2
    assert report["settings"]["test_images"] == {"A": 4, "B": 4}
    assert report["settings"]["features"] == "classifier"
    assert "NOT to published" in report["settings"]["feature_note"]
    panel = report["settings"]["judges"]
    assert [j["arch"]["arch"] for j in panel] == ["strided", "pooled", "residual"]
    for judge in panel:
        assert judge["cached"] is False and judge["train_images"] == [14, 14]  # 2 + 2 held out
        assert 0 <= judge["test_balanced_acc"] <= 1 and judge["test_images"] == [4, 4]
    assert (
        sorted(p.name.split("-")[0] for p in (tmp_path / "cache" / "judges").iterdir())
        == ["shapes"] * 3
    )
    assert set(report["checks"]) == {"AtoB", "BtoA"} and report["not_computed"] == {}
    for direction in ("AtoB", "BtoA"):
        m = report["metrics"]
        assert 0 <= m[f"domain_acc_{direction}"] <= 1
        rates = [m[f"domain_acc_{direction}"], m[f"judge2_domain_acc_{direction}"],
                 m[f"judge3_domain_acc_{direction}"]]  # fmt: skip
        assert m[f"panel_domain_acc_{direction}"] == pytest.approx(sum(rates) / 3)
        assert m[f"panel_min_domain_acc_{direction}"] == min(rates)
        assert (eval_dir / f"samples_{direction}.png").is_file()
    md = (eval_dir / "evaluation.md").read_text()
    assert "| AtoB (as B) |" in md and "samples_BtoA.png" in md and "shape change" in md
    assert "balanced accuracy on the real test images" in md and "reconstructions" in md
    assert "AtoB: " in out and "BtoA: " in out and "balanced accuracy on real test images" in out
    assert "by the panel's mean (judges " in out and "| panel mean ↑ | lowest – highest |" in md

    # again, elsewhere: the judges come from the cache, the numbers are the same
    other = tmp_path / "other"
    code, _, err = gantrans("evaluate", f"ckpt={ckpt}", *FAST, f"output_dir={other}")
    assert code == 0, err
    again = json.loads((other / "evaluation.json").read_text())
    assert [j["cached"] for j in again["settings"]["judges"]] == [True] * 3
    assert again["metrics"] == report["metrics"]  # seeded
    # another dataset config (more test images): other judges
    code, _, err = gantrans("evaluate", f"ckpt={ckpt}", *FAST, "dataset.test_size=6")
    assert code == 0, err
    third = json.loads((eval_dir / "evaluation.json").read_text())
    assert third["settings"]["test_images"] == {"A": 6, "B": 6}
    assert [j["cached"] for j in third["settings"]["judges"]] == [False] * 3
    # one direction only
    code, _, err = gantrans("evaluate", f"ckpt={ckpt}", *FAST, "direction=BtoA")
    assert code == 0, err
    one = json.loads((eval_dir / "evaluation.json").read_text())
    assert {k.rsplit("_", 1)[1] for k in one["metrics"]} == {"BtoA", "B"}
    assert load_checkpoint(ckpt)["step"] == 2  # the checkpoint is left alone


def test_evaluate_offline_inception_fails_in_one_line(gantrans, tmp_path, offline):
    ckpt = make_checkpoint(tmp_path / "run" / "checkpoints" / "tiny.pt")
    line = one_line_error(gantrans("evaluate", f"ckpt={ckpt}", *TINY_SHAPES, "progress=false"))
    assert "could not be fetched" in line
    assert "weights-inception-2015-12-05-6726825d.pth" in line
    assert str(offline / "hub" / "checkpoints") in line and "inception_weights=" in line
    assert not (tmp_path / "run" / "eval").exists()  # failed before any slow work


def test_evaluate_with_local_inception_weights(gantrans, tmp_path, monkeypatch, offline):
    weights = random_inception_weights(tmp_path / "inception.pth", monkeypatch)
    ckpt = make_checkpoint(tmp_path / "tiny.pt", channels=1)
    out_dir = tmp_path / "report"
    code, _, err = gantrans(
        "evaluate", f"ckpt={ckpt}", *TINY_SHAPES, *FAST[1:], "features=inception",
        f"inception_weights={weights}", f"output_dir={out_dir}", "controls=false", "c2st=false",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((out_dir / "evaluation.json").read_text())
    assert report["settings"]["features"] == "inception"
    assert report["settings"]["fid_resize"] == "clean"
    assert report["settings"]["feature_dim"] == 2048
    assert report["dataset"]["channels"] == 1  # the checkpoint's channels win
    assert report["metrics"]["fid_AtoB"] >= 0
    assert "blur_domain_acc_AtoB" not in report["metrics"]  # controls=false
    assert "panel_domain_acc_AtoB" in report["metrics"]  # the panel leads all the same
    assert len(report["settings"]["judges"]) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no dataset is known: pass dataset=NAME"),
        (["dataset=shapes", "dataset.bogus=1"], "dataset.bogus is not an option"),
        (["dataset=shapes", "dataset.test_size=2"], "at least 4 per domain"),
        (["dataset=shapes", "features=vgg"], "features=vgg is unknown"),
        (["dataset=shapes", "max_images=0"], "max_images must be positive"),
        (["dataset=shapes", "direction=AtoA"], "direction=AtoA is unknown"),
        (["dataset=shapes", "fid_resize=nearest"], "fid_resize=nearest is unknown"),
    ],
)
def test_evaluate_user_errors_are_one_line(gantrans, tmp_path, args, message):
    ckpt = make_checkpoint(tmp_path / "tiny.pt")
    line = one_line_error(gantrans("evaluate", f"ckpt={ckpt}", *FAST, *args))
    assert message in line


def test_unknown_key_of_the_recorded_dataset(gantrans, tmp_path):
    ckpt = make_checkpoint(tmp_path / "tiny.pt")
    payload = torch.load(ckpt, weights_only=True)
    payload["config"] = {"dataset": SHAPES}
    torch.save(payload, ckpt)
    line = one_line_error(gantrans("evaluate", f"ckpt={ckpt}", *FAST, "dataset.test_siz=8"))
    assert "dataset.test_siz is not a key of the checkpoint's dataset" in line


def test_evaluator_api_for_training(tmp_path):
    gen = {"name": "resnet", "in_channels": 3, "out_channels": 3, "ngf": 4, "norm": "instance",
           "dropout": False, "n_blocks": 1, "padding_type": "reflect"}  # fmt: skip
    disc = {"name": "patchgan", "in_channels": 3, "ndf": 4, "n_layers": 3, "norm": "instance"}
    model = CycleGAN(gen, disc).train()
    kwargs = dict(features="classifier", max_images=4, **JUDGE_FAST)
    rng = torch.get_rng_state()
    evaluator = Evaluator(SHAPES, 3, "cpu", EvaluatorOptions(**kwargs))
    with torch.no_grad():  # as inside a training loop's no_grad block: still works
        scores = evaluator(model.G_A, model.G_B)
    assert set(scores) == {k for k in LOWER_IS_BETTER if "lpips" not in k}  # LPIPS: paired sets
    assert all(isinstance(v, float) for v in scores.values())
    assert model.G_A.training and model.G_B.training  # train mode restored
    assert scores == evaluator(model.G_A, model.G_B)  # real statistics reused, seeded
    assert torch.equal(rng, torch.get_rng_state())  # training's random stream is left alone
    again = Evaluator(SHAPES, 3, "cpu", EvaluatorOptions(**kwargs))
    assert [j["cached"] for j in again.info["judges"]] == [True] * 3
    # a cap above the set's size (as `gantrans evaluate` has by default) is no cap: same judges
    uncapped = Evaluator(SHAPES, 3, "cpu", EvaluatorOptions(**{**kwargs, "judge_max_images": None}))
    assert [j["cached"] for j in uncapped.info["judges"]] == [True] * 3
    # a run of another seed is scored by the same judges
    reseeded = Evaluator(SHAPES, 3, "cpu", EvaluatorOptions(seed=5, **kwargs))
    assert [j["cached"] for j in reseeded.info["judges"]] == [True] * 3
    one_way = evaluator(model.G_A)  # a method with one generator: no reconstructions
    assert "domain_acc_AtoB" in one_way and "domain_acc_BtoA" not in one_way
    assert "cycle_l1_A" not in one_way and "rec_domain_acc_AtoB" not in one_way
    assert LOWER_IS_BETTER["fid_AtoB"] and not LOWER_IS_BETTER["domain_acc_BtoA"]
    assert run_dir_of(tmp_path / "r" / "checkpoints" / "x.pt") == (tmp_path / "r").resolve()


# ---------------------------------------------------------------------------------------------
# a judge fooled on purpose, and the report that says so
# ---------------------------------------------------------------------------------------------
def _high_frequency(images: torch.Tensor) -> torch.Tensor:
    """Mean |image - its 3x3 local mean| per image: large for noise, small for flat shapes."""
    smooth = F.avg_pool2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return (images - smooth).abs().flatten(1).mean(1)


class NoiseFooledJudge(judges.Judge):
    """An honest judge that also calls anything grainy "B": the artefact a generator can exploit."""

    def predict(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        honest = super().predict(images, batch_size)
        return torch.where(_high_frequency(images) > 0.03, torch.ones_like(honest), honest)


class Checkerboard(nn.Module):
    """A "generator" that leaves the shape as it is and adds a fine checkerboard."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # so it has a device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        board = ((torch.arange(h)[:, None] + torch.arange(w)[None]) % 2).float() * 0.4 - 0.2
        return (x + board).clamp(-1, 1)


class Identity(Checkerboard):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def judged_options(**changes) -> EvaluatorOptions:
    return EvaluatorOptions(features="classifier", c2st=False, **JUDGE_FAST, **changes)


def _real_judges() -> list[judges.Judge]:
    return Evaluator(JUDGED, 3, "cpu", judged_options()).judges


def test_a_judge_fooled_by_noise_is_caught_by_the_controls():
    honest, second, third = _real_judges()
    fooled = NoiseFooledJudge(honest.net, dict(honest.info))
    evaluator = Evaluator(JUDGED, 3, "cpu", judged_options(judge_set=[fooled, second, third]))
    assert evaluator.judge_info[0]["reliable"]  # on real images it is as good as the honest one
    scores, _ = evaluator.run({"AtoB": Checkerboard(), "BtoA": Identity()})
    assert scores["domain_acc_AtoB"] == 1.0  # every circle "became" a square
    assert scores["noise_domain_acc_AtoB"] >= 0.5 and scores["rec_domain_acc_AtoB"] == 1.0
    report = checks(scores, evaluator.info)["AtoB"]
    assert not report["trustworthy"]
    text = " ".join(report["reasons"])
    assert "noisy real inputs" in text and "responds to noise" in text
    assert "cycle reconstructions" in text and "the judges disagree" in text

    # the same translations judged honestly: the figure is low, and nothing is flagged
    plain = Evaluator(JUDGED, 3, "cpu", judged_options(judge_set=[honest, second, third]))
    plain_scores, _ = plain.run({"AtoB": Identity(), "BtoA": Identity()})
    assert plain_scores["domain_acc_AtoB"] <= 0.25
    assert checks(plain_scores, plain.info)["AtoB"]["trustworthy"]


def test_a_weak_judge_is_flagged_as_unreliable():
    honest, second, third = _real_judges()

    class Coin(judges.Judge):
        def predict(self, images, batch_size=256):
            return torch.arange(len(images)) % 2  # right half the time

    evaluator = Evaluator(
        JUDGED, 3, "cpu", judged_options(judge_set=[Coin(honest.net, {}), second, third])
    )
    assert not evaluator.judge_info[0]["reliable"]
    scores, _ = evaluator.run({"AtoB": Identity(), "BtoA": Identity()})
    reasons = checks(scores, evaluator.info)["AtoB"]["reasons"]
    assert "its domain figures are not reliable" in reasons[0]


# ---------------------------------------------------------------------------------------------
# scoring a folder of translations made by anything
# ---------------------------------------------------------------------------------------------
def _write_truth_translations(folder, names_from):
    """The true translation (the square of each test circle), named as its input."""
    test_a, _ = build_domains(JUDGED, "test", 3)
    folder.mkdir(parents=True)
    for i, name in enumerate(names_from):
        tensor_to_pil(test_a.counterpart(i)).save(folder / name)


def test_score_a_folder_against_the_same_judge_and_keys(gantrans, tmp_path):
    inputs = tmp_path / "inputs"
    code, _, err = gantrans(
        "evaluate", *JUDGED_ARGS, "direction=AtoB", f"export_inputs={inputs}", "progress=false"
    )
    assert code == 0, err
    names = sorted(p.name for p in inputs.iterdir())
    assert names == [f"{i:04d}.png" for i in range(8)]
    translated = tmp_path / "translated"
    _write_truth_translations(translated, names)

    out = tmp_path / "report"
    code, stdout, err = gantrans(
        "evaluate", *JUDGED_ARGS, "direction=AtoB", f"translations={translated}",
        f"output_dir={out}", *FAST,
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((out / "evaluation.json").read_text())
    m = report["metrics"]
    ckpt_keys = {k for k in LOWER_IS_BETTER if k.endswith(("_AtoB", "_A")) and "lpips" not in k}
    generator_only = {f"{n}_{'A' if n.startswith('cycle_') else 'AtoB'}" for n in NEEDS_GENERATOR}
    assert set(m) == ckpt_keys - generator_only  # the same keys as with ckpt=, less the cycle
    assert set(report["not_computed"]) == generator_only
    assert "needs the generators" in report["not_computed"]["cycle_l1_A"]
    assert m["domain_acc_AtoB"] == 1.0 and m["truth_l1_AtoB"] == 0.0  # they are the truth
    assert m["content_l1_AtoB"] > 0 and report["source"]["paired_with_inputs"] is True
    assert report["checks"]["AtoB"]["trustworthy"]
    assert "AtoB: 100.0% classified B" in stdout

    # names that match no input: scored all the same, without what needs the pairs
    unpaired = tmp_path / "unpaired"
    _write_truth_translations(unpaired, [f"x{i}.png" for i in range(8)])
    code, _, err = gantrans(
        "evaluate", *JUDGED_ARGS, "direction=AtoB", f"translations={unpaired}",
        f"output_dir={tmp_path / 'r2'}", *FAST,
    )  # fmt: skip
    assert code == 0, err
    again = json.loads((tmp_path / "r2" / "evaluation.json").read_text())
    assert again["metrics"]["domain_acc_AtoB"] == 1.0
    assert "content_l1_AtoB" not in again["metrics"] and "content_l1_AtoB" in again["not_computed"]
    assert [j["cached"] for j in again["settings"]["judges"]] == [True] * 3
    assert again["metrics"]["fid_AtoB"] == pytest.approx(m["fid_AtoB"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["translations=DIR"], "translations=DIR needs direction=AtoB or direction=BtoA"),
        (["translations=MISSING", "direction=AtoB"], "is not a folder"),
        (["translations=EMPTY", "direction=AtoB"], "holds no images"),
        (["translations=DIR", "direction=AtoB", "ckpt=x.pt"], "not both"),
        ([], "pass ckpt=PATH (a checkpoint) or translations=DIR"),
        (["export_inputs=DIR"], "export_inputs=DIR needs direction"),
    ],
)
def test_folder_scoring_user_errors_are_one_line(gantrans, tmp_path, args, message):
    (tmp_path / "EMPTY").mkdir()
    _write_truth_translations(tmp_path / "DIR", ["0000.png"] * 1)
    args = [a.replace("=DIR", f"={tmp_path / 'DIR'}").replace("=EMPTY", f"={tmp_path / 'EMPTY'}")
            .replace("=MISSING", f"={tmp_path / 'nope'}") for a in args]  # fmt: skip
    line = one_line_error(gantrans("evaluate", *TINY_SHAPES, *FAST, *args))
    assert message in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["translations=MISSING"], "is not a folder"),
        (["translations=ONE"], "has 1 image(s): scoring needs at least"),
        (["translations=DIR", "output_dir=AFILE/eval"], "cannot write the report into"),
        (["translations=DIR", "dataset=folder", "dataset.root=MISSING"], "MISSING"),
    ],
)
def test_every_input_is_checked_before_any_judge_is_trained(
    gantrans, tmp_path, monkeypatch, args, message
):
    import gantrans.evaluation.evaluate as evaluate_module

    def no_judges(*a, **k):
        raise AssertionError("judges were trained before the inputs were checked")

    monkeypatch.setattr(evaluate_module, "Evaluator", no_judges)
    _write_truth_translations(tmp_path / "ONE", ["0000.png"])
    _write_truth_translations(tmp_path / "DIR", [f"{i:04d}.png" for i in range(4)])
    (tmp_path / "AFILE").write_text("x")
    paths = {"MISSING": tmp_path / "nope", "ONE": tmp_path / "ONE", "DIR": tmp_path / "DIR",
             "AFILE": tmp_path / "AFILE"}  # fmt: skip
    for key, path in paths.items():
        args = [a.replace(key, str(path)) for a in args]
        message = message.replace(key, str(path))
    dataset = [] if any(a.startswith("dataset=") for a in args) else TINY_SHAPES
    line = one_line_error(gantrans("evaluate", *dataset, *FAST, "direction=AtoB", *args))
    assert message in line
