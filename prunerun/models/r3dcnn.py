"""R3DCNN (Molchanov et al. 2016; pruned in Molchanov et al. 2017 §3.4): a C3D conv stack per
clip, two fully connected layers, a recurrent layer over the clips and a linear classifier.

C3D layout (Tran et al. 2015): eight 3×3×3 'same' convs conv1a 64, conv2a 128, conv3a/b 256,
conv4a/b 512, conv5a/b 512, each with a ReLU; max-pools pool1 1×2×2, pool2-4 2×2×2 and pool5
1×2×2 with spatial padding 1 (for 8-frame clips the time axis is 1 by then; C3D's 16-frame pool5
is 2×2×2), so a 1×8×112×112 clip gives 512×1×4×4 = 8192 features, C3D's fc6 input. fc6 and fc7
have 4096 units; the recurrent layer has 256 ReLU units (the R3DCNN paper's choice, as far as
its text gives it) and the class is read from its last step. Examples are one clip (C, T, H, W)
or a sequence of clips (S, C, T, H, W). Units are the conv feature maps, as in appendix A.1.
"""
from __future__ import annotations

import torch
from torch import nn

from prunerun.models import register_model
from prunerun.models.common import conv_units, declare, output_shape

C3D = [("conv1a", 64), "pool1", ("conv2a", 128), "pool", ("conv3a", 256), ("conv3b", 256), "pool",
       ("conv4a", 512), ("conv4b", 512), "pool", ("conv5a", 512), ("conv5b", 512), "pool5"]
POOLS = {"pool1": lambda: nn.MaxPool3d((1, 2, 2)), "pool": lambda: nn.MaxPool3d(2),
         "pool5": lambda: nn.MaxPool3d((1, 2, 2), padding=(0, 1, 1))}


def c3d_features(in_channels: int) -> nn.Sequential:
    layers, channels = [], in_channels
    for entry in C3D:
        if isinstance(entry, str):
            layers.append(POOLS[entry]())
        else:
            layers += [nn.Conv3d(channels, entry[1], 3, padding=1), nn.ReLU(inplace=True)]
            channels = entry[1]
    return nn.Sequential(*layers)


class R3DCNN(nn.Module):
    def __init__(self, clip_shape: tuple[int, int, int, int], num_classes: int, clips: int | None = None,
                 hidden: int = 256, dropout: float = 0.5) -> None:
        super().__init__()
        self.clips = clips  # None: each example is one clip
        self.features = c3d_features(clip_shape[0])
        flat = torch.Size(output_shape(lambda: c3d_features(clip_shape[0]), clip_shape)).numel()
        self.fc6 = nn.Linear(flat, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.rnn = nn.RNN(4096, hidden, nonlinearity="relu", batch_first=True)
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.clips is not None:
            x = x.flatten(0, 1)
        z = self.features(x).flatten(1)
        z = self.dropout(self.relu(self.fc6(z)))
        z = self.dropout(self.relu(self.fc7(z)))
        z = z.unsqueeze(1) if self.clips is None else z.unflatten(0, (-1, self.clips))
        out, _ = self.rnn(z)
        return self.classifier(out[:, -1])


@register_model("r3dcnn")
def r3dcnn(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """R3DCNN for clips of (C, T, H, W) (or S clips: (S, C, T, H, W)); T >= 8, H, W >= 16."""
    clips = input_shape[0] if len(input_shape) == 5 else None
    model = R3DCNN(tuple(input_shape[-4:]), num_classes, clips)
    names = [entry[0] for entry in C3D if not isinstance(entry, str)]
    return declare(model, input_shape, conv_units(model.features, "features", names), None, head=("classifier.",))
