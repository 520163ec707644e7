"""Readers for each dataset kind. Each returns x, y, classes, x_test, y_test (test may be None).

Images come back as float32 tensors (N, C, H, W) in [0, 1]; nothing here runs code
from a user's file.
"""

from __future__ import annotations

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
