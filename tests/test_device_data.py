"""Images held on the device, augmented there per batch: torchvision's RandomCrop(padding=4) +
RandomHorizontalFlip + ToTensor + Normalize pixel for pixel for the same draws, and seeded."""
from __future__ import annotations

import torch
import torchvision.transforms.functional as TF

from prunerun.data.device import DeviceImages, crop_and_flip
from prunerun.train import iterate_batches

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def images(n: int = 6, size: int = 8) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def torchvision_crop_flip(image: torch.Tensor, top: int, left: int, flip: bool, padding: int) -> torch.Tensor:
    """What RandomCrop(size, padding) then RandomHorizontalFlip do to one image for these draws."""
    size = image.shape[-1]
    cropped = TF.crop(TF.pad(image, [padding]), top, left, size, size)
    return TF.hflip(cropped) if flip else cropped


def test_crop_and_flip_are_torchvisions_for_the_same_offsets_and_flips():
    x = images()
    offsets = torch.tensor([[0, 0], [8, 8], [3, 5], [8, 0], [0, 8], [4, 4]])
    flips = torch.tensor([False, True, True, False, True, False])
    ours = crop_and_flip(x, offsets, flips, padding=4)
    for k in range(len(x)):
        expected = torchvision_crop_flip(x[k], int(offsets[k, 0]), int(offsets[k, 1]), bool(flips[k]), 4)
        assert torch.equal(ours[k], expected), k


def test_an_augmented_batch_is_the_torchvision_pipeline_on_the_drawn_parameters():
    x, labels = images(), torch.arange(6)
    data = DeviceImages(x, labels, MEAN, STD, padding=2)
    index = torch.tensor([4, 1, 5])
    batch, y = data.augmented(index, torch.Generator().manual_seed(7))
    draws = torch.Generator().manual_seed(7)  # the same draws, in the same order: offsets, then flips
    offsets, flips = torch.randint(0, 5, (3, 2), generator=draws), torch.rand(3, generator=draws) < 0.5
    for k, i in enumerate(index.tolist()):
        image = torchvision_crop_flip(x[i], int(offsets[k, 0]), int(offsets[k, 1]), bool(flips[k]), 2)
        expected = TF.normalize(TF.convert_image_dtype(image, torch.float32), MEAN, STD)
        torch.testing.assert_close(batch[k], expected, rtol=0, atol=1e-6)
    assert y.tolist() == [4, 1, 5]
    plain, _ = data.plain(index)
    torch.testing.assert_close(plain[0], TF.normalize(TF.convert_image_dtype(x[4], torch.float32), MEAN, STD),
                               rtol=0, atol=1e-6)


def test_device_batches_are_seeded_and_in_the_tensor_paths_order():
    data = DeviceImages(images(10), torch.arange(10), MEAN, STD)
    passes = [list(iterate_batches(data, 4, torch.Generator().manual_seed(3))) for _ in range(2)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(*passes))
    order = torch.randperm(10, generator=torch.Generator().manual_seed(3))
    assert torch.cat([y for _, y in passes[0]]).tolist() == order.tolist()
    other = list(iterate_batches(data, 4, torch.Generator().manual_seed(4)))
    assert not torch.equal(passes[0][0][0], other[0][0])
    evaluation = list(iterate_batches(data, 4))  # no generator: plain, in order
    assert torch.equal(torch.cat([x for x, _ in evaluation]), data.plain(torch.arange(10))[0])
