"""`gantrans evaluate` end to end and the Evaluator API used during training (no network)."""

from __future__ import annotations

import json

import pytest
import torch

from gantrans.checkpoint import load_checkpoint
from gantrans.cyclegan import CycleGAN
from gantrans.evaluate import LOWER_IS_BETTER, Evaluator, run_dir_of

from .conftest import TINY, make_checkpoint
from .test_metrics import random_inception_weights

FAST = [
    "features=classifier",
    "classifier_max_images=16",
    "classifier_epochs=1",
    "c2st_epochs=1",
    "num_samples=2",
    "progress=false",
]
SHAPES = {"name": "shapes", "channels": 3, "image_size": 32, "train_size": 16, "test_size": 4}
TINY_SHAPES = ["dataset=shapes", "dataset.train_size=16", "dataset.test_size=4"]


def test_evaluate_a_trained_shapes_checkpoint(gantrans, tmp_path):
    run = tmp_path / "run"
    code, _, err = gantrans("train", *TINY, "train.max_steps=2", f"hydra.run.dir={run}")
    assert code == 0, err
    ckpt = run / "checkpoints" / "latest.pt"

    code, out, err = gantrans("evaluate", f"ckpt={ckpt}", *FAST)
    assert code == 0, err
    eval_dir = run / "eval"
    report = json.loads((eval_dir / "evaluation.json").read_text())
    assert set(report["metrics"]) == set(LOWER_IS_BETTER)  # shapes: every metric, both ways
    assert report["checkpoint"]["step"] == 2
    assert report["dataset"]["test_size"] == 4 and report["settings"]["test_images"] == {
        "A": 4,
        "B": 4,
    }
    assert report["settings"]["features"] == "classifier"
    assert "NOT to published" in report["settings"]["feature_note"]
    clf = report["settings"]["domain_classifier"]
    assert clf["cached"] is False and clf["train_images"] == {"A": 16, "B": 16}
    assert 0 <= clf["test_acc"] <= 1 and report["gantrans_version"]
    assert (eval_dir / "domain_classifier.pt").is_file()
    for direction in ("AtoB", "BtoA"):
        assert 0 <= report["metrics"][f"domain_acc_{direction}"] <= 1
        assert (eval_dir / f"samples_{direction}.png").is_file()
    md = (eval_dir / "evaluation.md").read_text()
    assert "| AtoB |" in md and "samples_BtoA.png" in md and "shape change" in md
    assert "AtoB: FID" in out and "BtoA: FID" in out

    # again, elsewhere: the classifier comes from the run's cache, the numbers are the same
    other = tmp_path / "other"
    code, _, err = gantrans("evaluate", f"ckpt={ckpt}", *FAST, f"output_dir={other}")
    assert code == 0, err
    again = json.loads((other / "evaluation.json").read_text())
    assert again["settings"]["domain_classifier"]["cached"] is True
    assert again["metrics"] == report["metrics"]  # seeded
    # another dataset config (more test images): another classifier
    code, _, err = gantrans("evaluate", f"ckpt={ckpt}", *FAST, "dataset.test_size=6")
    assert code == 0, err
    third = json.loads((eval_dir / "evaluation.json").read_text())
    assert third["settings"]["test_images"] == {"A": 6, "B": 6}
    assert third["settings"]["domain_classifier"]["cached"] is False
    assert load_checkpoint(ckpt)["step"] == 2  # the checkpoint is left alone


def test_evaluate_offline_inception_fails_in_one_line(gantrans, tmp_path, offline):
    ckpt = make_checkpoint(tmp_path / "run" / "checkpoints" / "tiny.pt")
    code, _, err = gantrans("evaluate", f"ckpt={ckpt}", *TINY_SHAPES, "progress=false")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "could not be fetched" in lines[0]
    assert "weights-inception-2015-12-05-6726825d.pth" in lines[0]
    assert str(offline / "hub" / "checkpoints") in lines[0] and "inception_weights=" in lines[0]
    assert not (tmp_path / "run" / "eval").exists()  # failed before any slow work


def test_evaluate_with_local_inception_weights(gantrans, tmp_path, monkeypatch, offline):
    weights = random_inception_weights(tmp_path / "inception.pth", monkeypatch)
    ckpt = make_checkpoint(tmp_path / "tiny.pt", channels=1)
    out_dir = tmp_path / "report"
    code, _, err = gantrans(
        "evaluate", f"ckpt={ckpt}", *TINY_SHAPES, *FAST[1:], "features=inception",
        f"inception_weights={weights}", f"output_dir={out_dir}",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((out_dir / "evaluation.json").read_text())
    assert report["settings"]["features"] == "inception"
    assert report["settings"]["feature_dim"] == 2048
    assert report["dataset"]["channels"] == 1  # the checkpoint's channels win
    assert report["metrics"]["fid_AtoB"] >= 0
    assert (tmp_path / "eval" / "domain_classifier.pt").is_file()  # run dir = the ckpt's folder


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "records no dataset: pass dataset=shapes"),
        (["dataset=shapes", "dataset.bogus=1"], "dataset.bogus is not an option"),
        (["dataset=shapes", "dataset.test_size=2"], "at least 4 per domain"),
        (["dataset=shapes", "features=vgg"], "features=vgg is unknown"),
        (["dataset=shapes", "max_images=0"], "max_images must be positive"),
    ],
)
def test_evaluate_user_errors_are_one_line(gantrans, tmp_path, args, message):
    ckpt = make_checkpoint(tmp_path / "tiny.pt")
    code, _, err = gantrans("evaluate", f"ckpt={ckpt}", *FAST, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_unknown_key_of_the_recorded_dataset(gantrans, tmp_path):
    ckpt = make_checkpoint(tmp_path / "tiny.pt")
    payload = torch.load(ckpt, weights_only=True)
    payload["config"] = {"dataset": SHAPES}
    torch.save(payload, ckpt)
    code, _, err = gantrans("evaluate", f"ckpt={ckpt}", *FAST, "dataset.test_siz=8")
    assert code == 2 and "dataset.test_siz is not a key of the checkpoint's dataset" in err


def test_evaluator_api_for_training(tmp_path):
    gen = {"name": "resnet", "in_channels": 3, "out_channels": 3, "ngf": 4, "norm": "instance",
           "dropout": False, "n_blocks": 1, "padding_type": "reflect"}  # fmt: skip
    disc = {"name": "patchgan", "in_channels": 3, "ndf": 4, "n_layers": 3, "norm": "instance"}
    model = CycleGAN(gen, disc).train()
    kwargs = dict(features="classifier", max_images=4, classifier_max_images=8, c2st_epochs=1)
    rng = torch.get_rng_state()
    evaluator = Evaluator(SHAPES, 3, "cpu", tmp_path / "eval", **kwargs)
    with torch.no_grad():  # as inside a training loop's no_grad block: still works
        scores = evaluator(model.G_A, model.G_B)
    assert set(scores) == set(LOWER_IS_BETTER)
    assert all(isinstance(v, float) for v in scores.values())
    assert model.G_A.training and model.G_B.training  # train mode restored
    assert scores == evaluator(model.G_A, model.G_B)  # real statistics reused, seeded
    assert torch.equal(rng, torch.get_rng_state())  # training's random stream is left alone
    again = Evaluator(SHAPES, 3, "cpu", tmp_path / "eval", **kwargs)
    assert again.info["domain_classifier"]["cached"] is True
    assert LOWER_IS_BETTER["fid_AtoB"] and not LOWER_IS_BETTER["domain_acc_BtoA"]
    assert run_dir_of(tmp_path / "r" / "checkpoints" / "x.pt") == (tmp_path / "r").resolve()
