"""`gantrans translate`: any size, grayscale/RGB/RGBA, names kept, bad input is one clear line."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gantrans.applying.loader import load_generator

from .conftest import make_checkpoint, one_line_error, write_image


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    write_image(folder / "odd.png", (37, 23), "RGB", seed=1)
    write_image(folder / "gray.png", (20, 30), "L", seed=2)
    write_image(folder / "alpha.png", (33, 33), "RGBA", seed=3)
    write_image(folder / "photo.jpg", (37, 23), "RGB", seed=4)
    write_image(folder / "tiny.bmp", (3, 5), "RGB", seed=5)
    write_image(folder / "same1.webp", (16, 16), "RGB", seed=6)
    write_image(folder / "same2.png", (16, 16), "RGB", seed=7)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_translates_every_image_keeping_names_sizes_and_alpha(
    gantrans, mixed_folder, tiny_ckpt, tmp_path
):
    out = tmp_path / "out"
    code, stdout, err = gantrans(
        "translate",
        f"ckpt={tiny_ckpt}",
        f"input_dir={mixed_folder}",
        f"output_dir={out}",
        "batch_size=2",
        "progress=false",
    )
    assert code == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "alpha.png",
        "gray.png",
        "odd.png",
        "photo.jpg",
        "same1.webp",
        "same2.png",
        "tiny.bmp",
    ]
    for name in names:
        with Image.open(mixed_folder / name) as src, Image.open(out / name) as dst:
            assert dst.size == src.size, name
    with Image.open(out / "alpha.png") as img, Image.open(mixed_folder / "alpha.png") as src:
        assert img.mode == "RGBA"
        assert img.getchannel("A").tobytes() == src.getchannel("A").tobytes()
    with Image.open(out / "gray.png") as img:
        assert img.mode == "RGB"  # a 3-channel model gives colour output
    assert "translated 7 image(s) AtoB" in stdout


def test_output_matches_the_network_on_an_odd_size(mixed_folder, tiny_ckpt, tmp_path, gantrans):
    out = tmp_path / "out"
    assert (
        gantrans(
            "translate",
            f"ckpt={tiny_ckpt}",
            f"input_dir={mixed_folder}",
            f"output_dir={out}",
            "direction=BtoA",
            "progress=false",
        )[0]
        == 0
    )
    net, _ = load_generator(tiny_ckpt, "BtoA", torch.device("cpu"))
    with Image.open(mixed_folder / "odd.png") as img:
        x = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1).float() / 127.5 - 1
    padded = torch.nn.functional.pad(x[None], (0, 3, 0, 1), mode="reflect")  # 37x23 -> 40x24
    with torch.no_grad():
        expected = ((net(padded)[0, :, :23, :37].clamp(-1, 1) + 1) * 127.5).round()
    with Image.open(out / "odd.png") as img:
        got = torch.from_numpy(np.array(img)).permute(2, 0, 1).float()
    assert (got - expected).abs().max() <= 1


def test_grayscale_model_on_rgb_and_rgba_input(gantrans, mixed_folder, tmp_path):
    ckpt = make_checkpoint(tmp_path / "gray.pt", channels=1)
    out = tmp_path / "out"
    assert (
        gantrans(
            "translate",
            f"ckpt={ckpt}",
            f"input_dir={mixed_folder}",
            f"output_dir={out}",
            "progress=false",
        )[0]
        == 0
    )
    with Image.open(out / "odd.png") as img:
        assert img.mode == "L" and img.size == (37, 23)
    with Image.open(out / "alpha.png") as img:
        assert img.mode == "LA"


def test_unet_checkpoint_pads_to_its_multiple(gantrans, tmp_path):
    ckpt = make_checkpoint(tmp_path / "unet.pt", name="unet")  # needs multiples of 32
    folder = tmp_path / "in"
    write_image(folder / "x.png", (45, 21), "RGB")
    out = tmp_path / "out"
    assert (
        gantrans(
            "translate",
            f"ckpt={ckpt}",
            f"input_dir={folder}",
            f"output_dir={out}",
            "progress=false",
        )[0]
        == 0
    )
    with Image.open(out / "x.png") as img:
        assert img.size == (45, 21)


def test_unreadable_image_is_reported_and_the_rest_translated(
    gantrans, mixed_folder, tiny_ckpt, tmp_path
):
    (mixed_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (mixed_folder / "empty.jpg").write_bytes(b"")
    out = tmp_path / "out"
    line = one_line_error(
        gantrans(
            "translate",
            f"ckpt={tiny_ckpt}",
            f"input_dir={mixed_folder}",
            f"output_dir={out}",
            "progress=false",
        )
    )
    assert "2 file(s) could not be read" in line and "broken.png" in line and "empty.jpg" in line
    assert len(list(out.iterdir())) == 7


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "empty"),
        (b"this is not a checkpoint", "truncated or not a PyTorch checkpoint"),
        ("truncated", "truncated or not a PyTorch checkpoint"),
        ("other_dict", "not a gantrans checkpoint"),
        ("pickle", "refusing to load"),
    ],
)
def test_bad_checkpoints_are_one_clear_line(
    gantrans, mixed_folder, tiny_ckpt, tmp_path, content, message
):
    bad = tmp_path / "bad.pt"
    if content == "truncated":
        data = tiny_ckpt.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif content == "other_dict":
        torch.save({"state_dict": {"w": torch.zeros(1)}}, bad)
    elif content == "pickle":

        class Evil:
            def __reduce__(self):
                return (Path.touch, (tmp_path / "pwned",))

        torch.save({"x": Evil()}, bad, pickle_module=pickle)
    else:
        bad.write_bytes(content)
    line = one_line_error(
        gantrans(
            "translate",
            f"ckpt={bad}",
            f"input_dir={mixed_folder}",
            f"output_dir={tmp_path / 'out'}",
            "progress=false",
        )
    )
    assert message in line
    assert not (tmp_path / "pwned").exists()


def test_missing_input_and_checkpoint(gantrans, tiny_ckpt, tmp_path):
    assert "is not a folder" in one_line_error(
        gantrans("translate", f"ckpt={tiny_ckpt}", f"input_dir={tmp_path / 'nope'}")
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no images" in one_line_error(
        gantrans("translate", f"ckpt={tiny_ckpt}", f"input_dir={empty}")
    )
    write_image(tmp_path / "images" / "a.png", (8, 8))
    assert "does not exist" in one_line_error(
        gantrans("translate", f"ckpt={tmp_path / 'x.pt'}", f"input_dir={tmp_path / 'images'}")
    )
    assert "ckpt" in one_line_error(gantrans("translate", f"input_dir={empty}"))


def test_fp16_on_the_cpu_is_refused_before_any_output(gantrans, tiny_ckpt, mixed_folder, tmp_path):
    out = tmp_path / "out"
    args = [f"ckpt={tiny_ckpt}", f"input_dir={mixed_folder}", f"output_dir={out}"]
    line = one_line_error(gantrans("translate", *args, "device=cpu", "precision=fp16"))
    assert line.endswith("on the CPU use precision=bf16") and not out.exists()


def test_exif_rotated_photo_is_translated_upright(gantrans, tiny_ckpt, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name, orientation in (("plain.jpg", 1), ("rotated.jpg", 6)):
        img = Image.new("RGB", (30, 20), (200, 30, 30))
        exif = Image.Exif()
        exif[0x0112] = orientation  # 6 = shown rotated by 90 degrees
        img.save(folder / name, exif=exif)
    out = tmp_path / "out"
    code, _, err = gantrans("translate", f"ckpt={tiny_ckpt}", f"input_dir={folder}",
                            f"output_dir={out}", "batch_size=4", "progress=false")  # fmt: skip
    assert code == 0, err
    with Image.open(out / "plain.jpg") as a, Image.open(out / "rotated.jpg") as b:
        assert a.size == (30, 20) and b.size == (20, 30)


def test_one_file_in_one_file_out(gantrans, tiny_ckpt, tmp_path):
    src = write_image(tmp_path / "photo.jpg", (26, 18))
    out = tmp_path / "result.png"
    code, stdout, err = gantrans("translate", f"ckpt={tiny_ckpt}", f"input={src}", f"output={out}",
                                 "progress=false")  # fmt: skip
    assert code == 0, err
    with Image.open(out) as img:
        assert (img.format, img.size) == ("PNG", (26, 18))
    assert "translated 1 image(s) AtoB" in stdout
    line = one_line_error(gantrans("translate", f"ckpt={tiny_ckpt}", f"input={src}",
                                   f"output={tmp_path / 'x.mp4'}"))  # fmt: skip
    assert f"output={tmp_path / 'x.mp4'} is not image output for photo.jpg" in line
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    line = one_line_error(gantrans("translate", f"ckpt={tiny_ckpt}", f"input={broken}",
                                   f"output={tmp_path / 'b.png'}"))  # fmt: skip
    assert line.startswith(f"gantrans translate: error: cannot read image {broken}")
    assert not (tmp_path / "b.png").exists()
    line = one_line_error(
        gantrans("translate", f"ckpt={tiny_ckpt}", f"input={tmp_path / 'no.png'}")
    )
    assert "input=" in line and "does not exist" in line


@pytest.fixture
def abc_folder(tmp_path: Path) -> Path:
    for i, name in enumerate(("a.jpg", "b.jpg", "c.jpg")):
        write_image(tmp_path / "abc" / name, (20, 16), seed=i)
    return tmp_path / "abc"


def test_an_output_name_taken_by_a_folder_skips_that_file_only(
    gantrans, abc_folder, tiny_ckpt, tmp_path
):
    out = tmp_path / "out"
    (out / "b.jpg").mkdir(parents=True)
    code, stdout, err = gantrans(
        "translate", f"ckpt={tiny_ckpt}", f"input={abc_folder}", f"output={out}", "progress=false"
    )
    line = one_line_error((code, stdout, err))
    assert line == (
        "gantrans translate: error: 1 output(s) could not be written and were skipped: "
        "b.jpg (not written: a folder of that name is in the way)"
    )
    assert (out / "a.jpg").is_file() and (out / "c.jpg").is_file() and (out / "b.jpg").is_dir()
    assert f"cannot write {out / 'b.jpg'}" in stdout  # one log line for the file, as it happens


def test_a_failing_write_is_one_line_and_the_rest_are_translated(
    gantrans, abc_folder, tiny_ckpt, tmp_path, monkeypatch
):
    import gantrans.applying.translate as translate_module

    real = translate_module.save_picture

    def refuse_b(values, depth, alpha, path):
        if path.name == "b.jpg":
            raise PermissionError(13, "Permission denied")
        real(values, depth, alpha, path)

    monkeypatch.setattr(translate_module, "save_picture", refuse_b)
    out = tmp_path / "out"
    line = one_line_error(
        gantrans(
            "translate",
            f"ckpt={tiny_ckpt}",
            f"input={abc_folder}",
            f"output={out}",
            "progress=false",
        )
    )
    assert "1 output(s) could not be written" in line and "b.jpg (not written: Permission" in line
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "c.jpg"]


def test_read_and_write_failures_are_counted_apart(gantrans, abc_folder, tiny_ckpt, tmp_path):
    (abc_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    out = tmp_path / "out"
    (out / "c.jpg").mkdir(parents=True)
    line = one_line_error(
        gantrans(
            "translate",
            f"ckpt={tiny_ckpt}",
            f"input={abc_folder}",
            f"output={out}",
            "progress=false",
        )
    )
    assert "1 file(s) could not be read and 1 output(s) could not be written" in line
    assert (out / "a.jpg").is_file() and (out / "b.jpg").is_file()


@pytest.mark.parametrize("case", ["parent_is_a_file", "read_only"])
def test_an_output_that_cannot_take_anything_stops_before_translating(
    gantrans, abc_folder, tiny_ckpt, tmp_path, monkeypatch, case
):
    import gantrans.applying.translate as translate_module

    translated = []
    monkeypatch.setattr(
        translate_module, "translate_pictures", lambda *a, **k: translated.append(1) or (0, [])
    )
    if case == "parent_is_a_file":
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "out"
        reason = "Not a directory"
    else:
        out = tmp_path / "ro"
        out.mkdir()
        if os.geteuid() == 0:  # root writes anywhere: stand in for the refusal
            monkeypatch.setattr(
                translate_module.tempfile,
                "NamedTemporaryFile",
                lambda **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied")),
            )
        else:
            out.chmod(0o555)
        reason = "Permission denied"
    line = one_line_error(
        gantrans(
            "translate",
            f"ckpt={tiny_ckpt}",
            f"input={abc_folder}",
            f"output={out}",
            "progress=false",
        )
    )
    assert line == (
        f"gantrans translate: error: cannot write into {out} ({reason}): choose another output= "
        "or fix its permissions"
    )
    assert not translated


def test_one_file_onto_a_folder_of_its_name_stops_before_translating(
    gantrans, abc_folder, tiny_ckpt, tmp_path
):
    out = tmp_path / "out"
    (out / "b.jpg").mkdir(parents=True)
    line = one_line_error(
        gantrans(
            "translate", f"ckpt={tiny_ckpt}", f"input={abc_folder / 'b.jpg'}", f"output={out}/"
        )
    )
    assert line == (
        f"gantrans translate: error: cannot write {out / 'b.jpg'} (a folder of that name is in "
        "the way): choose another output="
    )


def _malformed(ckpt: dict, case: str) -> dict:
    gen = ckpt["arch"]["generator"]
    return {
        "arch_not_a_dict": {**ckpt, "arch": "resnet"},
        "generator_not_a_dict": {**ckpt, "arch": {**ckpt["arch"], "generator": 5}},
        "ngf_a_string": {**ckpt, "arch": {**ckpt["arch"], "generator": {**gen, "ngf": "a"}}},
        "unknown_name": {**ckpt, "arch": {**ckpt["arch"], "generator": {**gen, "name": "x"}}},
        "empty_generator": {**ckpt, "arch": {**ckpt["arch"], "generator": {}}},
        "models_a_list": {**ckpt, "models": [1]},
        "weights_a_string": {**ckpt, "models": {**ckpt["models"], "G_A": "x"}},
        "directions_a_list": {**ckpt, "directions": ["AtoB"]},
    }[case]


@pytest.mark.parametrize(
    "case",
    ["arch_not_a_dict", "generator_not_a_dict", "ngf_a_string", "unknown_name",
     "empty_generator", "models_a_list", "weights_a_string", "directions_a_list"],
)  # fmt: skip
def test_a_malformed_checkpoint_with_the_marker_is_one_short_line(
    gantrans, abc_folder, tiny_ckpt, tmp_path, case
):
    bad = tmp_path / "bad.pt"
    torch.save(_malformed(torch.load(tiny_ckpt, weights_only=True), case), bad)
    line = one_line_error(gantrans("translate", f"ckpt={bad}", f"input={abc_folder}"))
    assert line.startswith(f"gantrans translate: error: {bad}")
    assert len(line) - len(str(bad)) < 200, line


def test_random_bytes_and_unsafe_pickles_never_suggest_an_unsafe_load(
    gantrans, abc_folder, tmp_path
):
    rand = tmp_path / "random.pt"
    rand.write_bytes(torch.randint(0, 256, (5000,), generator=torch.Generator().manual_seed(1),
                                   dtype=torch.uint8).numpy().tobytes())  # fmt: skip
    line = one_line_error(gantrans("translate", f"ckpt={rand}", f"input={abc_folder}"))
    assert line == (
        f"gantrans translate: error: cannot read checkpoint {rand}: the file is truncated or not "
        "a PyTorch checkpoint (bad pickle data)"
    )

    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, evil, pickle_module=pickle)
    line = one_line_error(gantrans("translate", f"ckpt={evil}", f"input={abc_folder}"))
    assert line.startswith(f"gantrans translate: error: refusing to load {evil}: it holds Python")
    assert "weights_only" not in line and len(line) - len(str(evil)) < 200, line
    assert not (tmp_path / "pwned").exists()


def test_a_checkpoint_folder_points_at_its_own_latest(gantrans, abc_folder, tiny_ckpt, tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "latest.pt").write_bytes(tiny_ckpt.read_bytes())
    for given in (folder, folder.parent):
        line = one_line_error(gantrans("translate", f"ckpt={given}", f"input={abc_folder}"))
        assert line.endswith(f"such as {folder / 'latest.pt'}"), line


def test_a_tile_in_exponent_notation_is_a_side_not_an_error(
    gantrans, abc_folder, tiny_ckpt, tmp_path
):
    from gantrans.applying.translator import parse_tile

    assert parse_tile(1e9) == parse_tile("1000000000.0") == 1_000_000_000
    code, _, err = gantrans(
        "translate", f"ckpt={tiny_ckpt}", f"input={abc_folder}", f"output={tmp_path / 'o'}",
        "tile=1e9", "progress=false",
    )  # fmt: skip
    assert code == 0, err
    assert "tile=2.5 is not a tile size" in one_line_error(
        gantrans("translate", f"ckpt={tiny_ckpt}", f"input={abc_folder}", "tile=2.5")
    )


def test_a_missing_input_is_reported_before_the_checkpoint_is_loaded(
    gantrans, tmp_path, monkeypatch
):
    import gantrans.applying.translate as translate_module

    def no_load(*args, **kwargs):
        raise AssertionError("the checkpoint was loaded before the input was checked")

    monkeypatch.setattr(translate_module, "load_generator", no_load)
    line = one_line_error(
        gantrans("translate", "ckpt=pretrained:horse2zebra", f"input={tmp_path / 'nope'}")
    )
    assert "does not exist" in line
