"""Every dataset loader on a tiny fixture written in its real on-disk format, and the DataLoader
path of batch iteration: seeded, the same for any number of workers, on the split's device."""
from __future__ import annotations

import hashlib
import itertools
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import TensorDataset
from torchvision.datasets import CIFAR10, CIFAR100, Flowers102

from prunerun.config import DatasetConfig
from prunerun.data import DataSplits, LazySplit, build_dataset, list_datasets, split_labels
from prunerun.data.cifar import STATS
from prunerun.data.device import DeviceImages
from prunerun.data.images import IMAGENET_MEAN, IMAGENET_STD
from prunerun.errors import UserError
from prunerun.train import batch_at, endless_batches, evaluate, iterate_batches

RNG = np.random.default_rng(0)


def config(name: str, root: Path, **options) -> DatasetConfig:
    return DatasetConfig(name=name, root=str(root), **options)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, tuple[str, float]]:
    """Every file under ``folder`` with its checksum and modification time."""
    return {str(p.relative_to(folder)): (md5(p), p.stat().st_mtime) for p in sorted(folder.rglob("*")) if p.is_file()}


def write_jpeg(path: Path, size: tuple[int, int] = (40, 30), gray: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0]) if gray else (size[1], size[0], 3)
    Image.fromarray(RNG.integers(0, 256, shape, dtype=np.uint8)).save(path, "JPEG")


def batches_of(data, seed: int, batch_size: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(iterate_batches(data, batch_size, torch.Generator().manual_seed(seed)))


def assert_same_batches(a, b) -> None:
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(ya, yb)
        torch.testing.assert_close(xa, xb, rtol=0, atol=0)


# ---- CIFAR: python pickles; torchvision checks their md5, so the test registers the fixture's own


def write_cifar(root: Path, cls, per_batch: int, test: int, classes: int) -> None:
    folder = root / cls.base_folder
    folder.mkdir(parents=True)
    key = "labels" if cls is CIFAR10 else "fine_labels"
    files = [(name, per_batch) for name, _ in cls.train_list] + [(cls.test_list[0][0], test)]
    for index, (name, n) in enumerate(files):
        entry = {"data": RNG.integers(0, 256, (n, 3072), dtype=np.uint8),
                 key: [(index + i) % classes for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(entry))
    names = {cls.meta["key"]: [f"class{i}" for i in range(classes)]}
    (folder / cls.meta["filename"]).write_bytes(pickle.dumps(names))


def register_md5(monkeypatch, root: Path, cls) -> None:
    folder = root / cls.base_folder
    monkeypatch.setattr(cls, "train_list", [[name, md5(folder / name)] for name, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[name, md5(folder / name)] for name, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(folder / cls.meta["filename"])})


@pytest.fixture
def cifar10_root(tmp_path, monkeypatch) -> Path:
    write_cifar(tmp_path, CIFAR10, per_batch=8, test=10, classes=10)
    register_md5(monkeypatch, tmp_path, CIFAR10)
    return tmp_path


def test_cifar10_holds_out_val_keeps_eval_splits_in_memory_and_augments_training(cifar10_root):
    before = snapshot(cifar10_root)
    splits = build_dataset(config("cifar10", cifar10_root, val_size=10, augment=True), seed=0)
    assert [splits.num_examples(s) for s in ("train", "val", "test")] == [30, 10, 10]
    assert splits.num_classes == 10 and splits.input_shape == (3, 32, 32)
    assert isinstance(splits.val, TensorDataset) and isinstance(splits.test, TensorDataset)
    assert torch.bincount(splits.val.tensors[1], minlength=10).tolist() == [1] * 10  # stratified
    # test tensors are the pickled pixels, normalised as ToTensor + Normalize
    raw = pickle.loads((cifar10_root / "cifar-10-batches-py" / "test_batch").read_bytes())
    mean, std = (torch.tensor(s).view(3, 1, 1) for s in STATS["cifar10"])
    first = torch.from_numpy(raw["data"][0].reshape(3, 32, 32)).float() / 255
    torch.testing.assert_close(splits.test.tensors[0][0], (first - mean) / std)
    assert splits.test.tensors[1].tolist() == raw["labels"]
    # augmented training images differ from their plain view; evaluation reads the plain one
    x, y = batches_of(splits.train, seed=0, batch_size=30)[0]
    order = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    plain_x, plain_y = next(iterate_batches(splits.train, 30))
    assert x.shape == (30, 3, 32, 32) and torch.equal(plain_y, split_labels(splits.train))
    assert torch.equal(y, plain_y[order])
    assert not torch.equal(x, plain_x[order])
    assert snapshot(cifar10_root) == before


def test_cifar10_without_augmentation_is_all_tensors_and_accepts_the_batches_folder(cifar10_root):
    splits = build_dataset(config("cifar10", cifar10_root / "cifar-10-batches-py", val_fraction=0.25), seed=0)
    assert all(isinstance(splits.split(s), TensorDataset) for s in ("train", "val", "test"))
    assert [splits.num_examples(s) for s in ("train", "val", "test")] == [30, 10, 10]


def test_cifar100_reads_fine_labels(tmp_path, monkeypatch):
    write_cifar(tmp_path, CIFAR100, per_batch=40, test=7, classes=100)  # one "train" pickle of 40
    register_md5(monkeypatch, tmp_path, CIFAR100)
    splits = build_dataset(config("cifar100", tmp_path, val_size=0, test_size=5), seed=0)
    assert splits.num_classes == 100 and splits.num_examples("train") == 40 and splits.num_examples("test") == 5
    assert sorted(splits.train.tensors[1].tolist()) == list(range(40))


# ---- ImageNet: torchvision's layout with meta.bin, or plain class folders


def write_imagenet(root: Path, wnids: list[str], train: int, val: int, meta: bool) -> None:
    for wnid in wnids:
        for i in range(train):
            write_jpeg(root / "train" / wnid / f"{wnid}_{i}.JPEG")
        for i in range(val):
            write_jpeg(root / "val" / wnid / f"ILSVRC2012_val_{wnid}{i:04d}.JPEG", gray=i == 0)
    if meta:
        classes = {wnid: (f"name {wnid}",) for wnid in wnids}
        torch.save((classes, [w for w in wnids for _ in range(val)]), root / "meta.bin")


@pytest.mark.parametrize("meta", [True, False], ids=["meta.bin", "class-folders"])
def test_imagenet_uses_official_val_as_test_and_crops(tmp_path, meta):
    wnids = ["n01440764", "n01443537", "n01484850"]
    write_imagenet(tmp_path, wnids, train=4, val=2, meta=meta)
    before = snapshot(tmp_path)
    splits = build_dataset(config("imagenet", tmp_path, val_size=3, image_size=32), seed=0)
    assert [splits.num_examples(s) for s in ("train", "val", "test")] == [9, 3, 6]
    assert splits.num_classes == 3 and splits.input_shape == (3, 32, 32)
    assert split_labels(splits.test).tolist() == [0, 0, 1, 1, 2, 2]
    x, y = next(iterate_batches(splits.test, 6))
    assert x.shape == (6, 3, 32, 32) and y.tolist() == [0, 0, 1, 1, 2, 2]  # a gray JPEG comes out as RGB
    assert batches_of(splits.train, 0)[0][0].shape == (4, 3, 32, 32)
    assert snapshot(tmp_path) == before


# ---- CUB-200-2011: three text files and images/<class>/*.jpg


def write_cub(folder: Path, classes: int, per_class: int) -> list[int]:
    lines, labels, split = [], [], []
    for c in range(classes):
        for i in range(per_class):
            relative = f"{c + 1:03d}.Species_{c}/Species_{c}_{i:04d}_{c}{i}.jpg"
            write_jpeg(folder / "images" / relative, size=(50, 40))
            lines.append(relative)
            labels.append(c + 1)
            split.append(int(i % 2 == 0))
    for name, values in (("images.txt", lines), ("image_class_labels.txt", labels), ("train_test_split.txt", split)):
        (folder / name).write_text("".join(f"{i} {v}\n" for i, v in enumerate(values, start=1)))
    return split


def test_birds200_follows_train_test_split_txt(tmp_path):
    folder = tmp_path / "CUB_200_2011"
    split = write_cub(folder, classes=3, per_class=5)
    before = snapshot(tmp_path)
    for root in (tmp_path, folder):  # the folder holding CUB_200_2011, or CUB_200_2011 itself
        splits = build_dataset(config("birds200", root, image_size=32, augment=True), seed=0)
        assert [splits.num_examples(s) for s in ("train", "val", "test")] == [sum(split), 0, len(split) - sum(split)]
    assert splits.num_classes == 200 and splits.input_shape == (3, 32, 32)
    assert sorted(split_labels(splits.train).tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    x, y = next(iterate_batches(splits.test, 100))
    assert x.shape == (6, 3, 32, 32) and y.tolist() == [0, 0, 1, 1, 2, 2]
    assert snapshot(tmp_path) == before


def test_birds200_refuses_disagreeing_text_files(tmp_path):
    write_cub(tmp_path, classes=2, per_class=2)
    (tmp_path / "image_class_labels.txt").write_text("1 1\n2 1\n")
    with pytest.raises(UserError, match="do not agree"):
        build_dataset(config("birds200", tmp_path), seed=0)


# ---- Flowers-102: jpg/ plus imagelabels.mat and setid.mat (torchvision checks their md5)


def write_flowers(folder: Path) -> None:
    """Twelve images of three classes: train 1–3, val 4–6, test 7–12."""
    labels = np.array([1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3], dtype=np.uint8)
    for i in range(1, len(labels) + 1):
        write_jpeg(folder / "jpg" / f"image_{i:05d}.jpg")
    scipy.io.savemat(folder / "imagelabels.mat", {"labels": labels[None, :]})
    scipy.io.savemat(folder / "setid.mat", {"trnid": np.array([[1, 2, 3]]), "valid": np.array([[4, 5, 6]]),
                                            "tstid": np.array([[7, 8, 9, 10, 11, 12]])})


def register_flowers_md5(monkeypatch, folder: Path) -> None:
    monkeypatch.setattr(Flowers102, "_file_dict", {**Flowers102._file_dict,
                                                   "label": ("imagelabels.mat", md5(folder / "imagelabels.mat")),
                                                   "setid": ("setid.mat", md5(folder / "setid.mat"))})


def test_flowers102_trains_on_train_plus_val_and_tests_on_test(tmp_path, monkeypatch):
    folder = tmp_path / "flowers-102"
    write_flowers(folder)
    register_flowers_md5(monkeypatch, folder)
    before = snapshot(tmp_path)
    splits = build_dataset(config("flowers102", tmp_path, image_size=32, augment=True), seed=0)
    assert [splits.num_examples(s) for s in ("train", "val", "test")] == [6, 0, 6]
    assert splits.num_classes == 102 and sorted(split_labels(splits.train).tolist()) == [0, 0, 1, 1, 2, 2]
    x, y = next(iterate_batches(splits.test, 6))
    assert x.shape == (6, 3, 32, 32) and y.tolist() == [0, 1, 2, 0, 1, 2]
    held = build_dataset(config("flowers102", folder, image_size=32, val_size=3), seed=0)
    assert [held.num_examples(s) for s in ("train", "val")] == [3, 3]
    assert sorted(split_labels(held.val).tolist()) == [0, 1, 2]
    assert snapshot(tmp_path) == before


# ---- Tiny ImageNet: train/<wnid>/images, val/images + val_annotations.txt


def write_tiny_imagenet(folder: Path, wnids: list[str], train: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for wnid in wnids:
        for i in range(train):
            write_jpeg(folder / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", size=(64, 64), gray=i == 1)
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text(f"{wnid}_0.JPEG\t0\t0\t63\t63\n")
    val_wnids = [wnids[i % len(wnids)] for i in range(5)][::-1]
    for i in range(len(val_wnids)):
        write_jpeg(folder / "val" / "images" / f"val_{i}.JPEG", size=(64, 64))
    (folder / "val" / "val_annotations.txt").write_text(
        "".join(f"val_{i}.JPEG\t{wnid}\t1\t2\t50\t60\n" for i, wnid in enumerate(val_wnids)))
    return val_wnids


def test_tiny_imagenet_reads_val_annotations_as_test_without_touching_the_folder(tmp_path):
    folder = tmp_path / "tiny-imagenet-200"
    wnids = ["n02124075", "n01443537", "n04067472"]
    val_wnids = write_tiny_imagenet(folder, wnids, train=4)
    before = snapshot(tmp_path)
    splits = build_dataset(config("tiny_imagenet", tmp_path, val_size=3, augment=True), seed=0)
    assert [splits.num_examples(s) for s in ("train", "val", "test")] == [9, 3, 5]
    assert splits.num_classes == 3 and splits.input_shape == (3, 64, 64)
    order = sorted(wnids)
    x, y = next(iterate_batches(splits.test, 5))
    assert x.shape == (5, 3, 64, 64) and y.tolist() == [order.index(w) for w in val_wnids]
    assert sorted(split_labels(splits.val).tolist()) == [0, 1, 2]
    # decoded once into uint8 on the device: the test images are the files' pixels, normalised
    assert all(isinstance(split, DeviceImages) for split in (splits.train, splits.val, splits.test))
    first = sorted((folder / "val" / "images").glob("*.JPEG"))[0]
    pixels = TF.pil_to_tensor(Image.open(first).convert("RGB"))
    expected = TF.normalize(TF.convert_image_dtype(pixels, torch.float32), IMAGENET_MEAN, IMAGENET_STD)
    torch.testing.assert_close(x[0], expected, rtol=0, atol=1e-5)
    assert snapshot(tmp_path) == before


def test_tiny_imagenet_keeps_its_native_size(tmp_path):
    write_tiny_imagenet(tmp_path, ["n01443537"], train=1)
    with pytest.raises(UserError, match="native 64×64"):
        build_dataset(config("tiny_imagenet", tmp_path, image_size=32), seed=0)


# ---- nvGesture: list files and depth .avi clips


def write_avi(path: Path, values: list[int], size: tuple[int, int] = (40, 30)) -> None:
    """A video whose frame i is uniformly gray ``values[i]`` (depth is stored as a gray image)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mjpeg", rate=30)
        stream.width, stream.height, stream.pix_fmt = *size, "yuvj420p"
        for value in values:
            frame = np.full((size[1], size[0], 3), value, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_nvgesture(folder: Path) -> None:
    lists = {"train": [], "test": []}
    for n, (label, subject, split) in enumerate([(1, 3, "train"), (2, 3, "train"), (1, 5, "train"), (2, 5, "train"),
                                                 (1, 7, "test"), (2, 7, "test")]):
        clip = f"./Video_data/class_{label:02d}/subject{subject}_r{n % 2}"
        write_avi(folder / clip / "sk_depth.avi", [10 * i for i in range(24)])
        write_avi(folder / clip / "sk_color.avi", [0] * 2)  # present in the real folders, never read
        lists[split].append(f"path:{clip} depth:sk_depth:4:20 color:sk_color:4:20 "
                            f"duo_left:duo_left:6:22 label:{label}")
    lists["test"][-1] = lists["test"][-1].replace("depth:sk_depth:4:20", "depth:sk_depth:12:30")  # overruns
    for split, lines in lists.items():
        (folder / f"nvgesture_{split}_correct_cvpr2016_v2.lst").write_text("\r\n".join(lines) + "\r\n")


def test_nvgesture_reads_depth_clips_from_the_list_ranges(tmp_path):
    pytest.importorskip("av")
    write_nvgesture(tmp_path)
    before = snapshot(tmp_path)
    splits = build_dataset(config("nvgesture", tmp_path, frames=4, image_size=16), seed=0)
    assert [splits.num_examples(s) for s in ("train", "val", "test")] == [4, 0, 2]
    assert splits.num_classes == 25 and splits.input_shape == (1, 4, 16, 16)
    x, y = next(iterate_batches(splits.test, 2))
    assert x.shape == (2, 1, 4, 16, 16) and y.tolist() == [0, 1]
    assert sorted(split_labels(splits.train).tolist()) == [0, 0, 1, 1]
    # frames 4, 9, 14 and 19 of [4, 20), gray 40, 90, 140, 190; frames 12, 18, 23 and 29 of [12, 30),
    # which runs past the video's 24 frames: the last one repeats. Scaled to [-1, 1].
    expected = torch.tensor([[40.0, 90, 140, 190], [120, 180, 230, 230]]) / 255 * 2 - 1
    torch.testing.assert_close(x[:, 0].mean((2, 3)), expected, atol=0.02, rtol=0)
    augmented = build_dataset(config("nvgesture", tmp_path, frames=8, image_size=16, augment=True, val_size=2), seed=0)
    assert batches_of(augmented.train, 0, 2)[0][0].shape == (2, 1, 8, 16, 16)
    assert snapshot(tmp_path) == before


# ---- what every loader shares


LAYOUT_WORDS = {
    "mnist": "MNIST/raw", "cifar10": "data_batch_1", "cifar100": "cifar-100-python", "imagenet": "meta.bin",
    "tiny_imagenet": "val_annotations.txt", "birds200": "train_test_split.txt", "flowers102": "setid.mat",
    "nvgesture": "sk_depth.avi",
}


@pytest.mark.parametrize("name", sorted(LAYOUT_WORDS))
def test_a_missing_dataset_names_its_layout(tmp_path, name):
    with pytest.raises(UserError, match=f"not found under .*{LAYOUT_WORDS[name]}") as error:
        build_dataset(config(name, tmp_path / "nowhere"), seed=0)
    assert "\n" not in str(error.value) and "dataset.root" in str(error.value)


@pytest.mark.parametrize("name", ["imagenet", "tiny_imagenet", "birds200", "nvgesture"])
def test_download_is_refused_where_torchvision_has_none(tmp_path, name):
    with pytest.raises(UserError, match=f"dataset.download=true is not available for {name}: fetch it from http"):
        build_dataset(config(name, tmp_path, download=True), seed=0)


def test_every_registered_dataset_is_covered_here():
    assert set(list_datasets()) == set(LAYOUT_WORDS) | {"mnist5k", "synthetic"}  # those two read no files


@pytest.fixture
def lazy_cub(tmp_path) -> DataSplits:
    write_cub(tmp_path, classes=3, per_class=8)
    return build_dataset(config("birds200", tmp_path, image_size=16, augment=True, val_size=3), seed=0)


def test_a_dataloader_split_gives_the_same_batches_for_the_same_seed(lazy_cub):
    first = batches_of(lazy_cub.train, seed=5)
    assert [len(y) for _, y in first] == [4, 4, 1]
    assert_same_batches(first, batches_of(lazy_cub.train, seed=5))
    assert not torch.equal(first[0][0], batches_of(lazy_cub.train, seed=6)[0][0])
    # augmentation is seeded per example: worker processes change nothing
    workers = LazySplit(lazy_cub.train.dataset, lazy_cub.train.eval_view, num_workers=2)
    assert_same_batches(first, batches_of(workers, seed=5))
    # another stream drawing random numbers in between does not shift this one
    stream, torch_state = endless_batches(lazy_cub.train, 4, torch.Generator().manual_seed(5)), torch.get_rng_state()
    x0 = next(stream)[0]
    torch.rand(100)
    assert torch.equal(x0, first[0][0]) and torch.equal(next(stream)[0], first[1][0])
    torch.set_rng_state(torch_state)


def test_streams_keep_one_persistent_loader_each_and_interleaved_streams_do_not_disturb_each_other(lazy_cub):
    """Two batch streams over one split with worker processes, drawn in turn: each gives the batches
    it gives alone, and every pass of a stream reuses its loader (its workers are not restarted)."""
    workers = LazySplit(lazy_cub.train.dataset, lazy_cub.train.eval_view, num_workers=2)
    alone = [list(itertools.islice(endless_batches(lazy_cub.train, 4, torch.Generator().manual_seed(seed)), 6))
             for seed in (5, 6)]  # two passes of 3 batches each, without workers
    streams = [endless_batches(workers, 4, torch.Generator().manual_seed(seed)) for seed in (5, 6)]
    for k in range(len(alone[0])):
        for stream, expected in zip(streams, alone):
            x, y = next(stream)
            assert torch.equal(x, expected[k][0]) and torch.equal(y, expected[k][1])
    loaders = list(workers._loaders.values())
    assert len(loaders) == 2 and all(loader.persistent_workers and loader._iterator is not None for loader, _ in loaders)


def test_a_lazy_view_of_tensors_batches_like_the_tensors():
    data = TensorDataset(torch.randn(10, 3), torch.arange(10))
    assert_same_batches(batches_of(LazySplit(data), seed=3), batches_of(data, seed=3))
    model = torch.nn.Linear(3, 10)
    assert evaluate(model, LazySplit(data), 4) == pytest.approx(evaluate(model, data, 4))


def test_evaluation_and_fixed_subsets_read_the_plain_images(lazy_cub):
    plain = torch.cat([x for x, _ in iterate_batches(lazy_cub.train, 4)])
    assert torch.equal(plain, torch.cat([x for x, _ in iterate_batches(lazy_cub.train, 4)]))
    subset = lazy_cub.fixed_subset("train", 5, seed=0, key="measure")
    index = torch.randperm(9, generator=torch.Generator().manual_seed(0))[:5]
    x, y = next(iterate_batches(subset, 5))
    assert torch.equal(x, plain[index]) and torch.equal(y, split_labels(lazy_cub.train)[index])
    shuffled = next(iterate_batches(subset, 5, torch.Generator().manual_seed(1)))[0]  # training-like pass: still plain
    assert torch.equal(shuffled, x[torch.randperm(5, generator=torch.Generator().manual_seed(1))])
    x_at, y_at = batch_at(lazy_cub.train, index)
    assert torch.equal(x_at, x) and torch.equal(y_at, y)
    with pytest.raises(UserError, match="measure.subset=50 is larger than the train split"):
        lazy_cub.fixed_subset("train", 50, seed=0, key="measure")


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_runner_batches_of_a_lazy_split_land_on_the_requested_device(lazy_cub, device):
    splits = lazy_cub.to(torch.device(device))
    assert isinstance(splits.train, LazySplit) and splits.num_examples("train") == 9
    x, y = next(endless_batches(splits.train, 8, torch.Generator().manual_seed(0)))
    assert x.device.type == device and y.device.type == device and x.shape == (8, 3, 16, 16)
    x, _ = next(iterate_batches(splits.fixed_subset("val", 2, 0, "measure"), 2))
    assert x.device.type == device


def test_to_moves_tensor_splits_and_an_empty_val_evaluates_to_nan():
    data = TensorDataset(torch.randn(6, 3), torch.arange(6) % 2)
    empty = TensorDataset(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    splits = DataSplits(data, empty, data, 2, (3,)).to("meta")
    assert splits.train.tensors[0].device.type == "meta" and splits.num_examples("val") == 0
    loss, accuracy = evaluate(torch.nn.Linear(3, 2), empty)
    assert np.isnan(loss) and np.isnan(accuracy)
