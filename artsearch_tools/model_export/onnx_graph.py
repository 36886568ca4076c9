"""The torch module that becomes the ONNX graph: uint8 pixels in, descriptor tensors out.

Kept apart from the export command so that adding an output means: tap the activation in `forward`, append a
name to `output_names`, return it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# The output names are a contract with every backend (onnxruntime in-process, Triton's python backend).
from services.encoder.backends import FEATURES_OUTPUT, STYLE_OUTPUT


class PixelsToFeatures(nn.Module):
    """uint8 RGB NHWC [N,224,224,3] → two float32 outputs:

    * ``features`` [N,1280]: global-average-pooled head features (what the image shows);
    * ``style`` [N, 2·ΣC]: for each tapped block, in `style_blocks` order, the per-channel spatial mean then
      the per-channel spatial standard deviation of that block's output (Gatys-style first and second order
      statistics of mid-level feature maps: texture and brushwork, largely independent of layout).

    Runs the backbone's stem, blocks and head explicitly (not `extract_features`) so that intermediate
    activations can be read. Export only: assumes eval mode, where drop-connect is the identity.
    """

    output_names: tuple[str, ...] = (FEATURES_OUTPUT, STYLE_OUTPUT)

    def __init__(self, backbone: nn.Module, style_blocks: Sequence[int]) -> None:
        super().__init__()
        if not style_blocks:
            raise ValueError("at least one block must be tapped for the style output")
        block_count = len(backbone._blocks)
        if any(not 0 <= index < block_count for index in style_blocks):
            raise ValueError(f"style blocks {tuple(style_blocks)} outside 0..{block_count - 1}")
        self.backbone = backbone
        self.style_blocks = tuple(style_blocks)

    @staticmethod
    def normalise(pixels: torch.Tensor) -> torch.Tensor:
        """The preprocessing these weights were trained with: (x/255 - 0.5) / 0.5, channels first."""
        x = pixels.permute(0, 3, 1, 2).to(torch.float32)
        return (x / 255.0 - 0.5) / 0.5

    @staticmethod
    def channel_statistics(x: torch.Tensor) -> torch.Tensor:
        """[N,C,H,W] → [N,2C]: spatial mean per channel, then spatial standard deviation per channel."""
        mean = x.mean(dim=(2, 3))
        # E[(x - mean)^2] rather than E[x^2] - mean^2: no cancellation, so never a negative variance.
        variance = (x - mean[:, :, None, None]).pow(2).mean(dim=(2, 3))
        return torch.cat([mean, torch.sqrt(variance + 1e-12)], dim=1)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net = self.backbone
        x = net._swish(net._bn0(net._conv_stem(self.normalise(pixels))))
        statistics = []
        for index, block in enumerate(net._blocks):
            x = block(x)
            if index in self.style_blocks:
                statistics.append((self.style_blocks.index(index), self.channel_statistics(x)))
        x = net._swish(net._bn1(net._conv_head(x)))
        style = torch.cat([stats for _, stats in sorted(statistics, key=lambda item: item[0])], dim=1)
        return x.mean(dim=(2, 3)), style
