"""The natural photographs: Qt resource bundles (against Qt's own rcc), GCompris's photos, the fallback."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from vnrecon.data import photos
from vnrecon.errors import InputError

RCC = shutil.which("rcc") or next((str(p) for p in Path("/usr/lib/qt5/bin").glob("rcc")), None)


@pytest.mark.skipif(RCC is None, reason="Qt's rcc not installed (Debian qtbase5-dev-tools; .ci/run installs it as root)")
@pytest.mark.parametrize("compress", [True, False])
def test_qt_resource_bundle_made_by_rcc_reads_back_every_file(tmp_path, compress):
    rng = np.random.default_rng(0)
    files = {
        "a/photo.bin": rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(),  # incompressible: stored
        "a/b/text.txt": b"variational network " * 200,  # compressible: zlib
        "top.dat": b"x",
        "a/b/c/\u00e9t\u00e9.txt": "unicode name".encode(),
    }
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    entries = "".join(f"<file>{name}</file>" for name in files)
    (tmp_path / "bundle.qrc").write_text(f'<RCC><qresource prefix="/res">{entries}</qresource></RCC>', encoding="utf-8")
    options = [] if compress else ["-no-compress"]
    subprocess.run([RCC, "-binary", *options, "bundle.qrc", "-o", "bundle.rcc"], cwd=tmp_path, check=True)
    read = photos.read_qt_resources(tmp_path / "bundle.rcc")
    assert read == {f"/res/{name}": content for name, content in files.items()}


def test_a_file_that_is_not_a_bundle_is_an_input_error(tmp_path):
    (tmp_path / "x.rcc").write_bytes(b"PK\x03\x04 not qt")
    with pytest.raises(InputError, match="not a Qt resource bundle"):
        photos.read_qt_resources(tmp_path / "x.rcc")


@pytest.mark.skipif(
    not photos.GCOMPRIS_RCC.is_dir(), reason="Debian gcompris-qt-data not installed (.ci/run installs it as root)"
)
def test_gcompris_photographs_are_the_default_and_distinct():
    loaded = photos.gcompris_photos()
    assert len(loaded) == photos.GCOMPRIS_PHOTO_COUNT
    names = [name for name, _ in loaded]
    assert len(set(names)) == len(names) and all(name.startswith("gcompris:") for name in names)
    for _, image in loaded:
        assert image.ndim == 2 and min(image.shape) >= 350 and max(image.shape) >= 1024 and 0 <= image.min() < image.max() <= 1
    # distinct photographs, not resized copies: compare coarse thumbnails
    from skimage.transform import resize

    thumbs = np.stack([resize(image, (16, 16), anti_aliasing=True).ravel() for _, image in loaded])
    thumbs = (thumbs - thumbs.mean(1, keepdims=True)) / thumbs.std(1, keepdims=True)
    correlation = thumbs @ thumbs.T / thumbs.shape[1]
    np.fill_diagonal(correlation, 0)
    assert correlation.max() < 0.98
    assert [name for name, _ in photos.default_images()] == names
    assert "GCompris" in photos.default_image_source()


def test_without_gcompris_the_scikit_image_photographs_are_used(monkeypatch, tmp_path):
    monkeypatch.setattr(photos, "GCOMPRIS_RCC", tmp_path / "absent")
    names = [name for name, _ in photos.default_images()]
    assert names == [f"skimage:{name}" for name in photos.FALLBACK_IMAGES]
    assert "scikit-image" in photos.default_image_source()
    with pytest.raises(InputError, match="bundle missing"):
        photos.gcompris_photos(tmp_path)
