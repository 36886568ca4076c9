"""The torch module that becomes the ONNX graph: uint8 pixels in, descriptor tensors out.

Kept apart from the export command so that adding an output (say, mid-layer channel statistics for a
"style" aspect) means: tap the activation in `forward`, append a name to `output_names`, return it.
"""

from __future__ import annotations

import torch
from torch import nn


class PixelsToFeatures(nn.Module):
    """uint8 RGB NHWC [N,224,224,3] → global-average-pooled head features float32 [N,1280].

    Runs the backbone's stem, blocks and head explicitly (not `extract_features`) so that later outputs can
    read intermediate activations. Export only: assumes eval mode, where drop-connect is the identity.
    """

    output_names: tuple[str, ...] = ("features",)

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    @staticmethod
    def normalise(pixels: torch.Tensor) -> torch.Tensor:
        """The preprocessing these weights were trained with: (x/255 - 0.5) / 0.5, channels first."""
        x = pixels.permute(0, 3, 1, 2).to(torch.float32)
        return (x / 255.0 - 0.5) / 0.5

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        net = self.backbone
        x = net._swish(net._bn0(net._conv_stem(self.normalise(pixels))))
        for block in net._blocks:
            x = block(x)
        x = net._swish(net._bn1(net._conv_head(x)))
        return x.mean(dim=(2, 3))
