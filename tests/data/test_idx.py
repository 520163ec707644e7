"""The IDX reader (mnist:PATH, fashion-mnist:PATH) on files made here, and the real
Fashion-MNIST from Debian's dataset-fashion-mnist, which `make test` installs."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from modelprint.data import load_splits
from modelprint.data.sources import FASHION_MNIST_DIR, read_idx
from modelprint.errors import DataError


def _idx_bytes(arr: np.ndarray, type_code: int = 0x08) -> bytes:
    return b"\0\0" + bytes([type_code, arr.ndim]) + struct.pack(f">{arr.ndim}i", *arr.shape) + arr.tobytes()


def _write_set(root: Path, n_train=60, n_test=40, gz=True, seed=0, labels=None) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for part, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = np.arange(n, dtype=np.uint8) % 10 if labels is None else labels[:n]
        for kind, arr in (("images-idx3", images), ("labels-idx1", y)):
            name = f"{part}-{kind}-ubyte"
            data = _idx_bytes(arr)
            if gz:
                (root / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (root / name).write_bytes(data)
    return root


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_reads_as_mnist_and_fashion(tmp_path, gz):
    root = _write_set(tmp_path / "set", gz=gz)
    s = load_splits(f"mnist:{root}")
    assert len(s.owner) + len(s.attacker) == 60 and len(s.tune) + len(s.test) == 40
    assert s.owner.input_shape == (1, 28, 28) and s.owner.classes == tuple(str(i) for i in range(10))
    raw = read_idx(root / ("train-images-idx3-ubyte" + (".gz" if gz else "")), 3)
    assert raw.shape == (60, 28, 28)
    # Pixels are the file's bytes / 255, in the stored order within each split.
    all_x = torch.cat([s.owner.x, s.attacker.x]).flatten(1).mul(255).round().to(torch.uint8)
    assert {r.numpy().tobytes() for r in all_x} == {r.tobytes() for r in raw.reshape(60, -1)}
    fashion = load_splits(f"fashion-mnist:{root}:32")
    assert fashion.owner.input_shape == (1, 32, 32) and fashion.owner.classes[0] == "T-shirt/top"
    # 32 px pads two zero pixels on each side and keeps every pixel.
    assert torch.equal(fashion.owner.x[:, :, 2:30, 2:30], s.owner.x) and fashion.owner.x[:, :, :2].abs().sum() == 0
    assert load_splits(f"mnist:{root}:16").owner.input_shape == (1, 16, 16)


def _corrupt(root: Path, name: str, data: bytes) -> None:
    (root / f"{name}.gz").write_bytes(gzip.compress(data))


def test_idx_reader_refuses_malformed_files(tmp_path):
    cases = {
        "bad magic": b"\x01\x02\x08\x03" + b"\0" * 20,
        "float type": _idx_bytes(np.zeros((2, 28, 28), np.uint8), type_code=0x0D),
        "truncated": _idx_bytes(np.zeros((60, 28, 28), np.uint8))[:-5],
        "trailing": _idx_bytes(np.zeros((60, 28, 28), np.uint8)) + b"xx",
        "wrong dims": _idx_bytes(np.zeros((60, 784), np.uint8)),
        "small images": _idx_bytes(np.zeros((60, 20, 20), np.uint8)),
        "header only": b"\0\0\x08\x03\0\0",
    }
    for why, data in cases.items():
        root = _write_set(tmp_path / why.replace(" ", "-"))
        _corrupt(root, "train-images-idx3-ubyte", data)
        with pytest.raises(DataError) as e:
            load_splits(f"mnist:{root}")
        assert str(root) in str(e.value) and "\n" not in str(e.value), why


def test_idx_reader_refuses_labels_out_of_range_and_count_mismatch(tmp_path):
    root = _write_set(tmp_path / "labels", labels=np.full(60, 12, np.uint8))
    with pytest.raises(DataError, match="outside 0-9"):
        load_splits(f"mnist:{root}")
    root = _write_set(tmp_path / "count")
    _corrupt(root, "train-labels-idx1-ubyte", _idx_bytes(np.zeros(59, np.uint8)))
    with pytest.raises(DataError, match="60 train images but 59 labels"):
        load_splits(f"mnist:{root}")
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    _corrupt(root, "train-labels-idx1-ubyte", _idx_bytes(np.zeros(60, np.uint8)))
    with pytest.raises(DataError, match="no t10k-labels-idx1-ubyte"):
        load_splits(f"mnist:{root}")


def test_idx_reader_refuses_a_header_announcing_a_huge_body(tmp_path):
    root = _write_set(tmp_path / "huge")
    _corrupt(root, "train-images-idx3-ubyte", b"\0\0\x08\x03" + struct.pack(">3i", 10**6, 28, 28))
    with pytest.raises(DataError, match="over the"):
        load_splits(f"mnist:{root}")


@pytest.mark.parametrize(
    ("spec", "message"),
    [("mnist", "needs a local path"), ("mnist:/nonexistent", "folder not found"), ("fashion-mnist:4", "between 8")],
)
def test_idx_specs_give_one_clear_line(spec, message):
    with pytest.raises(DataError, match=message):
        load_splits(spec)


def test_missing_debian_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr("modelprint.data.sources.FASHION_MNIST_DIR", str(tmp_path / "absent"))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist.*fashion-mnist:PATH"):
        load_splits("fashion-mnist")


def test_train_subset_is_balanced_seeded_and_leaves_held_out_data_alone(tmp_path):
    root = _write_set(tmp_path / "sub", n_train=200, n_test=40)
    full, sub = load_splits(f"mnist:{root}"), load_splits(f"mnist:{root}", train_subset=50)
    assert len(sub.owner) == len(sub.attacker) == 50
    assert torch.bincount(sub.owner.y, minlength=10).tolist() == [5] * 10
    assert torch.equal(sub.test.x, full.test.x) and torch.equal(sub.tune.x, full.tune.x)
    assert torch.equal(load_splits(f"mnist:{root}", train_subset=50).owner.x, sub.owner.x)
    keys = {r.numpy().tobytes() for r in full.owner.x.flatten(1)}
    assert all(r.numpy().tobytes() in keys for r in sub.owner.x.flatten(1)), "a subset of the owner's half"
    with pytest.raises(DataError, match="train_subset"):
        load_splits(f"mnist:{root}", train_subset=-1)


def test_fashion_mnist_from_debian():
    # Not skipped when missing: `make test` installs dataset-fashion-mnist (scripts/system-deps.sh).
    assert Path(FASHION_MNIST_DIR).is_dir(), "run `bash scripts/system-deps.sh` to install dataset-fashion-mnist"
    s = load_splits("fashion-mnist")
    assert (len(s.owner), len(s.attacker), len(s.tune), len(s.test)) == (30000, 30000, 5000, 5000)
    assert s.owner.classes[9] == "Ankle boot" and s.owner.input_shape == (1, 28, 28)
    assert torch.bincount(s.owner.y, minlength=10).tolist() == [3000] * 10
    assert torch.bincount(s.test.y, minlength=10).tolist() == [500] * 10
    assert 0.25 < float(s.owner.x.mean()) < 0.35  # Fashion-MNIST's pixel mean is 0.286
