"""Datasets as tensors in [0, 1], with seeded, disjoint owner / attacker / test splits.

A dataset spec is a string: ``digits`` (sklearn's bundled 8x8 digits, the embedded
default), ``digits:16`` / ``digits:32`` (upscaled so CIFAR-style networks fit),
``cifar10:PATH``, ``cifar100:PATH`` (the python-pickle batch format, read with a
restricted unpickler), ``folder:PATH`` (one sub-folder per class, Pillow) and
``npz:PATH`` (arrays ``x``/``y`` or ``x_train``/``y_train``/``x_test``/``y_test``),
``fashion-mnist[:SIZE]`` (Debian's ``dataset-fashion-mnist``, 28 px; SIZE pads or resizes)
and ``fashion-mnist:PATH[:SIZE]`` / ``mnist:PATH[:SIZE]`` (the four standard IDX files in
any folder, gzipped or not).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import DataError
from .sources import load_cifar, load_digits, load_folder, load_idx, load_npz

SPLITS = ("owner", "attacker", "all", "tune", "test")


@dataclass(frozen=True)
class Dataset:
    """Images ``x`` (N, C, H, W) float32 in [0, 1] and labels ``y`` (N,) int64."""

    x: torch.Tensor
    y: torch.Tensor
    classes: tuple[str, ...]
    spec: str
    split: str = "all"

    def __post_init__(self) -> None:
        if self.x.ndim != 4 or self.y.ndim != 1 or len(self.x) != len(self.y):
            raise DataError(
                f"{self.spec}: expected x (N,C,H,W) and y (N,), got {tuple(self.x.shape)} and {tuple(self.y.shape)}"
            )

    def __len__(self) -> int:
        return len(self.y)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, index: torch.Tensor, split: str) -> Dataset:
        return Dataset(self.x[index], self.y[index], self.classes, self.spec, split)

    def balanced(self, limit: int, seed: int) -> Dataset:
        """At most ``limit`` images (0 = all), the same share of every class, chosen by ``seed``."""
        if not limit or limit >= len(self):
            return self
        return self.subset(_balanced_subset(self.y, limit, seed), self.split)


@dataclass(frozen=True)
class DatasetSplits:
    """The training pool cut in two disjoint halves (owner, attacker); the held-out set cut
    into ``tune`` (the data an attacker fine-tunes with, as in FingerBench) and ``test``."""

    owner: Dataset
    attacker: Dataset
    tune: Dataset
    test: Dataset

    def get(self, split: str) -> Dataset:
        if split == "owner":
            return self.owner
        if split == "attacker":
            return self.attacker
        if split == "test":
            return self.test
        if split == "tune":
            return self.tune
        if split == "all":
            o, a = self.owner, self.attacker
            return Dataset(torch.cat([o.x, a.x]), torch.cat([o.y, a.y]), o.classes, o.spec, "all")
        raise DataError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")


def _stratified_halves(y: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class, a seeded permutation cut in half, so both halves keep the class balance."""
    g = torch.Generator().manual_seed(seed)
    first, second = [], []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        first.append(idx[: len(idx) // 2])
        second.append(idx[len(idx) // 2 :])
    return torch.sort(torch.cat(first)).values, torch.sort(torch.cat(second)).values


def _stratified_test(y: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 7919)
    train, test = [], []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_test = max(1, round(len(idx) * fraction))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(test)).values


KINDS = ("digits", "fashion-mnist", "mnist", "cifar10", "cifar100", "folder", "npz")


def _balanced_subset(y: torch.Tensor, limit: int, seed: int) -> torch.Tensor:
    """At most ``limit`` indices, the same share of every class, chosen by a seeded permutation."""
    if not limit or limit >= len(y):
        return torch.arange(len(y))
    g = torch.Generator().manual_seed(seed + 104729)
    classes = torch.unique(y).tolist()
    keep = []
    for c in classes:
        idx = torch.nonzero(y == c).flatten()
        share = round(limit * len(idx) / len(y))
        keep.append(idx[torch.randperm(len(idx), generator=g)[:share]])
    return torch.sort(torch.cat(keep)).values


def parse_spec(spec: str) -> tuple[str, str]:
    kind, _, arg = spec.partition(":")
    if kind not in KINDS:
        raise DataError(
            f"unknown dataset {spec!r}; use digits[:16|:32], fashion-mnist[:32], fashion-mnist:PATH, mnist:PATH, "
            "cifar10:PATH, cifar100:PATH, folder:PATH or npz:PATH"
        )
    if kind not in ("digits", "fashion-mnist") and not arg:
        raise DataError(f"dataset {kind!r} needs a local path: {kind}:PATH")
    return kind, arg


def load_splits(
    spec: str = "digits",
    *,
    split_seed: int = 0,
    test_fraction: float = 0.2,
    tune_fraction: float = 0.5,
    train_subset: int = 0,
) -> DatasetSplits:
    """Load a dataset and cut it into owner / attacker halves, a tune set and a test set.

    FingerBench's protocol: the training data is halved class by class (owner, attacker),
    and the held-out data (the data set's own test set, else ``test_fraction`` of the
    images) is cut into ``tune`` (``tune_fraction`` of it: the attacker's fine-tuning
    data) and ``test``. ``split_seed`` fixes every cut; every model of one study should
    use the same one so that the split names mean the same images for all of them.
    ``train_subset`` (0 = all) keeps at most that many images of each half, class-balanced
    and seeded: a cheaper zoo on a large data set, with tune and test untouched.
    """
    if train_subset < 0:
        raise DataError(f"train_subset must be >= 0 (0 = every image), got {train_subset}")
    if not 0.0 <= tune_fraction < 1.0 or not 0.0 < test_fraction < 1.0:
        raise DataError("test_fraction must be in (0, 1) and tune_fraction in [0, 1)")
    kind, arg = parse_spec(spec)
    if kind == "digits":
        x, y, classes, x_test, y_test = load_digits(arg)
    elif kind in ("cifar10", "cifar100"):
        x, y, classes, x_test, y_test = load_cifar(arg, kind)
    elif kind == "folder":
        x, y, classes, x_test, y_test = load_folder(arg)
    elif kind in ("fashion-mnist", "mnist"):
        x, y, classes, x_test, y_test = load_idx(kind, arg)
    else:
        x, y, classes, x_test, y_test = load_npz(arg)
    if x_test is None:
        train_idx, test_idx = _stratified_test(y, test_fraction, split_seed)
        x, y, x_test, y_test = x[train_idx], y[train_idx], x[test_idx], y[test_idx]
    full = Dataset(x, y, tuple(classes), spec)
    owner_idx, attacker_idx = _stratified_halves(y, split_seed)
    owner_idx = owner_idx[_balanced_subset(y[owner_idx], train_subset, split_seed)]
    attacker_idx = attacker_idx[_balanced_subset(y[attacker_idx], train_subset, split_seed + 1)]
    held_out = Dataset(x_test, y_test, tuple(classes), spec, "test")
    test_idx, tune_idx = _stratified_test(y_test, tune_fraction, split_seed + 1) if tune_fraction else (None, None)
    return DatasetSplits(
        owner=full.subset(owner_idx, "owner"),
        attacker=full.subset(attacker_idx, "attacker"),
        tune=held_out.subset(tune_idx, "tune") if tune_idx is not None else held_out.subset(torch.arange(0), "tune"),
        test=held_out.subset(test_idx, "test") if test_idx is not None else held_out,
    )


def load_dataset(spec: str = "digits", split: str = "all", *, split_seed: int = 0, train_subset: int = 0) -> Dataset:
    return load_splits(spec, split_seed=split_seed, train_subset=train_subset).get(split)


__all__ = ["Dataset", "DatasetSplits", "SPLITS", "load_dataset", "load_splits", "parse_spec"]
