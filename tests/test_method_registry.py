"""The method registry: one place that names the methods, read by the config store, the checks,
the help text and the docs; and docs/adding-a-method.md followed to the letter trains a method."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gantrans import cli
from gantrans.config import compose_config, method_schema
from gantrans.methods import METHODS, method_class, registry
from gantrans.methods.base import Method
from gantrans.methods.options import MethodConfig

ROOT = Path(__file__).resolve().parents[1]
BUILT_IN = ["cyclegan", "cut", "fastcut", "pix2pix", "dcgan"]


def test_every_method_is_found_from_its_options_module():
    assert registry.names() == BUILT_IN  # in their `order`
    for name, schema in registry.schemas().items():
        assert issubclass(schema, MethodConfig) and schema.summary and schema.name == name
        assert issubclass(method_class(name), Method)
    assert list(METHODS) == BUILT_IN


def test_each_method_yaml_is_a_registered_method_and_back():
    yamls = {p.stem for p in (ROOT / "configs" / "method").glob("*.yaml")}
    assert yamls == set(registry.names())
    for name in registry.names():  # each YAML starts from the schema the registry stored
        cfg = compose_config("train", [f"method={name}"])
        assert method_schema(cfg) is registry.schema_of(name)


@pytest.mark.parametrize("name", BUILT_IN)
def test_a_plug_in_translates_what_its_options_say(name):
    """The directions are stated by the options (for the checks, before torch) and by the
    plug-in (with the network of each): they must agree."""
    from gantrans.config import compose_train_config
    from gantrans.methods.image_pool import ImagePool

    tiny = ["model.ngf=4", "discriminator.ndf=4"]
    if name != "dcgan":
        tiny += ["dataset.image_size=32"] if name != "pix2pix" else []
    cfg = compose_train_config([f"method={name}", *tiny])
    pools = {d: ImagePool(0) for d in method_class(name).pooled}
    method = method_class(name).build(cfg, int(cfg.dataset.channels), pools)
    assert tuple(method.directions) == registry.schema_of(name).directions


def test_an_unknown_name_is_one_line_listing_the_methods():
    with pytest.raises(Exception) as info:
        registry.schema_of("cylegan")
    assert str(info.value) == (
        "method=cylegan is not a training method: choose one of " + ", ".join(BUILT_IN)
    )


def test_the_help_lists_every_method_with_its_summary(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, schema in registry.schemas().items():
        assert re.search(rf"^  {name}\s+{re.escape(schema.summary)}$", out, re.M), name


def test_the_readme_and_methods_doc_name_every_method():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Methods", 1)[1].split("\n\n", 2)[1]
    assert re.findall(r"^\| `(\w+)`", table, re.M) == registry.names()
    commands = re.search(r"method=([\w|]+)\)", readme).group(1).split("|")
    assert commands == registry.names()
    doc = (ROOT / "docs" / "methods.md").read_text(encoding="utf-8")
    headings = " ".join(re.findall(r"^## .*$", doc, re.M))
    for name in registry.names():
        assert f"`method={name}`" in headings, name


# ---------------------------------------------------------------------------------------------
# docs/adding-a-method.md, followed in a copy of the package
# ---------------------------------------------------------------------------------------------
def doc_files(doc: Path) -> dict[str, str]:
    """{path: text} of each fenced block of `doc` whose first line is `# <path>`."""
    files = {}
    for block in re.findall(r"^```(?:python|yaml)\n(.*?)^```", doc.read_text(), re.M | re.S):
        first, _, rest = block.partition("\n")
        path = first.removeprefix("# ").strip()
        if "/" in path and " " not in path:
            files[path] = block
    return files


def test_the_guide_names_four_files():
    files = doc_files(ROOT / "docs" / "adding-a-method.md")
    assert sorted(files) == [
        "configs/method/selfreg.yaml",
        "src/gantrans/methods/selfreg.py",
        "src/gantrans/methods/selfreg_options.py",
        "tests/test_selfreg.py",
    ]


def test_a_method_added_as_the_guide_says_trains_and_translates(tmp_path):
    """Only the four files of the guide are added to a copy of the package; nothing else is
    edited, and the method composes, is listed, trains, checkpoints and translates."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "src" / "gantrans", tmp_path / "src" / "gantrans", ignore=ignore)
    shutil.copytree(ROOT / "configs", tmp_path / "src" / "gantrans" / "configs", ignore=ignore)
    for path, text in doc_files(ROOT / "docs" / "adding-a-method.md").items():
        if path.startswith("configs/"):
            path = "src/gantrans/" + path
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "src"), "OMP_NUM_THREADS": "1"}

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout

    where = run("-c", "import gantrans; print(gantrans.__file__)")
    assert where.strip() == str(tmp_path / "src" / "gantrans" / "__init__.py")
    assert "selfreg" in run("-m", "gantrans", "--help")
    out = run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_selfreg.py")
    assert "3 passed" in out, out
