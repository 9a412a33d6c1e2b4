"""Metrics and classifiers on inputs with known answers (no network, no Inception download)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from gantrans.data import build_domains
from gantrans.evaluation import classifiers, metrics


def _images(n: int, seed: int, shift: float = 0.0, channels: int = 3, side: int = 16):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, channels, side, side, generator=g) * 1.6 - 0.8 + shift).clamp(-1, 1)


def _features(n: int, seed: int, shift: float = 0.0, dim: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g) + shift


class TinyConv(nn.Module):
    """A fixed random conv feature network: (N, 3, H, W) -> (N, 8)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x.float())).mean((2, 3))


# ---------------------------------------------------------------------------------------------
# per-image numbers
# ---------------------------------------------------------------------------------------------
def test_psnr_known_values():
    x = torch.zeros(2, 3, 8, 8)
    assert torch.isinf(metrics.psnr(x, x)).all()
    # MSE 0.04 on a peak-to-peak range of 2: 10 log10(4 / 0.04) = 20 dB
    assert metrics.psnr(x, x + 0.2) == pytest.approx(torch.full((2,), 20.0), abs=1e-4)
    assert metrics.l1(x, x + 0.2) == pytest.approx(torch.full((2,), 0.2), abs=1e-6)


def test_ssim_identical_is_one_and_noise_lowers_it():
    x = _images(3, 0)
    assert metrics.ssim(x, x) == pytest.approx(torch.ones(3), abs=1e-5)
    assert (metrics.ssim(x, _images(3, 1)) < 0.5).all()
    small = _images(2, 0, side=6)  # smaller than the 11-pixel window
    assert metrics.ssim(small, small) == pytest.approx(torch.ones(2), abs=1e-5)


def test_shape_change_scores_the_needed_change():
    real = -torch.ones(1, 3, 8, 8)
    truth = real.clone()
    truth[..., :4, :4] = 1.0
    assert metrics.shape_change(real, truth, truth).item() == pytest.approx(1.0)
    assert metrics.shape_change(real, real, truth).item() == pytest.approx(0.0)
    halfway = (real + truth) / 2
    assert metrics.shape_change(real, halfway, truth).item() == pytest.approx(0.5)


def test_to_uint8_rgb_repeats_gray_and_maps_the_range():
    x = torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 1, 3)
    out = metrics.to_uint8_rgb(x)
    assert out.dtype == torch.uint8 and out.shape == (1, 3, 1, 3)
    assert out[0, :, 0].tolist() == [[0, 128, 255]] * 3


# ---------------------------------------------------------------------------------------------
# FID and KID
# ---------------------------------------------------------------------------------------------
def test_fid_is_zero_for_identical_sets_and_grows_with_a_shift():
    real = _features(200, 0)
    assert abs(metrics.fid(real, real)) < 1e-3
    near, far = metrics.fid(real, _features(200, 1, 0.5)), metrics.fid(real, _features(200, 1, 2.0))
    assert 0.1 < near < far
    # a mean shift of 2 in each of 8 dimensions: about 8 * 2^2 = 32
    assert far == pytest.approx(32, rel=0.25)


def test_fid_matches_torchmetrics_with_a_custom_feature_network():
    net = TinyConv()
    real, fake = _images(40, 0), _images(40, 1, shift=0.3)
    direct = FrechetInceptionDistance(feature=net)
    direct.update(real, real=True)
    direct.update(fake, real=False)
    ours = metrics.fid(
        metrics.extract_features(net, real, torch.device("cpu"), batch_size=16),
        metrics.extract_features(net, fake, torch.device("cpu"), batch_size=16),
    )
    assert ours == pytest.approx(float(direct.compute()), rel=1e-3, abs=1e-5)
    assert ours > 1e-4


def test_kid_adapts_its_subset_size_and_is_reproducible():
    real = _features(12, 0)
    assert metrics.kid_subset_size(12, 30) == 6  # half the smaller set: subsets differ
    assert metrics.kid_subset_size(1500, 3000) == 750
    assert metrics.kid_subset_size(5000, 3000) == metrics.KID_MAX_SUBSET
    assert metrics.kid_subset_size(3, 3) == 2
    same, _ = metrics.kid(real, _features(12, 1))
    shifted, spread = metrics.kid(real, _features(12, 1, 2.0))
    assert abs(same) < 0.5 * shifted and spread > 0
    assert metrics.kid(real, _features(30, 1, 2.0), seed=3) == metrics.kid(
        real, _features(30, 1, 2.0), seed=3
    )
    with pytest.raises(ValueError):
        metrics.kid(real[:1], real)


def test_binomial_numbers():
    assert metrics.binomial_p_greater(10, 10) == pytest.approx(1 / 1024)
    assert metrics.binomial_p_greater(5, 10) > 0.5
    assert metrics.binomial_stderr(0.5, 100) == pytest.approx(0.05)


# ---------------------------------------------------------------------------------------------
# Inception weights: a random local file works; offline without one is one clear error
# ---------------------------------------------------------------------------------------------
def random_inception_weights(path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Save the state dict of a randomly initialised FID Inception (shapes only, no download)."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    with monkeypatch.context() as m:
        m.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda *a, **k: None)
        m.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(net.state_dict(), path)
    return path


def test_inception_features_from_a_local_weights_file(tmp_path, monkeypatch, offline):
    weights = random_inception_weights(tmp_path / "inception.pth", monkeypatch)
    net = metrics.InceptionFeatures(weights)
    gray = _images(2, 0, channels=1, side=32)
    assert net(gray).shape == (2, metrics.InceptionFeatures.num_features)


def test_inception_resize_clean_is_antialiased_bicubic_and_legacy_is_left_to_the_network(
    tmp_path, monkeypatch, offline
):
    weights = random_inception_weights(tmp_path / "inception.pth", monkeypatch)
    seen = {}
    for mode in ("clean", "legacy"):
        net = metrics.InceptionFeatures(weights, resize=mode)

        class Record(nn.Module):
            def forward(self, x, mode=mode):
                seen[mode] = x
                return (x.flatten(1)[:, :4].float(),)

        net.net = Record()
        net(_images(2, 0, channels=1, side=32))
    assert seen["clean"].dtype == torch.uint8 and seen["clean"].shape == (2, 3, 299, 299)
    assert seen["legacy"].shape == (2, 3, 32, 32)  # torch-fidelity resizes it (TF1 bilinear)
    with pytest.raises(ValueError, match="clean or legacy"):
        metrics.InceptionFeatures(weights, resize="bilinear")


def test_inception_offline_is_one_line_naming_the_file(offline):
    with pytest.raises(metrics.FeatureWeightsError) as info:
        metrics.InceptionFeatures(progress=False)
    message = str(info.value)
    url, cached = metrics.inception_weights_file()
    assert "\n" not in message and "could not be fetched" in message
    assert str(cached) in message and url in message and "inception_weights=" in message
    assert cached.parent.is_relative_to(offline) and not cached.exists()


def test_inception_refuses_an_unsafe_or_missing_weights_file(tmp_path, offline):
    import pickle

    bad = tmp_path / "bad.pth"
    # a class reference: weights_only refuses it
    bad.write_bytes(pickle.dumps(TinyConv, protocol=2))
    with pytest.raises(metrics.FeatureWeightsError, match="does not hold"):
        metrics.InceptionFeatures(bad)
    with pytest.raises(metrics.FeatureWeightsError, match="is not a file"):
        metrics.InceptionFeatures(tmp_path / "missing.pth")


# ---------------------------------------------------------------------------------------------
# classifiers
# ---------------------------------------------------------------------------------------------
CPU = torch.device("cpu")


def test_domain_classifier_separates_circles_from_squares():
    cfg = {"name": "shapes", "image_size": 32, "train_size": 200, "test_size": 100}
    train_a, train_b = build_domains(cfg, "train", 3)
    test_a, test_b = build_domains(cfg, "test", 3)

    def stack(a, b):
        x = torch.stack([a.load(i) for i in range(len(a))] + [b.load(i) for i in range(len(b))])
        return x, torch.tensor([0] * len(a) + [1] * len(b))

    x, y = stack(train_a, train_b)
    net = classifiers.train_classifier(x, y, epochs=5, seed=0, device=CPU, flip=True)
    assert classifiers.accuracy(net, *stack(test_a, test_b), CPU) > 0.9
    assert net.features(x[:3]).shape == (3, net.num_features)


def test_two_sample_test_detects_a_shift_and_not_identical_data():
    real = _images(200, 0, side=8)
    shifted = classifiers.two_sample_test(
        real, _images(200, 1, shift=0.15, side=8), seed=0, epochs=10, device=CPU
    )
    assert shifted["acc"] > 0.8 and shifted["p_value"] < 1e-6
    same = classifiers.two_sample_test(real, _images(200, 1, side=8), seed=0, epochs=10, device=CPU)
    assert 0.35 <= same["acc"] <= 0.65 and same["p_value"] > 0.01
    assert same["n_test"] == 200 and same["stderr"] == pytest.approx(
        math.sqrt(same["acc"] * (1 - same["acc"]) / 200)
    )
    again = classifiers.two_sample_test(
        real, _images(200, 1, side=8), seed=0, epochs=10, device=CPU
    )
    assert again == same  # seeded: the same numbers every time


def test_two_sample_test_is_at_chance_on_identical_data_of_unequal_sizes():
    # 60 real against 240 fake of one distribution: "always fake" would score 0.8 on
    # unbalanced halves; cut to equal sizes, chance is 0.5
    test = classifiers.two_sample_test(
        _images(60, 0, side=8), _images(240, 1, side=8), seed=0, epochs=10, device=CPU
    )
    assert test["n_train"] == test["n_test"] == 60
    assert 0.3 <= test["acc"] <= 0.7 and test["p_value"] > 0.01


def test_shape_iou_ignores_colour_and_scores_circle_against_square():
    from gantrans.data import build_domains
    from gantrans.evaluation.metrics import shape_iou

    test_A, _ = build_domains(
        {"name": "shapes", "image_size": 64, "train_size": 4, "test_size": 8, "seed": 0}, "test", 3
    )
    circles = torch.stack([test_A.load(i) for i in range(8)])
    squares = torch.stack([test_A.counterpart(i) for i in range(8)])
    assert torch.allclose(shape_iou(squares, squares), torch.ones(8))
    iou = shape_iou(circles, squares)
    assert ((iou > 0.7) & (iou < 0.85)).all()  # about pi / 4
    recoloured = squares.clone()
    inside = (squares - squares[:, :, :1, :1]).abs().amax(1, keepdim=True) > 0.3
    recoloured = torch.where(inside, torch.full_like(squares, 0.9), squares)  # another colour
    assert (shape_iou(recoloured, squares) > 0.95).all()
