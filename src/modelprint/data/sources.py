"""Readers for each dataset kind. Each returns x, y, classes, x_test, y_test (test may be None).

Images come back as float32 tensors (N, C, H, W) in [0, 1]; nothing here runs code
from a user's file.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._io import check_readable
from ..errors import DataError

Arrays = tuple[torch.Tensor, torch.Tensor, list[str], torch.Tensor | None, torch.Tensor | None]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def load_digits(size: str) -> Arrays:
    from sklearn.datasets import load_digits as _sk_digits

    bunch = _sk_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    if size:
        try:
            px = int(size)
        except ValueError:
            raise DataError(f"digits size must be a number of pixels, got {size!r}") from None
        if not 8 <= px <= 256:
            raise DataError(f"digits size must be between 8 and 256 pixels, got {px}")
        if px != 8:
            x = F.interpolate(x, size=(px, px), mode="bilinear", align_corners=False).clamp(0, 1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    return x.contiguous(), y, [str(c) for c in range(10)], None, None


class _RestrictedUnpickler(pickle.Unpickler):
    """Accepts only what CIFAR batch files hold: dicts, lists, str/bytes and numpy arrays.

    Any other global (os.system, builtins.eval, ...) is refused, so a hostile file
    cannot run code.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        # Protocol-2 pickles made by Python 3 wrap raw bytes as _codecs.encode(str, "latin1").
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise DataError(f"refusing to load {module}.{name} from a dataset file")


def _read_batch(path: Path) -> dict:
    check_readable(path, "CIFAR batch file", DataError)
    try:
        with open(path, "rb") as f:
            obj = _RestrictedUnpickler(f, encoding="bytes").load()
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path} is not a CIFAR python batch file ({e.__class__.__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict in a CIFAR batch file")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _cifar_arrays(batch: dict, label_key: str, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    data, labels = batch.get("data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataError(f"{path}: missing 'data' or '{label_key}'")
    if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
        raise DataError(f"{path}: 'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
    y = np.asarray(labels, dtype=np.int64)
    if len(y) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(y)} labels")
    x = torch.from_numpy(data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
    return x, torch.from_numpy(y)


def load_cifar(root: str, kind: str) -> Arrays:
    base = Path(root)
    if not base.is_dir():
        raise DataError(f"{kind} folder not found: {base} (give the extracted python-version folder)")
    if kind == "cifar10":
        train_files = [base / f"data_batch_{i}" for i in range(1, 6)]
        test_file, meta_file, label_key, names_key = base / "test_batch", base / "batches.meta", "labels", "label_names"
    else:
        train_files = [base / "train"]
        test_file, meta_file, label_key, names_key = base / "test", base / "meta", "fine_labels", "fine_label_names"
    xs, ys = [], []
    for f in train_files:
        x, y = _cifar_arrays(_read_batch(f), label_key, f)
        xs.append(x)
        ys.append(y)
    x_test, y_test = _cifar_arrays(_read_batch(test_file), label_key, test_file)
    n_classes = 10 if kind == "cifar10" else 100
    classes = [str(i) for i in range(n_classes)]
    if meta_file.exists():
        names = _read_batch(meta_file).get(names_key)
        if isinstance(names, list) and len(names) == n_classes:
            classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return torch.cat(xs), torch.cat(ys), classes, x_test, y_test


def _images_in(folder: Path, size: int) -> tuple[list[torch.Tensor], list[int], list[str]]:
    from PIL import Image

    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if not classes:
        raise DataError(f"{folder}: expected one sub-folder per class")
    xs, ys = [], []
    for label, name in enumerate(classes):
        for f in sorted((folder / name).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as im:
                    im = im.convert("RGB").resize((size, size), Image.BILINEAR)
                    arr = np.asarray(im, dtype=np.float32) / 255.0
            except Exception as e:
                raise DataError(f"cannot read image {f}: {e}") from None
            xs.append(torch.from_numpy(arr).permute(2, 0, 1))
            ys.append(label)
    if not xs:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders")
    return xs, ys, classes


def load_folder(root: str, size: int = 32) -> Arrays:
    """``root/<class>/*.png``, or ``root/train/<class>`` and ``root/test/<class>``; resized to size px."""
    base = Path(root)
    if not base.is_dir():
        raise DataError(f"image folder not found: {base}")
    if (base / "train").is_dir() and (base / "test").is_dir():
        xs, ys, classes = _images_in(base / "train", size)
        xt, yt, test_classes = _images_in(base / "test", size)
        if test_classes != classes:
            raise DataError(f"{base}: train and test have different class folders")
        return (torch.stack(xs), torch.tensor(ys), classes, torch.stack(xt), torch.tensor(yt))
    xs, ys, classes = _images_in(base, size)
    return torch.stack(xs), torch.tensor(ys), classes, None, None


def _npz_images(arr: np.ndarray, key: str, path: Path) -> torch.Tensor:
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise DataError(f"{path}: '{key}' must be (N,H,W), (N,C,H,W) or (N,H,W,C), got {arr.shape}")
    if arr.shape[1] not in (1, 3) and arr.shape[3] in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)
    if arr.dtype == np.uint8:
        return torch.from_numpy(arr.astype(np.float32) / 255.0)
    arr = arr.astype(np.float32)
    if arr.min() < 0 or arr.max() > 1:
        raise DataError(f"{path}: float images in '{key}' must lie in [0, 1]")
    return torch.from_numpy(arr)


def load_npz(path_str: str) -> Arrays:
    path = check_readable(path_str, "npz dataset", DataError)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:
        raise DataError(f"{path} is not a readable .npz without pickled objects ({e})") from None
    if "x" in arrays and "y" in arrays:
        keys = ("x", "y", None, None)
    elif "x_train" in arrays and "y_train" in arrays:
        keys = ("x_train", "y_train", "x_test", "y_test")
    else:
        raise DataError(f"{path}: expected arrays x, y or x_train, y_train[, x_test, y_test]; has {sorted(arrays)}")
    x = _npz_images(arrays[keys[0]], keys[0], path)
    y = torch.from_numpy(arrays[keys[1]].astype(np.int64))
    x_test = y_test = None
    if keys[2] in arrays and keys[3] in arrays:
        x_test = _npz_images(arrays[keys[2]], keys[2], path)
        y_test = torch.from_numpy(arrays[keys[3]].astype(np.int64))
    n_classes = int(y.max()) + 1 if len(y) else 0
    return x, y, [str(i) for i in range(n_classes)], x_test, y_test


# --- IDX (the MNIST family's format) -------------------------------------------------------

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# 28x28 uint8 images: the largest official file (60,000 images) is 47 MB; anything far
# beyond is not an MNIST-style file and is refused before it is decompressed.
MAX_IDX_BYTES = 512 * 1024**2
MISSING_FASHION = (
    "Fashion-MNIST not found in {dir}: install it with `sudo apt-get install dataset-fashion-mnist` "
    "(Debian/Ubuntu; `make test` does this), or give the data set as fashion-mnist:PATH, a folder of the IDX files"
)


def _idx_file(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder}: no {stem} or {stem}.gz (the standard MNIST-style IDX file names)")


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """An IDX file (optionally gzipped) of unsigned bytes with ``ndim`` dimensions, as a numpy array.

    The format (LeCun's MNIST page): two zero bytes, a type code (0x08 = uint8), the number
    of dimensions, each dimension as a big-endian int32, then the data. Anything else (another
    type, a wrong dimension count, a truncated or over-long body) is refused with one line.
    """

    p = check_readable(path, "IDX file", DataError)
    try:
        with open(p, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
        opener = gzip.open if gzipped else open
        with opener(p, "rb") as f:
            header = f.read(4)
            if len(header) < 4 or header[:2] != b"\0\0":
                raise DataError(f"{p}: not an IDX file (bad magic number)")
            if header[2] != 0x08:
                raise DataError(f"{p}: IDX type code 0x{header[2]:02x}; only unsigned bytes (0x08) are read")
            if header[3] != ndim:
                raise DataError(f"{p}: IDX file with {header[3]} dimensions, expected {ndim}")
            dims_raw = f.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise DataError(f"{p}: truncated IDX header")
            dims = tuple(int.from_bytes(dims_raw[4 * i : 4 * i + 4], "big") for i in range(ndim))
            size = int(np.prod(dims, dtype=np.int64))
            if size > MAX_IDX_BYTES:
                raise DataError(f"{p}: IDX body of {size} bytes is over the {MAX_IDX_BYTES}-byte limit")
            body = f.read(size + 1)  # one byte more reveals trailing data
    except DataError:
        raise
    except (OSError, EOFError) as e:
        raise DataError(f"{p}: cannot read IDX data ({e.__class__.__name__}: {e})") from None
    if len(body) != size:
        what = "truncated" if len(body) < size else "longer than its header says"
        raise DataError(f"{p}: IDX body is {what} ({len(body)} bytes for dimensions {dims})")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _idx_pair(folder: Path, part: str) -> tuple[torch.Tensor, torch.Tensor]:
    images_path = _idx_file(folder, IDX_FILES[part][0])
    labels_path = _idx_file(folder, IDX_FILES[part][1])
    images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
    if len(images) != len(labels):
        raise DataError(f"{folder}: {len(images)} {part} images but {len(labels)} labels")
    if images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
    if len(labels) and labels.max() > 9:
        raise DataError(f"{labels_path}: label {int(labels.max())} outside 0-9")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def _resize(x: torch.Tensor, px: int) -> torch.Tensor:
    """28 px to ``px``: zero padding when it grows by an even number of pixels up to 8 (the
    LeNet convention for 32 px: every pixel unchanged), bilinear resizing otherwise."""
    size = x.shape[-1]
    if px == size:
        return x
    grow = px - size
    if 0 < grow <= 8 and grow % 2 == 0:
        return F.pad(x, (grow // 2,) * 4)
    return F.interpolate(x, size=(px, px), mode="bilinear", align_corners=False).clamp(0, 1)


def parse_idx_arg(kind: str, arg: str) -> tuple[Path, int]:
    """``fashion-mnist``, ``fashion-mnist:32``, ``mnist:PATH`` or ``fashion-mnist:PATH[:32]`` -> (folder, px)."""
    path, px = arg, 28
    head, sep, tail = arg.rpartition(":")
    if tail.isdigit():
        path, px = (head if sep else ""), int(tail)
    if not 8 <= px <= 256:
        raise DataError(f"{kind} size must be between 8 and 256 pixels, got {px}")
    if not path:
        if kind != "fashion-mnist":
            raise DataError(f"{kind} needs the folder of its IDX files: {kind}:PATH")
        path = FASHION_MNIST_DIR
    return Path(path), px


def load_idx(kind: str, arg: str) -> Arrays:
    folder, px = parse_idx_arg(kind, arg)
    if not folder.is_dir():
        if str(folder) == FASHION_MNIST_DIR:
            raise DataError(MISSING_FASHION.format(dir=folder))
        raise DataError(f"{kind} folder not found: {folder} (the folder holding the four IDX files)")
    x, y = _idx_pair(folder, "train")
    x_test, y_test = _idx_pair(folder, "test")
    classes = FASHION_CLASSES if kind == "fashion-mnist" else [str(c) for c in range(10)]
    return _resize(x, px).contiguous(), y, list(classes), _resize(x_test, px).contiguous(), y_test
