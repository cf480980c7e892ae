"""Shared fixtures: small datasets made on the spot, and the ringfeed CLI
(to compare digests with)."""

import os
import pathlib
import random
import shutil
import subprocess

import pytest

import ringfeed

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cli() -> str:
    """The `ringfeed` command of this checkout ($RINGFEED_CLI, or built
    with cargo into the workspace's target directory)."""
    if os.environ.get("RINGFEED_CLI"):
        return os.environ["RINGFEED_CLI"]
    subprocess.run(["cargo", "build", "-q", "--locked", "-p", "ringfeed-cli"], cwd=REPO, check=True)
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return str(target / "debug" / "ringfeed")


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> pathlib.Path:
    """An ImageFolder tree: 3 classes, 50 JPEGs of assorted sizes."""
    from PIL import Image

    root = tmp_path_factory.mktemp("photos")
    rng = random.Random(5)
    for i in range(50):
        cls = root / f"class{i % 3}"
        cls.mkdir(exist_ok=True)
        w, h = rng.randrange(40, 200), rng.randrange(40, 200)
        img = Image.new("RGB", (w, h))
        px = img.load()
        a, b, c = rng.randrange(256), rng.randrange(256), rng.randrange(256)
        for y in range(h):
            for x in range(w):
                px[x, y] = ((a + 3 * x) % 256, (b + 2 * y) % 256, (c + x * y) % 256)
        img.save(cls / f"{i:03}.jpg", quality=90)
    return root


@pytest.fixture(scope="session")
def image_pack(image_folder, tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("packs") / "images.rf"
    ringfeed.pack(image_folder, out)
    return out


def make_text_pack(dir: pathlib.Path, n: int = 100) -> pathlib.Path:
    """`n` text documents ("document NNNNN" + filler), packed."""
    src = dir / "texts"
    src.mkdir()
    for i in range(n):
        (src / f"doc{i:05}.txt").write_text(f"document {i:05} " + "x" * (i % 37))
    out = dir / "texts.rf"
    ringfeed.pack(src, out)
    return out


@pytest.fixture
def text_pack(tmp_path) -> pathlib.Path:
    """A fresh pack of 100 documents (tests may corrupt it)."""
    return make_text_pack(tmp_path)


def corrupt_record(pack: pathlib.Path, marker: bytes) -> None:
    """Flips one byte of the record whose payload contains `marker`."""
    for shard in sorted(pack.glob("*.rfp")):
        data = bytearray(shard.read_bytes())
        at = data.find(marker)
        if at >= 0:
            data[at + len(marker) - 1] ^= 0xFF
            shard.write_bytes(bytes(data))
            return
    raise AssertionError(f"{marker!r} not found in {pack}")


@pytest.fixture
def copy_pack(tmp_path):
    def copy(pack: pathlib.Path) -> pathlib.Path:
        dst = tmp_path / pack.name
        shutil.copytree(pack, dst)
        return dst
    return copy
