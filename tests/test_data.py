"""Tests of the data layer: shapes, folder datasets, transforms, unpaired sampling and image I/O."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from gantrans.data import (
    DATASETS,
    IMAGE_EXTENSIONS,
    DomainDataset,
    UnpairedDataset,
    UnpairedSampler,
    build_domains,
    list_images,
    open_image,
    pil_to_tensor,
    tensor_to_pil,
)
from gantrans.data.folder import FolderDomain
from gantrans.data.shapes import ShapesDomain
from gantrans.data.transforms import derive_seed, random_crop, random_flip

from .conftest import raises_one_line

SHAPES = {"name": "shapes", "image_size": 32, "train_size": 64, "test_size": 16, "seed": 0}


def shapes(split: str = "train", channels: int = 3, **overrides) -> tuple[ShapesDomain, ...]:
    return build_domains({**SHAPES, **overrides}, split, channels)


def recorded(fn):
    """Run fn() and return (result, list of warning messages)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
    return result, [str(w.message) for w in caught]


# ----------------------------------------------------------------------------------- shapes


def test_shapes_registered_and_protocol() -> None:
    assert set(DATASETS) >= {"shapes", "folder"}
    a, b = shapes()
    assert isinstance(a, DomainDataset) and isinstance(b, DomainDataset)
    assert len(a) == len(b) == 64
    assert a.name(42) == "0042.png"
    test_a, _ = shapes("test")
    assert len(test_a) == 16


def test_shapes_deterministic_by_seed() -> None:
    a1, b1 = shapes(seed=3)
    a2, b2 = shapes(seed=3)
    a3, _ = shapes(seed=4)
    for i in (0, 5, 63):
        assert torch.equal(a1.load(i), a2.load(i))
        assert torch.equal(b1.load(i), b2.load(i))
        assert not torch.equal(a1.load(i), a3.load(i))
    # The generator argument is ignored (no augmentation for shapes).
    assert torch.equal(a1.load(7, torch.Generator().manual_seed(1)), a1.load(7))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [32, 24])
def test_shapes_shape_and_range(channels: int, size: int) -> None:
    a, b = shapes(channels=channels, image_size=size)
    for d in (a, b):
        for i in range(8):
            x = d.load(i)
            assert x.shape == (channels, size, size) and x.dtype == torch.float32
            assert x.min() >= -1.0 and x.max() <= 1.0
            assert x.max() - x.min() > 0.4  # a visible shape on the background


def test_shapes_params_inside_frame_and_contrasted() -> None:
    a, b = shapes(train_size=200)
    luma = np.array([0.299, 0.587, 0.114])
    for d in (a, b):
        for i in range(200):
            p = d.params(i)
            s, (cx, cy) = p["size"], p["center"]
            assert 0.15 * 32 <= s <= 0.5 * 32
            assert 1 <= cx - s / 2 and cx + s / 2 <= 31
            assert 1 <= cy - s / 2 and cy + s / 2 <= 31
            assert float(luma @ np.array(p["color"]) - luma @ np.array(p["background"])) > 0.25
            assert max(p["background"]) < 0.3  # dark background
    assert a.params(0)["shape"] == "circle" and b.params(0)["shape"] == "square"


def test_shapes_domains_unpaired_and_splits_differ() -> None:
    a, b = shapes()
    test_a, test_b = shapes("test")
    for i in range(16):
        assert a.params(i)["center"] != b.params(i)["center"]
        assert a.params(i)["color"] != b.params(i)["color"]
        assert a.params(i)["center"] != test_a.params(i)["center"]
        assert not torch.equal(b.load(i), test_b.load(i))


def test_shapes_circle_vs_square_and_counterpart() -> None:
    a, b = shapes()
    for d in (a, b):
        for i in range(16):
            p = d.params(i)
            s, (cx, cy) = p["size"], p["center"]
            image, other = d.load(i), d.counterpart(i)
            assert image.shape == other.shape and not torch.equal(image, other)
            circle = d.coverage(p, "circle")
            square = d.coverage(p, "square")
            # Corners of the bounding box: inside the square, outside the circle.
            for sx in (-1, 1):
                for sy in (-1, 1):
                    px, py = int(cx + sx * 0.4 * s), int(cy + sy * 0.4 * s)
                    assert square[py, px] - circle[py, px] > 0.3
            # Same colour at the centre, same background at the image corner.
            c = (int(cy), int(cx))
            assert torch.allclose(image[:, c[0], c[1]], other[:, c[0], c[1]])
            assert torch.allclose(image[:, 0, 0], other[:, 0, 0])
            expected = torch.tensor(p["color"], dtype=torch.float32) * 2 - 1
            assert torch.allclose(image[:, c[0], c[1]], expected, atol=1e-5)
            # The counterpart of domain A is what domain B would render, and vice versa.
            shape = "square" if d is a else "circle"
            assert torch.equal(other, d.render(p, shape))
            # The shape covers roughly its nominal area.
            area = ((image - image[:, :1, :1]).abs().sum(0) > 1e-4).sum().item()
            nominal = math.pi * s * s / 4 if d is a else s * s
            assert 0.7 * nominal < area < 1.6 * nominal + 4 * s


def test_shapes_grayscale_is_luminance() -> None:
    (rgb, _), (gray, _) = shapes(channels=3), shapes(channels=1)
    weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    for i in range(4):
        expected = ((rgb.load(i) * 0.5 + 0.5) * weights).sum(0, keepdim=True) * 2 - 1
        assert torch.allclose(gray.load(i), expected, atol=1e-5)


def test_shapes_render_many() -> None:
    # Speed sanity (no timing assertion): 2,000 renders must be quick enough to run here.
    a, b = shapes(train_size=1000)
    total = sum(float(a.load(i).sum() + b.load(i).sum()) for i in range(1000))
    assert math.isfinite(total)


def test_shapes_bad_config() -> None:
    raises_one_line(lambda: shapes(image_size=0), "dataset.image_size")
    raises_one_line(lambda: shapes(train_size="many"), "dataset.train_size")


def test_shapes_empty_test_split_falls_back() -> None:
    (a, _), messages = recorded(lambda: shapes("test", test_size=0))
    assert len(messages) == 1 and "test" in messages[0]
    assert len(a) == 64 and torch.equal(a.load(3), shapes()[0].load(3))


def test_unknown_dataset_name() -> None:
    raises_one_line(lambda: build_domains({"name": "nope"}, "train", 3), "nope", "shapes")


# ---------------------------------------------------------------------------------- sampler


def test_sampler_length_and_determinism() -> None:
    s = UnpairedSampler(10, 4, seed=1)
    keys = list(s)
    assert len(s) == len(keys) == 10
    assert keys == list(UnpairedSampler(10, 4, seed=1))
    assert keys == list(UnpairedSampler(10, 4, seed=1, epoch=0))
    assert keys != list(UnpairedSampler(10, 4, seed=1, epoch=1))
    assert keys != list(UnpairedSampler(10, 4, seed=2))
    for ia, ib, seed in keys:
        assert all(isinstance(v, int) for v in (ia, ib, seed))
        assert 0 <= ia < 10 and 0 <= ib < 4 and 0 <= seed < 2**63
    assert len({k[2] for k in keys}) == 10
    # Iterating twice gives the same epoch.
    assert list(s) == keys


@pytest.mark.parametrize(("len_a", "len_b"), [(10, 4), (4, 10), (7, 7)])
def test_sampler_walks_larger_domain_once(len_a: int, len_b: int) -> None:
    for epoch in range(3):
        keys = list(UnpairedSampler(len_a, len_b, seed=0, epoch=epoch))
        assert len(keys) == max(len_a, len_b)
        larger = [k[0] for k in keys] if len_a >= len_b else [k[1] for k in keys]
        assert sorted(larger) == list(range(max(len_a, len_b)))
        smaller = [k[1] for k in keys] if len_a >= len_b else [k[0] for k in keys]
        assert all(0 <= i < min(len_a, len_b) for i in smaller)


def test_sampler_smaller_domain_drawn_at_random() -> None:
    keys = list(UnpairedSampler(400, 5, seed=0))
    counts = np.bincount([k[1] for k in keys], minlength=5)
    assert counts.min() > 40  # every image used, roughly uniformly
    pairs = {(k[0] % 5, k[1]) for k in keys}
    assert len(pairs) == 25  # unaligned: no fixed pairing


def test_sampler_start_is_tail() -> None:
    full = list(UnpairedSampler(9, 13, seed=5, epoch=2))
    for start in (0, 1, 6, 13):
        s = UnpairedSampler(9, 13, seed=5, epoch=2, start=start)
        assert len(s) == 13 - start
        assert list(s) == full[start:]
    s = UnpairedSampler(9, 13, seed=5)
    s.set_epoch(2, start=4)
    assert (s.epoch, s.start, len(s)) == (2, 4, 9) and list(s) == full[4:]
    s.set_epoch(3)
    assert len(s) == 13 and list(s) == list(UnpairedSampler(9, 13, seed=5, epoch=3))
    with pytest.raises(ValueError):
        s.set_epoch(0, start=14)


def test_sampler_serial() -> None:
    keys = list(UnpairedSampler(5, 3, seed=0, serial=True))
    assert [(a, b) for a, b, _ in keys] == [(i % 5, i % 3) for i in range(5)]
    tail = list(UnpairedSampler(5, 3, seed=0, serial=True, start=2))
    assert tail == keys[2:]


# ------------------------------------------------------------------------------ folder data


def write_image(path: Path, mode: str, size: tuple[int, int], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "L":
        img = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8))
    elif mode == "RGBA":
        img = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8))
    else:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        if mode == "P":
            img = img.quantize(16)
            img.info["transparency"] = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """trainA: 4 images of mixed modes/sizes/formats; trainB: 3 images."""
    base = tmp_path / "ds"
    write_image(base / "trainA" / "a0.png", "RGB", (40, 30), 1)
    write_image(base / "trainA" / "a1.jpg", "L", (50, 50), 2)
    write_image(base / "trainA" / "a2.PNG", "RGBA", (36, 44), 3)
    write_image(base / "trainA" / "a3.png", "P", (32, 32), 4)
    write_image(base / "trainB" / "b0.png", "RGB", (64, 48), 5)
    write_image(base / "trainB" / "b1.jpeg", "RGB", (30, 40), 6)
    write_image(base / "trainB" / "b2.bmp", "L", (33, 35), 7)
    return base


def folder_cfg(root: Path, **overrides) -> dict:
    return {"name": "folder", "root": str(root), "load_size": 36, "crop_size": 32, **overrides}


def test_folder_lists_sorted_images(root: Path) -> None:
    a, b = build_domains(folder_cfg(root), "train", 3)
    assert isinstance(a, FolderDomain) and isinstance(a, DomainDataset)
    assert [a.name(i) for i in range(len(a))] == ["a0.png", "a1.jpg", "a2.PNG", "a3.png"]
    assert [b.name(i) for i in range(len(b))] == ["b0.png", "b1.jpeg", "b2.bmp"]
    assert [p.name for p in list_images(root / "trainA")] == [a.name(i) for i in range(4)]
    assert ".webp" in IMAGE_EXTENSIONS and ".jpg" in IMAGE_EXTENSIONS


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("preprocess", ["resize_and_crop", "scale_width_and_crop", "crop"])
def test_folder_output_shapes(root: Path, channels: int, preprocess: str) -> None:
    a, b = build_domains(folder_cfg(root, preprocess=preprocess), "train", channels)
    for d in (a, b):
        for i in range(len(d)):
            for gen in (torch.Generator().manual_seed(i), None):
                x = d.load(i, gen)
                assert x.shape == (channels, 32, 32) and x.dtype == torch.float32
                assert x.min() >= -1.0 and x.max() <= 1.0


def test_folder_preprocess_none_multiple_of_4(root: Path) -> None:
    a, b = build_domains(folder_cfg(root, preprocess="none"), "train", 3)
    assert b.load(2).shape == (3, 36, 32)  # 33x35 -> 32 wide, 36 high
    assert a.load(0, torch.Generator().manual_seed(0)).shape == (3, 32, 40)


def test_folder_augmentation_deterministic_under_generator(root: Path) -> None:
    a, _ = build_domains(folder_cfg(root, load_size=48), "train", 3)
    outs = [a.load(0, torch.Generator().manual_seed(s)) for s in range(12)]
    again = [a.load(0, torch.Generator().manual_seed(s)) for s in range(12)]
    assert all(torch.equal(x, y) for x, y in zip(outs, again, strict=True))
    assert len({x.numpy().tobytes() for x in outs}) > 6  # offsets/flips vary with the seed


def test_folder_flip(root: Path) -> None:
    a, _ = build_domains(folder_cfg(root, preprocess="none"), "train", 3)
    plain = a.load(0)
    outs = [a.load(0, torch.Generator().manual_seed(s)) for s in range(16)]
    flipped = [torch.equal(x, plain.flip(-1)) for x in outs]
    assert all(f or torch.equal(x, plain) for f, x in zip(flipped, outs, strict=True))
    assert 0 < sum(flipped) < 16
    a, _ = build_domains(folder_cfg(root, preprocess="none", flip=False), "train", 3)
    assert all(torch.equal(a.load(0, torch.Generator().manual_seed(s)), plain) for s in range(8))


def test_folder_test_transform_deterministic(root: Path) -> None:
    a, _ = build_domains(folder_cfg(root), "train", 3)
    assert torch.equal(a.load(1), a.load(1))
    expected = pil_to_tensor(open_image(root / "trainA" / "a0.png", 3).resize((32, 32), 3))
    assert torch.equal(a.load(0), expected)


def test_folder_transform_helpers_use_generator() -> None:
    img = Image.fromarray(np.arange(64 * 64, dtype=np.uint8).reshape(64, 64) % 251)
    crops = [random_crop(img, 16, torch.Generator().manual_seed(s)) for s in range(2)]
    assert crops[0].size == (16, 16)
    assert np.array_equal(
        np.asarray(random_crop(img, 16, torch.Generator().manual_seed(0))), np.asarray(crops[0])
    )
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(9)
    first = np.asarray(random_flip(img, g))
    torch.manual_seed(123)  # the global RNG has no influence
    g = torch.Generator().manual_seed(9)
    assert np.array_equal(np.asarray(random_flip(img, g)), first)
    assert derive_seed(1, 2) == derive_seed(1, 2) != derive_seed(2, 1)
    assert 0 <= derive_seed(-5, 2**70) < 2**63


def test_folder_max_items(root: Path) -> None:
    a, b = build_domains(folder_cfg(root, max_items=2), "train", 3)
    assert len(a) == len(b) == 2


def test_folder_errors_are_one_line(root: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    raises_one_line(
        lambda: build_domains(folder_cfg(missing), "train", 3),
        f"dataset.root={missing} does not exist",
        "trainA/ and trainB/",
    )
    raises_one_line(lambda: build_domains({"name": "folder"}, "train", 3), "dataset.root")
    raises_one_line(
        lambda: build_domains(folder_cfg(root, crop_size=300, load_size=286), "train", 3),
        "crop_size=300",
        "load_size=286",
    )
    raises_one_line(
        lambda: build_domains(folder_cfg(root, preprocess="zoom"), "train", 3), "preprocess"
    )
    for f in (root / "trainB").iterdir():
        f.unlink()
    raises_one_line(lambda: build_domains(folder_cfg(root), "train", 3), "trainB", "no image")
    (root / "trainB").rmdir()
    raises_one_line(lambda: build_domains(folder_cfg(root), "train", 3), "trainB/")


def test_folder_empty_domain(tmp_path: Path) -> None:
    (tmp_path / "trainA").mkdir()
    write_image(tmp_path / "trainB" / "b.png", "RGB", (32, 32))
    raises_one_line(
        lambda: build_domains(folder_cfg(tmp_path), "train", 3), "trainA", "no image files"
    )
    (tmp_path / "trainA" / "notes.txt").write_text("hello")
    recorded(
        lambda: raises_one_line(
            lambda: build_domains(folder_cfg(tmp_path), "train", 3), "trainA", "no readable image"
        )
    )


def test_folder_skips_bad_files_with_one_warning(root: Path) -> None:
    rng = np.random.default_rng(0)
    (root / "trainA" / "corrupt.png").write_bytes(rng.integers(0, 256, 500, np.uint8).tobytes())
    (root / "trainA" / "empty.jpg").write_bytes(b"")
    (root / "trainA" / "readme.txt").write_text("not an image")
    (root / "trainA" / ".hidden.png").write_bytes(b"")  # hidden: ignored silently
    (root / "trainA" / "sub").mkdir()  # folders: ignored silently
    (a, b), messages = recorded(lambda: build_domains(folder_cfg(root), "train", 3))
    assert len(messages) == 1, messages
    assert "skipped 3 file" in messages[0] and "\n" not in messages[0]
    for name in ("corrupt.png", "empty.jpg", "readme.txt"):
        assert name in messages[0]
    assert [a.name(i) for i in range(len(a))] == ["a0.png", "a1.jpg", "a2.PNG", "a3.png"]
    assert len(b) == 3


def test_folder_all_corrupt_domain(root: Path) -> None:
    for f in (root / "trainB").iterdir():
        f.write_bytes(b"garbage" * 10)
    recorded(
        lambda: raises_one_line(
            lambda: build_domains(folder_cfg(root), "train", 3), "trainB", "no readable image"
        )
    )


def test_folder_strict_raises_on_undecodable(root: Path) -> None:
    data = (root / "trainA" / "a0.png").read_bytes()
    (root / "trainA" / "a0.png").write_bytes(data[: len(data) // 2])  # truncated
    raises_one_line(
        lambda: build_domains(folder_cfg(root, strict=True), "train", 3),
        "cannot read image",
        "a0.png",
    )


def test_folder_undecodable_falls_back_to_next(root: Path) -> None:
    good = build_domains(folder_cfg(root), "train", 3)[0].load(1)
    data = (root / "trainA" / "a0.png").read_bytes()
    (root / "trainA" / "a0.png").write_bytes(data[: len(data) // 2])  # header fine, data truncated
    (a, _), messages = recorded(lambda: build_domains(folder_cfg(root), "train", 3))
    assert messages == [] and len(a) == 4
    x, messages = recorded(lambda: a.load(0))
    assert torch.equal(x, good)
    assert len(messages) == 1 and "a0.png" in messages[0]
    _, messages = recorded(lambda: a.load(0, torch.Generator().manual_seed(0)))
    assert messages == []  # warned once


def test_folder_test_split_and_fallback(root: Path) -> None:
    (a, b), messages = recorded(lambda: build_domains(folder_cfg(root), "test", 3))
    assert len(messages) == 1 and "testA/" in messages[0] and "testB/" in messages[0]
    assert len(a) == 4 and len(b) == 3
    write_image(root / "testA" / "t0.png", "RGB", (40, 40), 8)
    write_image(root / "testB" / "u0.png", "RGB", (40, 40), 9)
    write_image(root / "testB" / "u1.png", "RGB", (40, 40), 10)
    (a, b), messages = recorded(lambda: build_domains(folder_cfg(root), "test", 1))
    assert messages == [] and (len(a), len(b)) == (1, 2)
    assert a.load(0).shape == (1, 32, 32)


# ------------------------------------------------------------------------- unpaired dataset


def all_batches(dataset: UnpairedDataset, sampler: UnpairedSampler, workers: int) -> list:
    loader = DataLoader(dataset, batch_size=3, sampler=sampler, num_workers=workers)
    return list(loader)


def same_batches(x: list, y: list) -> bool:
    return len(x) == len(y) and all(
        torch.equal(p[k], q[k])
        for p, q in zip(x, y, strict=True)
        for k in ("A", "B", "A_index", "B_index")
    )


def test_unpaired_item(root: Path) -> None:
    a, b = build_domains(folder_cfg(root), "train", 3)
    ds = UnpairedDataset(a, b)
    assert len(ds) == 4
    item = ds[(2, 1, 12345)]
    assert set(item) == {"A", "B", "A_index", "B_index"}
    assert (item["A_index"], item["B_index"]) == (2, 1)
    assert item["A"].shape == item["B"].shape == (3, 32, 32)
    assert torch.equal(item["A"], a.load(2, torch.Generator().manual_seed(12345)))
    assert torch.equal(ds[(2, 1, 12345)]["B"], item["B"])
    # A and B draw from different generators: the same image gets different crops.
    same = UnpairedDataset(a, a)
    assert any(not torch.equal(same[(0, 0, s)]["A"], same[(0, 0, s)]["B"]) for s in range(4))
    plain = UnpairedDataset(a, b, augment=False)[(2, 1, 12345)]
    assert torch.equal(plain["A"], a.load(2)) and torch.equal(plain["B"], b.load(1))


def test_unpaired_loader_workers_bit_identical(root: Path) -> None:
    a, b = build_domains(folder_cfg(root, max_items=None), "train", 3)
    # Repeat the files so that the epoch has several batches.
    a = FolderDomain(a.files * 3, preprocess="resize_and_crop", load_size=36, crop_size=32)
    ds = UnpairedDataset(a, b)
    serial = all_batches(ds, UnpairedSampler(len(a), len(b), seed=7, epoch=1), 0)
    parallel = all_batches(ds, UnpairedSampler(len(a), len(b), seed=7, epoch=1), 2)
    assert len(serial) == 4 and same_batches(serial, parallel)
    # Resuming mid-epoch at a batch boundary gives the tail of the uninterrupted run.
    resumed = all_batches(ds, UnpairedSampler(len(a), len(b), seed=7, epoch=1, start=6), 2)
    assert same_batches(resumed, serial[2:])
    other = all_batches(ds, UnpairedSampler(len(a), len(b), seed=7, epoch=2), 0)
    assert not same_batches(other, serial)


def test_unpaired_loader_shapes_workers(tmp_path: Path) -> None:
    a, b = shapes(train_size=12)
    ds = UnpairedDataset(a, b)
    x = all_batches(ds, UnpairedSampler(len(a), len(b), seed=0), 0)
    y = all_batches(ds, UnpairedSampler(len(a), len(b), seed=0), 2)
    assert same_batches(x, y) and x[0]["A"].shape == (3, 3, 32, 32)


# ---------------------------------------------------------------------------------- imageio


def test_pil_tensor_roundtrip() -> None:
    rng = np.random.default_rng(0)
    for arr in (rng.integers(0, 256, (5, 7), np.uint8), rng.integers(0, 256, (5, 7, 3), np.uint8)):
        img = Image.fromarray(arr)
        t = pil_to_tensor(img)
        assert t.shape == ((1,) if arr.ndim == 2 else (3,)) + (5, 7)
        assert t.min() >= -1 and t.max() <= 1 and t.dtype == torch.float32
        back = tensor_to_pil(t)
        assert back.mode == img.mode and np.array_equal(np.asarray(back), arr)
    assert np.asarray(tensor_to_pil(torch.full((3, 2, 2), 5.0))).min() == 255  # clamped
    assert tensor_to_pil(torch.zeros(1, 3, 4, 4)).size == (4, 4)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P"])
def test_open_image_modes(tmp_path: Path, mode: str) -> None:
    path = write_image(tmp_path / f"x_{mode}.png", mode, (9, 6))
    assert open_image(path, 1).mode == "L" and open_image(path, 3).mode == "RGB"
    assert open_image(path, 3).size == (9, 6)


def test_open_image_bad_files(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.jpg").write_bytes(b"\x00\x01junk" * 20)
    for name in ("empty.png", "junk.jpg", "missing.png"):
        raises_one_line(lambda n=name: open_image(tmp_path / n, 3), "cannot read image", name)
