"""Tests of the named datasets: SMILEsmileD, CelebA, the CycleGAN sets, and affine augmentation.

The SMILEsmileD tests on the real files run when GANTRANS_DATA (or ./data) holds SMILEsmileD/;
everything else runs on small fixtures written to tmp_path in the real layouts and formats.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from PIL import Image
from torch.utils.data import DataLoader

from gantrans.config import check_train_config, register_configs, to_plain
from gantrans.data import (
    CYCLEGAN_SETS,
    DATASETS,
    UnpairedDataset,
    UnpairedSampler,
    build_domains,
    data_root,
)
from gantrans.data.celeba import CelebADomain, celeba_instructions
from gantrans.data.folder import FolderDomain
from gantrans.data.smiles import DOMAIN_DIRS, BalancedDomain, is_test_file, split_files
from gantrans.data.transforms import AffineAugment, affine_from_config

from .conftest import raises_one_line

SMILE_AUG = {"rotate": 30, "translate": 0.15, "shear": 10, "zoom": 0.25, "brightness": [0.8, 1.2]}
CELEBA_ATTRS = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes "
    "No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling "
    "Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace "
    "Wearing_Necktie Young"
).split()


def face(seed: int, size: tuple[int, int], mode: str = "L") -> Image.Image:
    """A smooth random image (JPEG-friendly) of ``size`` = (width, height)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3 if mode == "RGB" else 1), dtype=np.uint8)
    img = Image.fromarray(small.squeeze(-1) if mode == "L" else small, mode=mode)
    return img.resize(size, Image.Resampling.BICUBIC)


def names(domain) -> list[str]:
    return [domain.name(i) for i in range(len(domain))]


# ------------------------------------------------------------------------ SMILEsmileD fixture


@pytest.fixture
def smiles_root(tmp_path: Path) -> Path:
    """SMILEsmileD's layout with 40 non-smiling and 16 smiling 64x64 grayscale JPEGs."""
    root = tmp_path / "SMILEsmileD"
    for domain, count in (("A", 40), ("B", 16)):
        folder = root / DOMAIN_DIRS[domain]
        folder.mkdir(parents=True)
        for i in range(count):
            face(i + (1000 if domain == "B" else 0), (64, 64)).save(folder / f"{i * 7 + 1}.jpg")
    (root / "SMILEs" / "negatives" / "smiles_01_neg.idx").write_text("index\n")
    return root


def smiles(root: Path, split: str = "train", channels: int = 1, **overrides):
    cfg = {"name": "smiles", "root": str(root), "test_fraction": 0.25, **SMILE_AUG, **overrides}
    return build_domains(cfg, split, channels)


def test_new_datasets_registered() -> None:
    assert {"smiles", "celeba", *CYCLEGAN_SETS} <= set(DATASETS)
    assert len(CYCLEGAN_SETS) == 10 and "apple2orange" in CYCLEGAN_SETS


def test_hash_split_is_stable_and_about_the_fraction() -> None:
    many = [f"{i}.jpg" for i in range(20000)]
    share = sum(is_test_file(n) for n in many) / len(many)
    assert 0.09 < share < 0.11
    digest = hashlib.sha256(b"10007.jpg").digest()  # the rule, spelt out
    assert is_test_file("10007.jpg", 0.3) == (int.from_bytes(digest[:8], "big") < 0.3 * 2**64)
    # adding files never moves an existing one; a larger fraction only adds test files
    files = [Path(n) for n in many[:500]]
    test = set(split_files(files, "test", 0.1))
    assert test == set(split_files(files + [Path(n) for n in many[500:900]], "test", 0.1)) & test
    assert test <= set(split_files(files, "test", 0.2))
    assert not is_test_file("x.jpg", 0.0)


def test_smiles_splits_disjoint_and_complete(smiles_root: Path) -> None:
    a, b = smiles(smiles_root)
    ta, tb = smiles(smiles_root, "test")
    for train, test, count in ((a, ta, 40), (b, tb, 16)):
        assert len(train) + len(test) == count and len(test) > 0
        assert not set(names(train)) & set(names(test))
        assert all(is_test_file(n, 0.25) for n in names(test))
    again = smiles(smiles_root, "test")
    assert names(again[0]) == names(ta) and names(again[1]) == names(tb)


@pytest.mark.parametrize("channels", [1, 3])
def test_smiles_shapes_and_range(smiles_root: Path, channels: int) -> None:
    a, b = smiles(smiles_root, channels=channels)
    for x in (a.load(0), b.load(1, torch.Generator().manual_seed(3))):
        assert x.shape == (channels, 64, 64) and x.dtype == torch.float32
        assert x.min() >= -1.0 and x.max() <= 1.0
    if channels == 3:  # gray replicated
        x = a.load(2)
        assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    small, _ = smiles(smiles_root, channels=channels, image_size=32)
    assert small.load(0).shape == (channels, 32, 32)


def test_smiles_augmentation_deterministic_and_visible(smiles_root: Path) -> None:
    a, _ = smiles(smiles_root)
    plain = a.load(3)
    assert torch.equal(plain, a.load(3))  # test-time transform: deterministic
    expected = Image.open(a.path(3)).convert("L")
    assert torch.equal(
        plain, torch.from_numpy(np.asarray(expected, dtype=np.float32) / 127.5 - 1)[None]
    )
    x = a.load(3, torch.Generator().manual_seed(11))
    assert torch.equal(x, a.load(3, torch.Generator().manual_seed(11)))
    assert not torch.equal(x, a.load(3, torch.Generator().manual_seed(12)))
    assert (x - plain).abs().mean() > 0.02  # the warp changes the image
    off, _ = smiles(smiles_root, augment=False)
    assert torch.equal(off.load(3, torch.Generator().manual_seed(11)), plain)


def test_smiles_balance(smiles_root: Path) -> None:
    a, b = smiles(smiles_root, balance=True)
    assert isinstance(a, BalancedDomain) and not isinstance(b, BalancedDomain)
    assert len(a) == len(b) < len(a.domain)
    n, m = len(a.domain), len(a)
    seen = set()
    for i in range(m):
        lo, hi = i * n / m, (i + 1) * n / m
        for seed in range(20):
            j = a.real_index(i, torch.Generator().manual_seed(seed))
            assert lo - 1 < j < hi and j == a.real_index(i, torch.Generator().manual_seed(seed))
            seen.add(j)
    assert seen == set(range(n))  # over epochs every image is used
    x = a.load(0, torch.Generator().manual_seed(5))
    assert torch.equal(x, a.load(0, torch.Generator().manual_seed(5))) and x.shape == (1, 64, 64)
    ta, _ = smiles(smiles_root, "test", balance=True)
    assert isinstance(ta, FolderDomain)  # balance applies to training only


def test_smiles_loader_workers_match(smiles_root: Path) -> None:
    a, b = smiles(smiles_root, balance=True)
    ds = UnpairedDataset(a, b)

    def batches(workers: int) -> list[torch.Tensor]:
        sampler = UnpairedSampler(len(a), len(b), seed=1)
        loader = DataLoader(ds, batch_size=4, sampler=sampler, num_workers=workers)
        return [torch.cat([batch["A"], batch["B"]]) for batch in loader]

    serial, parallel = batches(0), batches(1)
    assert len(serial) == 3 and all(
        torch.equal(x, y) for x, y in zip(serial, parallel, strict=True)
    )


def test_smiles_missing_data_is_one_line(tmp_path: Path, smiles_root: Path) -> None:
    raises_one_line(lambda: smiles(tmp_path / "nowhere"), "gantrans download smiles")
    for png in (smiles_root / DOMAIN_DIRS["B"]).iterdir():
        png.unlink()
    raises_one_line(lambda: smiles(smiles_root), "holds no image files")
    (smiles_root / DOMAIN_DIRS["B"]).rmdir()
    raises_one_line(lambda: smiles(smiles_root), "positives7 is missing", "original layout")


def test_smiles_default_root_follows_gantrans_data(
    monkeypatch: pytest.MonkeyPatch, smiles_root: Path
) -> None:
    monkeypatch.setenv("GANTRANS_DATA", str(smiles_root.parent))
    assert data_root() == smiles_root.parent
    a, _ = build_domains({"name": "smiles", "root": None}, "train", 1)
    assert str(a.path(0)).startswith(str(smiles_root))
    monkeypatch.delenv("GANTRANS_DATA")
    monkeypatch.chdir(smiles_root.parent)
    assert data_root() == Path("data")
    raises_one_line(
        lambda: build_domains({"name": "smiles"}, "train", 1),
        "data/SMILEsmileD",
        "gantrans download smiles",
    )


def test_smiles_skips_corrupt_files_with_one_warning(smiles_root: Path) -> None:
    (smiles_root / DOMAIN_DIRS["A"] / "bad.jpg").write_bytes(b"not a jpeg")
    (smiles_root / DOMAIN_DIRS["A"] / "empty.jpg").write_bytes(b"")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a, _ = smiles(smiles_root, test_fraction=0.0)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "skipped 2 file(s)" in messages[0]
    assert len(a) == 40


@pytest.mark.parametrize(
    "overrides,fragment",
    [
        ({"test_fraction": 1.5}, "dataset.test_fraction"),
        ({"brightness": [1.2, 0.8]}, "dataset.brightness"),
        ({"rotate": -1}, "dataset.rotate"),
        ({"zoom": 1.0}, "dataset.zoom"),
        ({"balance": "yes"}, "dataset.balance"),
        ({"image_size": 4}, "dataset.image_size"),
    ],
)
def test_smiles_bad_settings(smiles_root: Path, overrides: dict, fragment: str) -> None:
    raises_one_line(lambda: smiles(smiles_root, **overrides), fragment)


# ------------------------------------------------------------------- SMILEsmileD, real files

REAL = data_root() / "SMILEsmileD"
real_only = pytest.mark.skipif(
    not (REAL / "SMILEs").is_dir(),
    reason=f"SMILEsmileD not found in {REAL}: set GANTRANS_DATA to the folder that holds it "
    "(e.g. GANTRANS_DATA=../shared/datasets) to run the real-data tests",
)


@pytest.fixture(scope="module")
def real_smiles():
    cfg = {"name": "smiles", "root": str(REAL), **SMILE_AUG}
    return build_domains(cfg, "train", 1), build_domains(cfg, "test", 1)


@real_only
def test_real_smiles_counts_and_split(real_smiles) -> None:
    (a, b), (ta, tb) = real_smiles
    assert len(a) + len(ta) == 9475 and len(b) + len(tb) == 3690
    assert (len(ta), len(tb)) == (927, 344)  # the hash split is a fixed function of the names
    assert not set(names(a)) & set(names(ta)) and not set(names(b)) & set(names(tb))
    assert all(is_test_file(n) for n in names(ta)[:200])
    assert not any(is_test_file(n) for n in names(a)[:200])


@real_only
def test_real_smiles_images(real_smiles) -> None:
    (a, b), (ta, _) = real_smiles
    for x in (a.load(0), b.load(len(b) - 1), ta.load(5)):
        assert x.shape == (1, 64, 64) and x.min() >= -1.0 and x.max() <= 1.0
        assert x.std() > 0.05  # a face, not a blank
    rgb = build_domains({"name": "smiles", "root": str(REAL), "channels": 3}, "train", 3)[0]
    assert rgb.load(0).shape == (3, 64, 64)
    assert torch.equal(rgb.load(0)[0], a.load(0)[0])


@real_only
def test_real_smiles_augmentation(real_smiles) -> None:
    (a, _), _ = real_smiles
    plain = a.load(7)
    assert torch.equal(plain, a.load(7))
    x = a.load(7, torch.Generator().manual_seed(1))
    assert torch.equal(x, a.load(7, torch.Generator().manual_seed(1)))
    assert not torch.equal(x, a.load(7, torch.Generator().manual_seed(2)))
    assert (x - plain).abs().mean() > 0.02


# --------------------------------------------------------------------------- affine augment


def test_affine_from_config_and_draws() -> None:
    assert affine_from_config({}) is None
    assert affine_from_config({"rotate": 0, "brightness": None}) is None
    aug = affine_from_config(SMILE_AUG)
    assert aug == AffineAugment(30.0, 0.15, 10.0, 0.25, (0.8, 1.2)) and aug.active
    img = face(0, (40, 40), "RGB")
    g = torch.Generator().manual_seed(0)
    out = aug(img, g)
    assert out.size == img.size and out.mode == "RGB"
    # exactly 6 draws, whatever the parameters
    g2 = torch.Generator().manual_seed(0)
    AffineAugment(brightness=(0.9, 1.1))(img, g2)
    assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=g2))


def test_affine_brightness_only_scales(tmp_path: Path) -> None:
    img = Image.new("L", (16, 16), 100)
    out = AffineAugment(brightness=(1.2, 1.2))(img, torch.Generator())
    assert np.asarray(out).min() == 120 and np.asarray(out).max() == 120


def test_folder_affine_option(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for d in ("A", "B"):
        (root / f"train{d}").mkdir(parents=True)
        face(ord(d), (40, 40), "RGB").save(root / f"train{d}" / "x.png")
    cfg = {"name": "folder", "root": str(root), "load_size": 36, "crop_size": 32}
    plain, _ = build_domains(cfg, "train", 3)
    warped, _ = build_domains({**cfg, "rotate": 20, "zoom": 0.2}, "train", 3)
    assert plain.augment is None and warped.augment == AffineAugment(rotate=20.0, zoom=0.2)
    g = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    reference = FolderDomain(plain.files, preprocess="resize_and_crop", load_size=36, crop_size=32)
    assert torch.equal(plain.load(0, g()), reference.load(0, g()))  # default: unchanged
    x = warped.load(0, g())
    assert torch.equal(x, warped.load(0, g())) and not torch.equal(x, plain.load(0, g()))
    assert torch.equal(warped.load(0), plain.load(0))  # test time: no warp
    raises_one_line(lambda: build_domains({**cfg, "translate": 2}, "train", 3), "dataset.translate")


# ------------------------------------------------------------------------------ CelebA fixture


def write_celeba(root: Path, annotations_in_subfolders: bool = False) -> dict[str, dict]:
    """12 tiny CelebA faces (178x218: a white 178x178 centre, black bands above and below) with
    list_attr_celeba.txt and list_eval_partition.txt in the real formats."""
    images = root / "img_align_celeba"
    images.mkdir(parents=True)
    table = {}
    for i in range(1, 13):
        name = f"{i:06d}.jpg"
        img = Image.new("RGB", (178, 218), (0, 0, 0))
        img.paste((255, 255, 255), (0, 20, 178, 198))
        img.save(images / name, quality=95)
        values = [1 if (i * 7 + k) % 3 == 0 else -1 for k in range(40)]
        values[CELEBA_ATTRS.index("Smiling")] = 1 if i % 2 else -1
        values[CELEBA_ATTRS.index("Male")] = 1 if i % 3 == 0 else -1
        table[name] = {"values": values, "partition": 0 if i <= 8 else (1 if i <= 10 else 2)}
    attr_dir = root / "Anno" if annotations_in_subfolders else root
    part_dir = root / "Eval" if annotations_in_subfolders else root
    attr_dir.mkdir(exist_ok=True)
    part_dir.mkdir(exist_ok=True)
    rows = [f"{n} " + " ".join(f"{v:2d}" for v in t["values"]) for n, t in table.items()]
    (attr_dir / "list_attr_celeba.txt").write_text(
        f"{len(table)}\n" + " ".join(CELEBA_ATTRS) + " \n" + "\n".join(rows) + "\n"
    )
    (part_dir / "list_eval_partition.txt").write_text(
        "".join(f"{n} {t['partition']}\n" for n, t in table.items())
    )
    return table


def celeba(root: Path, split: str = "train", **overrides):
    return build_domains(
        {"name": "celeba", "root": str(root), "image_size": 32, **overrides}, split, 3
    )


def test_celeba_attribute_split_and_partitions(tmp_path: Path) -> None:
    root = tmp_path / "celeba"
    write_celeba(root)
    a, b = celeba(root)
    assert names(a) == ["000002.jpg", "000004.jpg", "000006.jpg", "000008.jpg"]  # not smiling
    assert names(b) == ["000001.jpg", "000003.jpg", "000005.jpg", "000007.jpg"]  # smiling
    ta, tb = celeba(root, "test")
    assert names(ta) == ["000012.jpg"] and names(tb) == ["000011.jpg"]
    male_a, male_b = celeba(root, attribute="Male")
    assert names(male_b) == ["000003.jpg", "000006.jpg"] and len(male_a) == 6
    for x in (a.load(0), b.load(1, torch.Generator().manual_seed(0))):
        assert x.shape == (3, 32, 32) and x.min() >= -1.0 and x.max() <= 1.0
    assert a.load(0).mean() > 0.9  # the centre crop keeps the white face, not the black bands


def test_celeba_decoder_uses_draft_and_crops_the_face(tmp_path: Path) -> None:
    root = tmp_path / "celeba"
    write_celeba(root)
    a64, _ = celeba(root, image_size=64)
    a128, _ = celeba(root, image_size=128)
    assert isinstance(a64, CelebADomain)
    assert a64.decode(a64.path(0)).size == (89, 89)  # decoded at half size by the JPEG decoder
    assert a128.decode(a128.path(0)).size == (178, 178)
    assert a128.load(0).shape == (3, 128, 128)
    assert celeba(root, image_size=48)[0].load(0, torch.Generator()).shape == (3, 48, 48)


def test_celeba_official_subfolders_and_missing_images(tmp_path: Path) -> None:
    root = tmp_path / "celeba"
    write_celeba(root, annotations_in_subfolders=True)
    (root / "img_align_celeba" / "000001.jpg").unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, b = celeba(root)
    assert "000001.jpg" not in names(b)
    assert len(caught) == 1 and "1 train image(s)" in str(caught[0].message)


def test_celeba_unknown_attribute(tmp_path: Path) -> None:
    root = tmp_path / "celeba"
    write_celeba(root)
    raises_one_line(lambda: celeba(root, attribute="smiling"), "did you mean Smiling", "40 in")
    raises_one_line(lambda: celeba(root, attribute="Freckles"), "valid names include", "Bald")


def test_celeba_missing_files_say_where_to_get_them(tmp_path: Path) -> None:
    root = tmp_path / "celeba"
    where = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
    raises_one_line(lambda: celeba(root), "CelebA is not in", where, "Align&Cropped Images")
    write_celeba(root)
    (root / "list_eval_partition.txt").unlink()
    message = raises_one_line(lambda: celeba(root), "list_eval_partition.txt missing", where)
    assert f"{root}/img_align_celeba/*.jpg" in message
    assert celeba_instructions(root) in message


def test_celeba_malformed_annotations(tmp_path: Path) -> None:
    root = tmp_path / "celeba"
    write_celeba(root)
    path = root / "list_attr_celeba.txt"
    path.write_text(path.read_text() + "000013.jpg 1 -1\n")
    raises_one_line(lambda: celeba(root), "line 15 is malformed")


# ------------------------------------------------------------------------------- CycleGAN sets


def test_missing_cyclegan_set_names_the_download_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GANTRANS_DATA", str(tmp_path))
    message = raises_one_line(
        lambda: build_domains({"name": "apple2orange", "root": None}, "train", 3),
        "dataset apple2orange is not in",
        "`gantrans download apple2orange`",
    )
    assert "root=" not in message
    elsewhere = tmp_path / "elsewhere" / "apple2orange"
    raises_one_line(
        lambda: build_domains({"name": "apple2orange", "root": str(elsewhere)}, "train", 3),
        f"`gantrans download apple2orange root={elsewhere.parent}`",
    )


# ---------------------------------------------------------------- every yaml composes and builds


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """GANTRANS_DATA with tiny copies of SMILEsmileD, CelebA and every CycleGAN set."""
    root = tmp_path / "datasets"
    for domain, count in (("A", 12), ("B", 6)):
        folder = root / "SMILEsmileD" / DOMAIN_DIRS[domain]
        folder.mkdir(parents=True)
        for i in [*range(count), 26]:  # 26.jpg is held out for testing by the hash split
            face(i, (64, 64)).save(folder / f"{i}.jpg")
    write_celeba(root / "celeba")
    for name in CYCLEGAN_SETS:
        for sub in ("trainA", "trainB", "testA", "testB"):
            (root / name / sub).mkdir(parents=True)
            face(len(sub), (24, 24), "RGB").save(root / name / sub / "0.jpg")
    monkeypatch.setenv("GANTRANS_DATA", str(root))
    return root


@pytest.mark.parametrize("dataset", ["smiles", "celeba", *CYCLEGAN_SETS])
def test_dataset_yaml_composes_and_builds(dataset: str, data_dir: Path) -> None:
    register_configs()
    with initialize_config_module("gantrans.configs", version_base="1.3"):
        cfg = compose("train", overrides=[f"dataset={dataset}"])
    check_train_config(cfg)
    plain = to_plain(cfg)["dataset"]
    assert plain["name"] == dataset and plain["root"].startswith(str(data_dir))
    channels = plain["channels"]
    size = {"smiles": 64, "celeba": 128}.get(dataset, 256)
    for split in ("train", "test"):
        a, b = build_domains(plain, split, channels)
        x = UnpairedDataset(a, b)[(0, 0, 123)]
        assert x["A"].shape == x["B"].shape == (channels, size, size)


def test_smiles_experiment_composes(data_dir: Path) -> None:
    register_configs()
    with initialize_config_module("gantrans.configs", version_base="1.3"):
        cfg = compose("train", overrides=["+experiment=smiles"])
    check_train_config(cfg)
    assert cfg.dataset.name == "smiles" and cfg.model.name == "resnet"
    assert cfg.dataset.channels == 1
