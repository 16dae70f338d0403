"""The natural photographs the synthetic k-space is made from (the paper used 200 BSDS photographs).

Three sources, in this order of preference:

1. ``images=FOLDER`` (``vnrecon simulate natural --images``): every PNG / JPEG /
   TIFF / BMP file of a folder, e.g. the BSDS500 images (``load_images``).
2. The default when it is installed: the photographs of **GCompris**, the
   educational suite, in Debian's ``gcompris-qt-data`` package (section
   main; ``apt-get install gcompris-qt-data``, 44 MB). Its activities ship
   ``GCOMPRIS_PHOTO_COUNT`` (= 121) distinct real photographs, 1024 to 1920
   pixels wide (the narrowest side 359 to 1080): wildlife close-ups, monuments and landscapes, farm and world
   animals, musicians, underwater scenes (``GCOMPRIS_PHOTOS`` lists where;
   drawings, paintings, cut-outs on black and space images are left out).
   Licences, per file in each activity's README: CC0-1.0, public domain,
   CC-BY-2.0/3.0 and CC-BY-SA-4.0 (the package as a whole: GPL-3+). They are
   read from the installed package at run time, never copied into vnrecon.
   GCompris keeps its images inside Qt resource bundles (``.rcc``), which
   ``read_qt_resources`` unpacks (Qt's documented binary layout, zlib
   compression).
3. The fallback: the ``FALLBACK_IMAGES`` photographs that ship inside
   scikit-image (no download): 10 photographs. Its microscopy, retina,
   astronomy and coin images are left out, as are text, charts, masks and
   phantoms.

Every image is converted to grey float64 (``rgb2gray``; an alpha channel is
composited on black, a grey+alpha pair keeps the grey channel, of a
multi-frame file the first frame is used); constant images are skipped.
Each image is named by its source (``skimage:NAME``, ``gcompris:ACTIVITY/FILE``
or the file name), which the synthetic files record per slice.
"""

from __future__ import annotations

import fnmatch
import functools
import io
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import InputError

#: scikit-image loaders of natural photographs shipped with the package (no download).
FALLBACK_IMAGES: tuple[str, ...] = (
    "astronaut",
    "camera",
    "coffee",
    "chelsea",
    "rocket",
    "brick",
    "grass",
    "gravel",
    "clock",
    "stereo_motorcycle",  # left view of the stereo pair
)
#: Where Debian's gcompris-qt-data installs the activities' resource bundles.
GCOMPRIS_RCC = Path("/usr/share/gcompris-qt/rcc")
#: Activity bundle -> pattern of its photographs (paths inside the bundle, below the activity).
GCOMPRIS_PHOTOS: dict[str, str] = {
    "erase": "resource/*.webp",  # 33 wildlife close-ups, 1920 x 1080
    "explore_monuments": "resource/*/*.webp",  # 49 monuments and landscapes, ~1024 x 768
    "explore_world_animals": "resource/animals/*.webp",  # 15
    "explore_farm_animals": "resource/animals/*.webp",  # 9 (the drawings are SVG)
    "explore_world_music": "resource/music/*.webp",  # 9 musicians and instruments
    "clickgame": "resource/sea*.webp",  # 6 underwater scenes (not the fish cut-outs)
}
GCOMPRIS_PHOTO_COUNT = 121
#: File name endings read from an ``images`` folder.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


# --------------------------------------------------------------------------- Qt resource bundles


def read_qt_resources(path: str | Path) -> dict[str, bytes]:
    """Every file of a Qt binary resource bundle (``rcc -binary`` output), keyed by its resource path.

    Layout (Qt's ``rcc`` format, versions 1-3, big-endian): the magic ``qres``,
    the format version and the offsets of the tree, data and names sections.
    A tree node is its name offset and flags, then for a directory its child
    count and first child index, for a file its locale and data offset (plus
    a modification time from version 2 on). A name is its UTF-16 length, a
    hash and the UTF-16BE text; a datum is its size and its bytes, which
    ``flags & 1`` marks as qCompress'ed (a 4-byte size, then zlib).
    Raises InputError if the file is not such a bundle or holds a compression
    this reader does not know (zstd, Qt 6).
    """
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 20 or data[:4] != b"qres":
        raise InputError(f"{path}: not a Qt resource bundle (no 'qres' magic)")
    version, tree, payload, names = struct.unpack(">IIII", data[4:20])
    if version not in (1, 2, 3):
        raise InputError(f"{path}: Qt resource format version {version} is not supported")
    node_size = 14 if version == 1 else 22

    def name_at(offset: int) -> str:
        start = names + offset
        (length,) = struct.unpack(">H", data[start : start + 2])
        return data[start + 6 : start + 6 + 2 * length].decode("utf-16-be")

    files: dict[str, bytes] = {}
    pending = [(0, "")]
    while pending:
        index, parent = pending.pop()
        node = tree + index * node_size
        name_offset, flags = struct.unpack(">IH", data[node : node + 6])
        where = f"{parent}/{name_at(name_offset)}" if index else ""
        if flags & 2:  # directory
            count, first = struct.unpack(">II", data[node + 6 : node + 14])
            pending += [(first + child, where) for child in range(count)]
            continue
        (offset,) = struct.unpack(">I", data[node + 10 : node + 14])
        start = payload + offset
        (size,) = struct.unpack(">I", data[start : start + 4])
        content = data[start + 4 : start + 4 + size]
        if flags & 4:
            raise InputError(f"{path}: {where} is zstd-compressed (Qt 6), which this reader does not decode")
        files[where] = zlib.decompress(content[4:]) if flags & 1 else content
    return files


# --------------------------------------------------------------------------- sources


def _to_grey(array: np.ndarray) -> np.ndarray | None:
    """Any image array -> 2-D float64 grey image, or None if it is not an image."""
    from skimage.color import rgb2gray, rgba2rgb
    from skimage.util import img_as_float

    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.float64)
    if array.ndim == 4:  # frames of colour images
        array = array[0]
    if array.ndim == 3 and array.shape[-1] not in (2, 3, 4):  # frames of grey images
        array = array[0]
    if array.dtype.kind not in "uif" or array.size == 0:
        return None
    array = img_as_float(array) if array.dtype.kind in "ui" else array.astype(np.float64)
    if array.ndim == 3:
        if array.shape[-1] == 4:
            array = rgba2rgb(array, background=(0, 0, 0))
        if array.shape[-1] == 2:
            array = array[..., 0]
        else:
            array = rgb2gray(array)
    if array.ndim != 2 or min(array.shape) < 2 or not np.isfinite(array).all():
        return None
    if float(np.ptp(array)) == 0.0:
        return None
    return np.ascontiguousarray(array, dtype=np.float64)


def default_images() -> list[tuple[str, np.ndarray]]:
    """(name, grey float image) of the default photographs: GCompris's when installed, else scikit-image's."""
    return list(_gcompris_photos(GCOMPRIS_RCC) if GCOMPRIS_RCC.is_dir() else _fallback_images())


def default_image_source() -> str:
    """Which photographs ``default_images`` returns, in words."""
    if GCOMPRIS_RCC.is_dir():
        return f"GCompris photographs ({GCOMPRIS_RCC})"
    return "scikit-image photographs (install Debian's gcompris-qt-data for 121 more)"


def gcompris_photos(folder: str | Path = GCOMPRIS_RCC) -> list[tuple[str, np.ndarray]]:
    """(``gcompris:ACTIVITY/FILE``, grey image) of the ``GCOMPRIS_PHOTOS`` in a folder of GCompris ``.rcc`` bundles."""
    return list(_gcompris_photos(Path(folder)))


@functools.lru_cache(maxsize=1)
def _gcompris_photos(folder: Path) -> tuple[tuple[str, np.ndarray], ...]:
    from PIL import Image

    loaded = []
    for activity, pattern in GCOMPRIS_PHOTOS.items():
        bundle = folder / f"{activity}.rcc"
        if not bundle.is_file():
            raise InputError(f"{bundle}: GCompris activity bundle missing (is gcompris-qt-data complete?)")
        prefix = f"/gcompris/src/activities/{activity}/"
        for where, content in sorted(read_qt_resources(bundle).items()):
            inside = where.removeprefix(prefix)
            if where.startswith(prefix) and fnmatch.fnmatchcase(inside, pattern):
                with Image.open(io.BytesIO(content)) as image:
                    grey = _to_grey(np.asarray(image.convert("RGB")))
                if grey is not None:
                    grey.setflags(write=False)  # cached: shared between calls
                    loaded.append((f"gcompris:{activity}/{Path(inside).name}", grey))
    if not loaded:
        raise InputError(f"{folder}: no GCompris photographs found")
    return tuple(loaded)


@functools.lru_cache(maxsize=1)
def _fallback_images() -> tuple[tuple[str, np.ndarray], ...]:
    import skimage.data

    loaded = []
    for name in FALLBACK_IMAGES:
        image = getattr(skimage.data, name)()
        if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
            image = image[0]
        grey = _to_grey(image)
        if grey is not None:
            grey.setflags(write=False)  # cached: shared between calls
            loaded.append((f"skimage:{name}", grey))
    if not loaded:
        raise InputError("none of scikit-image's sample images could be loaded")
    return tuple(loaded)


def load_images(folder: str | Path) -> list[tuple[str, np.ndarray]]:
    """(file name, grey float image) for every readable image file in ``folder``, sorted by name.

    Raises InputError if the folder does not exist or holds no readable, non-constant image.
    """
    import warnings

    from skimage import io

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: image folder not found")
    candidates = sorted(path for path in folder.iterdir() if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)
    loaded = []
    for path in candidates:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                array = io.imread(path)
        except Exception:  # any decoder failure: not a readable image
            continue
        grey = _to_grey(array)
        if grey is not None:
            loaded.append((path.name, grey))
    if not loaded:
        suffixes = "/".join(suffix.lstrip(".") for suffix in IMAGE_SUFFIXES)
        raise InputError(
            f"{folder}: no readable images ({len(candidates)} {suffixes} file(s), none a readable non-constant image)"
        )
    return loaded


