import pickle

import numpy as np
import pytest
import torch

from modelprint.data import load_dataset, load_splits
from modelprint.errors import DataError


def _row_keys(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x.flatten(1)}


def test_digits_splits_are_disjoint_and_cover_everything(splits):
    owner, attacker, tune, test = splits.owner, splits.attacker, splits.tune, splits.test
    assert len(owner) + len(attacker) + len(tune) + len(test) == 1797
    # Digits has a few duplicate images; compare indices via the exact split sizes and content overlap.
    assert abs(len(owner) - len(attacker)) <= 10 and abs(len(tune) - len(test)) <= 10
    overlap = _row_keys(owner.x) & _row_keys(attacker.x)
    assert len(overlap) <= 3, "owner and attacker halves share images"
    assert len(_row_keys(tune.x) & _row_keys(test.x)) <= 3, "tune and test share images"
    assert splits.get("tune") is tune
    assert owner.x.min() >= 0 and owner.x.max() <= 1 and owner.input_shape == (1, 8, 8)


def test_splits_are_stratified_and_seeded():
    a, b, c = (
        load_splits("digits", split_seed=0),
        load_splits("digits", split_seed=0),
        load_splits("digits", split_seed=1),
    )
    assert torch.equal(a.owner.x, b.owner.x)
    assert not torch.equal(a.owner.y, c.owner.y) or not torch.equal(a.owner.x, c.owner.x)
    counts = torch.bincount(a.owner.y, minlength=10)
    assert counts.min() >= 0.8 * counts.max()


def test_upscaled_digits_have_the_requested_size():
    ds = load_dataset("digits:16", "owner")
    assert ds.input_shape == (1, 16, 16) and 0 <= float(ds.x.min()) and float(ds.x.max()) <= 1


@pytest.mark.parametrize("spec", ["mnist", "cifar10", "digits:x", "npz:/nonexistent.npz", "cifar10:/nonexistent"])
def test_bad_specs_raise_data_error(spec):
    with pytest.raises(DataError):
        load_splits(spec)


def _write_cifar(root, n=20, seed=0):
    rng = np.random.default_rng(seed)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
        batch[b"labels"] = [int(v) for v in batch[b"labels"]]
        with open(root / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f, protocol=2)


def test_cifar_reader_with_restricted_unpickler(tmp_path):
    _write_cifar(tmp_path)
    s = load_splits(f"cifar10:{tmp_path}")
    assert s.test.input_shape == (3, 32, 32) and len(s.test) + len(s.tune) == 20
    assert len(s.owner) + len(s.attacker) == 100
    assert s.owner.classes[3] == "c3"


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_cifar_reader_refuses_code(tmp_path):
    _write_cifar(tmp_path)
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump({b"data": _Exploit(), b"labels": []}, f, protocol=2)
    with pytest.raises(DataError, match="refusing"):
        load_splits(f"cifar10:{tmp_path}")


def test_npz_and_folder_readers(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 256, (40, 12, 12, 3), dtype=np.uint8), y=np.arange(40) % 4)
    s = load_splits(f"npz:{tmp_path / 'd.npz'}")
    assert s.owner.input_shape == (3, 12, 12) and s.owner.num_classes == 4

    from PIL import Image

    for c in ("cat", "dog"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(tmp_path / "imgs" / c / f"{i}.png")
    f = load_splits(f"folder:{tmp_path / 'imgs'}")
    assert f.owner.input_shape == (3, 32, 32) and f.owner.classes == ("cat", "dog")


def test_npz_with_its_own_train_and_test_cut(tmp_path):
    """The layout docs/data.md shows: x_train, y_train, x_test, y_test; one-channel float images."""
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.random((40, 10, 10), dtype=np.float32),
        "y_train": np.arange(40) % 4,
        "x_test": rng.random((12, 10, 10), dtype=np.float32),
        "y_test": np.arange(12) % 4,
    }
    np.savez_compressed(tmp_path / "mine.npz", **arrays)
    s = load_splits(f"npz:{tmp_path / 'mine.npz'}")
    assert s.owner.input_shape == (1, 10, 10) and len(s.owner) + len(s.attacker) == 40
    assert len(s.tune) + len(s.test) == 12 and s.owner.classes == ("0", "1", "2", "3")
    arrays["x_train"] = arrays["x_train"] * 255  # floats outside [0, 1]: refused, not rescaled
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=r"must lie in \[0, 1\]"):
        load_splits(f"npz:{tmp_path / 'bad.npz'}")


def test_npz_with_object_arrays_is_refused(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    # An .npz whose member needs pickling to load.
    np.savez(tmp_path / "bad.npz", x=np.array([{"a": 1}], dtype=object), y=np.array([0]))
    with pytest.raises(DataError):
        load_splits(f"npz:{tmp_path / 'bad.npz'}")


def test_tune_fraction_zero_keeps_the_whole_held_out_set():
    a, b = load_splits("digits", tune_fraction=0.0), load_splits("digits")
    assert len(a.tune) == 0 and len(a.test) == len(b.test) + len(b.tune)
    with pytest.raises(DataError):
        load_splits("digits", tune_fraction=1.0)
