"""Loss values on known inputs, the gradient penalty, and the CycleGAN objective's terms."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gantrans.methods import CycleGAN, CycleGANLoss
from gantrans.methods.losses import AdversarialLoss, discriminator_accuracy, gradient_penalty


def test_lsgan_values():
    loss = AdversarialLoss("lsgan")
    pred = torch.full((2, 1, 3, 3), 0.5)
    assert loss(pred, True).item() == pytest.approx(0.25)  # (0.5 - 1)^2
    assert loss(pred, False).item() == pytest.approx(0.25)  # 0.5^2
    assert loss(torch.ones(4), True).item() == 0.0


def test_bce_values():
    loss = AdversarialLoss("bce")
    assert loss(torch.zeros(5), True).item() == pytest.approx(math.log(2))
    assert loss(torch.full((5,), 100.0), True).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(torch.full((5,), 100.0), False).item() == pytest.approx(100.0, rel=1e-4)


def test_wgan_values():
    loss = AdversarialLoss("wgangp")
    pred = torch.tensor([1.0, 3.0])
    assert loss(pred, True).item() == -2.0
    assert loss(pred, False).item() == 2.0


def test_unknown_mode():
    with pytest.raises(ValueError, match="unknown GAN loss"):
        AdversarialLoss("hinge")


class LinearCritic(nn.Module):
    """D(x) = <w, x>: its input gradient is w everywhere, so the penalty is (||w|| - 1)^2."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1)


def test_gradient_penalty_known_value_and_gradient():
    w = torch.full((1, 2, 2), 1.5)  # ||w|| = 3
    critic = LinearCritic(w.clone())
    real, fake = torch.randn(4, 1, 2, 2), torch.randn(4, 1, 2, 2)
    gp = gradient_penalty(critic, real, fake)
    assert gp.item() == pytest.approx((3.0 - 1.0) ** 2, rel=1e-5)
    gp.backward()  # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    assert torch.allclose(critic.w.grad, 2 * 2.0 * w / 3.0, rtol=1e-5)


def test_gradient_penalty_zero_for_unit_gradient():
    critic = LinearCritic(torch.full((1, 2, 2), 0.5))  # ||w|| = 1
    assert gradient_penalty(
        critic, torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    ).item() == pytest.approx(0, abs=1e-10)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    gen = {
        "name": "resnet",
        "in_channels": 3,
        "out_channels": 3,
        "ngf": 4,
        "norm": "instance",
        "dropout": False,
        "n_blocks": 1,
    }
    disc = {"name": "patchgan", "in_channels": 3, "ndf": 4, "n_layers": 2, "norm": "instance"}
    return CycleGAN(gen, disc)


def test_generator_phase_terms_and_weights():
    net = tiny_model()
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    total, terms, fakes = CycleGANLoss(lambda_cycle=10, lambda_identity=0.5).generator_phase(
        net, a, b
    )
    assert set(terms) == {"G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B"}
    with torch.no_grad():
        rec_A = net.G_B(net.G_A(a))
        idt_A = net.G_A(b)
    assert terms["cycle_A"].item() == pytest.approx(10 * (rec_A - a).abs().mean().item(), rel=1e-5)
    assert terms["idt_A"].item() == pytest.approx(5 * (idt_A - b).abs().mean().item(), rel=1e-5)
    assert total.item() == pytest.approx(sum(v.item() for v in terms.values()), rel=1e-5)
    total.backward()
    # generators get gradients; the discriminators are frozen during this phase
    assert net.G_A.model[1].weight.grad is not None
    assert all(p.grad is None for p in net.D_A.parameters())
    assert all(p.requires_grad for p in net.D_A.parameters())  # and unfrozen afterwards


def test_identity_off():
    net = tiny_model()
    a = torch.rand(1, 3, 32, 32)
    _, terms, _ = CycleGANLoss(lambda_identity=0).generator_phase(net, a, a)
    assert "idt_A" not in terms


@pytest.mark.parametrize("mode", ["lsgan", "bce"])
def test_discriminator_loss_is_halved(mode):
    net = tiny_model()
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    fa, fb = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    adv = AdversarialLoss(mode)
    _, terms = CycleGANLoss(mode).discriminator_phase(net, a, b, fa, fb)
    with torch.no_grad():
        expected = 0.5 * (adv(net.D_A(b), True) + adv(net.D_A(fb), False))
    assert terms["D_A"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_wgangp_applies_the_penalty():
    net = tiny_model()
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    fa, fb = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    torch.manual_seed(1)
    total, terms = CycleGANLoss("wgangp", lambda_gp=10).discriminator_phase(net, a, b, fa, fb)
    assert terms["D_A_gp"].item() > 0 and terms["D_B_gp"].item() > 0
    with torch.no_grad():
        wass = net.D_A(fb).mean() - net.D_A(b).mean()
    assert terms["D_A"].item() == pytest.approx(wass.item() + 10 * terms["D_A_gp"].item(), rel=1e-4)
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.D_A.parameters())


@pytest.mark.parametrize("identity", [0.5, 0.0])
def test_fused_passes_compute_the_same_losses_and_gradients(identity):
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    fa, fb = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    results = []
    for fuse in (False, True):
        net = tiny_model(seed=3)
        obj = CycleGANLoss(lambda_identity=identity, fuse_generators=fuse, fuse_discriminators=fuse)
        g_total, g_terms, _ = obj.generator_phase(net, a, b)
        g_total.backward()
        d_total, d_terms = obj.discriminator_phase(net, a, b, fa, fb)
        d_total.backward()
        grads = [p.grad.clone() for p in net.parameters() if p.grad is not None]
        results.append(({**g_terms, **d_terms}, grads))
    (plain, plain_grads), (fused, fused_grads) = results
    assert plain.keys() == fused.keys()
    for key in plain:
        assert torch.allclose(plain[key], fused[key], rtol=1e-5, atol=1e-6), key
    for g1, g2 in zip(plain_grads, fused_grads, strict=True):
        assert torch.allclose(g1, g2, rtol=1e-4, atol=1e-6)


def test_discriminator_accuracy_term():
    assert discriminator_accuracy("lsgan", torch.ones(4), torch.zeros(4)).item() == 1.0
    assert discriminator_accuracy("lsgan", torch.zeros(4), torch.ones(4)).item() == 0.0
