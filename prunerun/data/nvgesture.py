"""NVIDIA Dynamic Hand Gesture (nvGesture, Molchanov §3.4 and Molchanov et al. 2016), depth
modality: ``Video_data/class_XX/subject…/sk_depth.avi`` and the lists
``nvgesture_{train,test}_correct_cvpr2016_v2.lst`` (1,050 / 482 gestures of 25 classes), whose lines
read ``path:./Video_data/class_01/subject13_r0 depth:sk_depth:138:218 color:… label:1``: the
gesture spans frames [138, 218) of ``sk_depth.avi``.

Each example is a clip of ``dataset.frames`` frames spread evenly over the gesture (8 by default,
the R3DCNN clip length), the depth (luma) channel resized to ``dataset.image_size`` (112) square,
scaled to [-1, 1]: a ``[1, frames, 112, 112]`` tensor. With ``dataset.augment`` training clips are
resized to 8/7 of the side and randomly cropped (one crop per clip). Flips are never used: they
turn "move hand left" into "move hand right". Videos are decoded with PyAV; one that cannot be
stops the run with a message naming it.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from prunerun.data import DataSplits, register_dataset
from prunerun.data.images import (DataError, check_files, held_out_splits, missing, read_file, refuse_download,
                                  with_transform)
from prunerun.errors import UserError

LISTS = {"train": "nvgesture_train_correct_cvpr2016_v2.lst", "test": "nvgesture_test_correct_cvpr2016_v2.lst"}
LAYOUT = f"{LISTS['train']}, {LISTS['test']} and Video_data/class_XX/subjectNN_rN/sk_depth.avi"
SOURCE = ("https://research.nvidia.com/publication/2016-06_online-detection-and-classification-dynamic-hand-gestures-"
          "recurrent-3d (nvGesture_v1.7z, unpacked with 7z)")
CLASSES = 25


@dataclass(frozen=True)
class Gesture:
    video: Path
    start: int  # first frame of the gesture
    end: int  # one past its last frame
    label: int  # 0-based


def parse_list(path: Path, sensor: str = "depth") -> list[Gesture]:
    """The gestures of one list file, for the video of ``sensor`` (``name:file:start:end`` fields)."""
    gestures = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            fields = dict(token.split(":", 1) for token in line.split())
            file, start, end = fields[sensor].split(":")
            video = path.parent / fields["path"] / f"{file}.avi"
            gestures.append(Gesture(video, int(start), int(end), int(fields["label"]) - 1))
        except (KeyError, ValueError):
            raise UserError(f"nvgesture: line {number} of {path} is not "
                            f"'path:… {sensor}:file:start:end … label:N'") from None
    return gestures


def read_frames(video: Path, frames: list[int]) -> torch.Tensor:
    """The frames at (sorted) indices ``frames`` of ``video`` as uint8 luma ``[len(frames), H, W]``;
    an index past the video's end repeats its last frame (the lists' ranges sometimes overrun)."""
    import av  # imported here: only this dataset needs the video decoder

    decoded = {}
    with av.open(str(video)) as container:
        # decoding from the start counts frames exactly; seeking in AVI lands on key frames
        for index, frame in enumerate(container.decode(video=0)):
            if index in frames:
                decoded[index] = torch.from_numpy(frame.to_ndarray(format="gray"))
            if index >= frames[-1]:
                break
    if not decoded:
        raise DataError(f"nvgesture: {video} holds no frame at {frames[0]} or later")
    last = decoded[max(decoded)]
    return torch.stack([decoded.get(i, last) for i in frames])


class ClipTransform:
    """uint8 ``[T, H, W]`` → float ``[1, T, size, size]`` in [-1, 1]: the whole frame resized, or
    with ``augment`` resized to 8/7 of ``size`` and cropped at one random place for every frame."""

    def __init__(self, size: int, augment: bool) -> None:
        self.size, self.augment = size, augment

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        side = round(self.size * 8 / 7) if self.augment else self.size
        x = F.interpolate(clip.unsqueeze(1).float(), size=(side, side), mode="bilinear", antialias=True,
                          align_corners=False)
        if self.augment:
            top, left = (int(torch.randint(side - self.size + 1, ())) for _ in range(2))
            x = x[..., top:top + self.size, left:left + self.size]
        return (x.transpose(0, 1) / 255 - 0.5) / 0.5


class GestureClips(Dataset):
    """Depth clips of ``frames`` frames spread evenly over each gesture, with their labels."""

    def __init__(self, gestures: list[Gesture], frames: int, transform: ClipTransform) -> None:
        self.gestures, self.frames, self.transform = gestures, frames, transform

    def __len__(self) -> int:
        return len(self.gestures)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        g = self.gestures[index]
        spread = torch.linspace(g.start, max(g.start, g.end - 1), self.frames).round().long().tolist()
        return self.transform(read_file(lambda video: read_frames(video, spread), g.video, SOURCE)), g.label


@register_dataset("nvgesture")
def nvgesture(cfg, seed: int) -> DataSplits:
    """25 hand gestures, depth clips; val held out of the training list, the test list as test."""
    refuse_download(cfg, "nvgesture", SOURCE)
    folder = Path(cfg.root).expanduser()
    if not all((folder / name).is_file() for name in LISTS.values()):
        raise missing("nvgesture", folder, LAYOUT, SOURCE)
    train_list, test_list = (read_file(parse_list, folder / LISTS[split], SOURCE) for split in ("train", "test"))
    check_files("nvgesture", [g.video for g in train_list + test_list], f"{LISTS['train']} and {LISTS['test']}",
                SOURCE)
    if importlib.util.find_spec("av") is None:
        raise UserError("nvgesture decodes its videos with PyAV: pip install av")
    size = cfg.image_size or 112
    train = GestureClips(train_list, cfg.frames, ClipTransform(size, cfg.augment))
    test = GestureClips(test_list, cfg.frames, ClipTransform(size, False))
    labels = [g.label for g in train_list]
    return held_out_splits(cfg, seed, train, with_transform(train, ClipTransform(size, False)), labels, test,
                           [g.label for g in test_list], num_classes=CLASSES, input_shape=(1, cfg.frames, size, size))
