"""CUT and FastCUT: the PatchNCE value, the encoder layers, the heads, and the generator phase."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from gantrans.applying.loader import load_generator
from gantrans.config import compose_train_config
from gantrans.methods.cut import CUTGenerator, PatchSampler, paper_nce_layers
from gantrans.methods.losses import patch_nce
from gantrans.models import UnetSkipConnectionBlock, build_generator
from gantrans.training.engine import build_training, train_step

from .conftest import one_line_error, write_image

CPU = torch.device("cpu")
TINY_CUT = [
    "method=cut",
    "method.head_units=16",
    "model.ngf=4",
    "model.n_blocks=1",
    "discriminator.ndf=4",
    "precision=fp32",
]


def unit(*shape: int, seed: int = 0) -> torch.Tensor:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    return F.normalize(x, dim=-1)


def direct_patch_nce(q: torch.Tensor, k: torch.Tensor, batch: int, t: float) -> torch.Tensor:
    """The paper's equation, written out patch by patch: the positive k_i against the other
    patches k_j (j != i) of the same image."""
    q, k = q.view(batch, -1, q.shape[1]), k.view(batch, -1, k.shape[1])
    losses = []
    for b in range(batch):
        for i in range(q.shape[1]):
            pos = math.exp(float(q[b, i] @ k[b, i]) / t)
            neg = sum(math.exp(float(q[b, i] @ k[b, j]) / t) for j in range(q.shape[1]) if j != i)
            losses.append(-math.log(pos / (pos + neg)))
    return torch.tensor(losses)


def test_patch_nce_matches_the_equation_on_known_features():
    q, k = unit(2 * 5, 8, seed=1), unit(2 * 5, 8, seed=2)
    got = patch_nce(q, k, batch_size=2, temperature=0.07)
    assert got.shape == (10,)
    torch.testing.assert_close(got, direct_patch_nce(q, k, 2, 0.07), rtol=1e-5, atol=1e-5)
    # a hand-made case: orthogonal patches, each query equal to its key
    eye = torch.eye(3)
    expected = -math.log(math.exp(1 / 0.5) / (math.exp(1 / 0.5) + 2 * math.exp(0)))
    torch.testing.assert_close(patch_nce(eye, eye, 1, 0.5), torch.full((3,), expected))


def test_identical_features_give_a_lower_loss_than_shuffled_ones():
    k = unit(2 * 16, 8, seed=3)
    same = patch_nce(k.clone(), k, 2, 0.07).mean()
    perm = torch.cat([torch.randperm(16, generator=torch.Generator().manual_seed(s)) + 16 * b
                      for b, s in ((0, 4), (1, 5))])  # fmt: skip
    shuffled = patch_nce(k[perm], k, 2, 0.07).mean()
    assert same < 0.1 < shuffled  # the right patch wins clearly; a shuffled one is lost


def test_negatives_come_from_the_same_image_only():
    q, k = unit(2 * 4, 6, seed=6), unit(2 * 4, 6, seed=7)
    before = patch_nce(q, k, 2, 0.07)
    k2 = k.clone()
    k2[4:] = unit(4, 6, seed=8)  # another second image
    after = patch_nce(q, k2, 2, 0.07)
    torch.testing.assert_close(after[:4], before[:4])  # the first image's losses do not move
    assert not torch.allclose(after[4:], before[4:])


def test_gradients_reach_the_queries_not_the_keys():
    q = unit(4, 5, seed=9).requires_grad_(True)
    k = unit(4, 5, seed=10).requires_grad_(True)
    patch_nce(q, k, 1).mean().backward()
    assert q.grad is not None and q.grad.abs().sum() > 0 and k.grad is None


def test_paper_layers_for_each_generator():
    resnet = {"name": "resnet", "n_blocks": 9}
    assert paper_nce_layers(resnet) == [0, 4, 7, 10, 14]  # the paper's 0,4,8,12,16
    assert paper_nce_layers({**resnet, "n_blocks": 6}) == [0, 4, 7, 10, 14]
    assert paper_nce_layers({**resnet, "n_blocks": 2}) == [0, 4, 7, 10, 11]
    assert paper_nce_layers({"name": "unet", "num_downs": 7}) == [0, 1, 2, 3, 4]


def test_resnet_encoder_features_are_the_layers_outputs():
    arch = {"name": "resnet", "in_channels": 3, "out_channels": 3, "ngf": 4, "norm": "instance",
            "dropout": False, "n_blocks": 6}  # fmt: skip
    net = build_generator(arch).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    layers = paper_nce_layers(arch)
    feats = net.encode(x, layers)
    expected, h = {}, x
    for i, layer in enumerate(net.model):
        h = layer(h.clone())
        expected[i] = h
    for i, f in zip(layers, feats, strict=True):
        torch.testing.assert_close(f, expected[i])
    assert net.encoder_channels(layers) == [f.shape[1] for f in feats] == [3, 8, 16, 16, 16]
    with pytest.raises(ValueError, match="0..15"):
        net.encode(x, [16])  # the first upsampling layer is not the encoder's


def test_unet_encoder_features_are_the_downsampling_outputs():
    arch = {"name": "unet", "in_channels": 1, "out_channels": 1, "ngf": 4, "norm": "batch",
            "dropout": False, "num_downs": 5}  # fmt: skip
    net = build_generator(arch).eval()
    seen = []
    for block in net.modules():
        if isinstance(block, UnetSkipConnectionBlock):
            conv = block.model[0 if block.outermost else 1]
            conv.register_forward_hook(lambda m, i, o: seen.append(o.clone()))
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    net(x)
    in_forward = seen.copy()  # (encode calls the same convolutions again)
    feats = net.encode(x, [0, 1, 2, 3, 4, 5])
    torch.testing.assert_close(feats[0], x)
    for got, want in zip(feats[1:], in_forward, strict=True):
        torch.testing.assert_close(got, want)
    assert net.encoder_channels([0, 1, 2, 5]) == [1, 4, 8, 32]


def test_heads_are_built_from_the_architecture_and_trained_from_step_0():
    st = build_training(compose_train_config(TINY_CUT), CPU)
    method = st.method
    assert set(method.networks()) == {"G", "D", "F"} and method.directions == {"AtoB": "G"}
    assert method.layers == [0, 4, 7, 10]
    widths = [mlp[0].in_features for mlp in method.F.mlps]
    assert widths == method.G.encoder_channels(method.layers) == [3, 8, 16, 16]
    assert all(mlp[2].out_features == 16 for mlp in method.F.mlps)
    trained = {id(p) for p in st.optimizers["G"].param_groups[0]["params"]}
    assert {id(p) for p in method.F.parameters()} <= trained
    ckpt = st.state_dict()
    assert set(ckpt["models"]) == {"G", "D", "F"} and ckpt["arch"]["heads"]["layers"] == [
        0,
        4,
        7,
        10,
    ]
    assert ckpt["method"] == "cut" and ckpt["directions"] == {"AtoB": "G"}
    head = method.F.mlps[0][0].weight.detach().clone()
    batch = {d: torch.rand(2, 3, 32, 32) * 2 - 1 for d in ("A", "B")}
    terms = train_step(st, batch)
    assert {"G", "G_GAN", "NCE", "NCE_Y", "D", "D_acc"} == set(terms)
    assert not torch.equal(head, method.F.mlps[0][0].weight)  # the first step moves the heads


def recompute_nce(gen: CUTGenerator, real_A: torch.Tensor, flip: bool, seed: int) -> torch.Tensor:
    """PatchNCE(G(A), A) from the definition: G on the (flipped) input, the translation's
    features flipped back, the same places for query and key."""
    torch.manual_seed(seed)
    fake = gen.G(real_A.flip(3) if flip else real_A)
    q = gen.G.encode(fake, gen.layers)
    q = [f.flip(3) for f in q] if flip else q
    k = gen.G.encode(real_A, gen.layers)
    k_pool, ids = gen.F(k, gen.num_patches)
    q_pool, _ = gen.F(q, gen.num_patches, ids)
    n = real_A.shape[0]
    per_layer = [
        patch_nce(a, b, n, gen.temperature).mean() for a, b in zip(q_pool, k_pool, strict=True)
    ]
    return sum(per_layer) / len(per_layer)


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("fuse", [False, True])
def test_generator_phase_computes_patch_nce_as_defined(flip, fuse):
    """Values and gradients: the keys' features, computed without a graph here, are detached in
    the paper's loss, so G and the heads must get the same gradients as from the definition."""
    torch.manual_seed(0)
    G = build_generator({"name": "resnet", "in_channels": 3, "out_channels": 3, "ngf": 4,
                         "norm": "instance", "dropout": False, "n_blocks": 1})  # fmt: skip
    layers = [0, 4, 7, 10]
    heads = PatchSampler(G.encoder_channels(layers), 8)
    gen = CUTGenerator(G, heads, layers, num_patches=32, temperature=0.07, nce_idt=False, fuse=fuse)
    real_A = torch.rand(2, 3, 32, 32) * 2 - 1
    params = [*G.parameters(), *heads.parameters()]
    torch.manual_seed(5)
    fake_B, idt_B, nce, nce_idt = gen(real_A, real_A, flip)
    assert idt_B is None and nce_idt is None
    torch.testing.assert_close(fake_B, G(real_A.flip(3) if flip else real_A))
    got = torch.autograd.grad(nce, params)
    expected = recompute_nce(gen, real_A, flip, 5)
    torch.testing.assert_close(nce, expected, rtol=1e-5, atol=1e-6)
    for g, e in zip(got, torch.autograd.grad(expected, params), strict=True):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-7)


def test_patches_are_shared_by_the_batch_and_capped_by_the_map():
    heads = PatchSampler([3], 4)
    feat = torch.rand(2, 3, 4, 4)
    out, ids = heads([feat], num_patches=256)
    assert ids[0].shape == (16,) and sorted(ids[0].tolist()) == list(range(16))
    assert out[0].shape == (2 * 16, 4)
    torch.testing.assert_close(out[0].norm(dim=1), torch.ones(32))


# ---- a CUT checkpoint downstream: translate, export, evaluate read what it holds -------------


def test_translate_and_export_a_cut_checkpoint_one_way(gantrans, cut_ckpt, tmp_path):
    folder = tmp_path / "in"
    write_image(folder / "a.png", (20, 12), "RGB")
    out = tmp_path / "out"
    code, stdout, err = gantrans("translate", f"ckpt={cut_ckpt}", f"input_dir={folder}",
                                 f"output_dir={out}", "progress=false")  # fmt: skip
    assert code == 0, err
    assert (out / "a.png").is_file() and "translated 1 image(s) AtoB" in stdout
    net, _ = load_generator(cut_ckpt, "AtoB", CPU)
    assert net(torch.zeros(1, 3, 8, 8)).shape == (1, 3, 8, 8)
    line = one_line_error(gantrans("translate", f"ckpt={cut_ckpt}", f"input_dir={folder}",
                                   "direction=BtoA", "progress=false"))  # fmt: skip
    assert "is a cut model, which translates AtoB only: use direction=AtoB" in line
    assert not (tmp_path / "translated").exists()
    model = tmp_path / "g.pt"
    code, _, err = gantrans("export", f"ckpt={cut_ckpt}", "format=torchscript",
                            f"output={model}", "progress=false")  # fmt: skip
    assert code == 0, err
    line = one_line_error(gantrans("export", f"ckpt={cut_ckpt}", "format=torchscript",
                                   "direction=BtoA", "progress=false"))  # fmt: skip
    assert "translates AtoB only" in line


def test_evaluate_a_cut_checkpoint_scores_its_direction(gantrans, cut_ckpt):
    fast = ["features=classifier", "judge_max_images=16", "judge_epochs=1", "c2st=false",
            "num_samples=2", "progress=false"]  # fmt: skip
    code, out, err = gantrans("evaluate", f"ckpt={cut_ckpt}", *fast)
    assert code == 0, err
    report = json.loads((cut_ckpt.parent.parent / "eval" / "evaluation.json").read_text())
    assert report["source"]["method"] == "cut"
    metrics = set(report["metrics"])
    assert {"fid_AtoB", "domain_acc_AtoB", "content_l1_AtoB", "truth_psnr_AtoB"} <= metrics
    assert not any(m.endswith(("_BtoA", "_A", "_B")) for m in metrics)  # no reverse, no cycle
    assert (
        "cycle_psnr_A" in report["not_computed"] and "rec_domain_acc_AtoB" in report["not_computed"]
    )
    assert "AtoB: " in out and "BtoA: " not in out
    line = one_line_error(gantrans("evaluate", f"ckpt={cut_ckpt}", "direction=BtoA", *fast))
    assert "translates AtoB only" in line
