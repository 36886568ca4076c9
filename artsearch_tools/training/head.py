"""A projection head on the frozen backbone's outputs, trained contrastively on cached features.

    z = unit(f) + W2 · relu(W1 · [unit(f), unit(s)] + b1) + b2

where f is the graph's global `features` and s its `style` statistics. The output has the width of f, so the
retrained graph keeps every tensor shape of the base one (the encoder, its ModelInfo and Triton's
config.pbtxt stay valid) and only the values of `features` change. W2 and b2 start at zero: before
training the head is the identity on unit(f), so a head trained on little data moves away from the base
model only as far as the loss pulls it.

Loss: supervised contrastive (Khosla et al. 2020) over a batch of unit outputs, temperature τ. Rows that
share a group are positives: the same artwork (its original and augmented copies: SimCLR's InfoNCE), or,
when a label is asked for, the same label (style or artist; rows without a label fall back to their
artwork).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from artsearch.descriptor_layout import unit_rows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadSettings:
    hidden: int = 512
    epochs: int = 150
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.1
    # Rows per step; the whole set when it is smaller.
    batch_size: int = 1024
    seed: int = 0
    # Positives: "" = views of the same artwork (InfoNCE); "style" or "artist" = rows with the same label.
    label: str = ""


@dataclass
class HeadWeights:
    """The trained head as plain arrays (what the ONNX export writes as initializers)."""

    w1: np.ndarray  # [F + S, hidden]
    b1: np.ndarray  # [hidden]
    w2: np.ndarray  # [hidden, F]
    b2: np.ndarray  # [F]

    @property
    def input_width(self) -> int:
        return int(self.w1.shape[0])

    @property
    def output_width(self) -> int:
        return int(self.w2.shape[1])

    def apply(self, features: np.ndarray, style: np.ndarray) -> np.ndarray:
        """The head in numpy (float32): what the exported graph computes."""
        base = unit_rows(features)
        hidden = np.maximum(head_input(features, style) @ self.w1 + self.b1, 0.0)
        return (base + hidden @ self.w2 + self.b2).astype(np.float32)

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for array in (self.w1, self.b1, self.w2, self.b2):
            digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
        return digest.hexdigest()


@dataclass
class TrainingResult:
    weights: HeadWeights
    settings: HeadSettings
    losses: list[float] = field(default_factory=list)  # mean loss of each epoch
    initial_loss: float = 0.0  # the loss of the untrained head (the base model's own features)
    rows: int = 0
    groups: int = 0

    @property
    def final_loss(self) -> float:
        return self.losses[-1] if self.losses else self.initial_loss

    def summary(self) -> dict[str, object]:
        return {
            "settings": asdict(self.settings),
            "rows": self.rows,
            "groups": self.groups,
            "initial_loss": round(self.initial_loss, 5),
            "final_loss": round(self.final_loss, 5),
        }


def head_input(features: np.ndarray, style: np.ndarray) -> np.ndarray:
    return np.concatenate([unit_rows(features), unit_rows(style)], axis=1)


def positive_groups(items: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    """int [N]: rows with the same value are positives of each other. With labels, rows share their label's
    group; rows without a label ("") get their artwork's own group."""
    items = np.asarray(items)
    if labels is None:
        _, groups = np.unique(items, return_inverse=True)
        return groups.astype(np.int64)
    keys = [f"label:{label}" if label else f"item:{item}" for item, label in zip(items, labels, strict=True)]
    _, groups = np.unique(np.array(keys), return_inverse=True)
    return groups.astype(np.int64)


def supervised_contrastive_loss(embeddings: object, groups: object, temperature: float) -> object:
    """Mean over anchors with at least one positive of -mean_p log softmax_p (torch tensors in and out)."""
    import torch

    z = torch.nn.functional.normalize(embeddings, dim=1)  # type: ignore[arg-type]
    logits = z @ z.T / temperature
    count = logits.shape[0]
    self_mask = torch.eye(count, dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (groups[:, None] == groups[None, :]) & ~self_mask  # type: ignore[index]
    per_anchor = positives.sum(dim=1)
    anchors = per_anchor > 0
    if not bool(anchors.any()):
        raise ValueError("no row has a positive: every group has a single row")
    summed = torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
    return -(summed[anchors] / per_anchor[anchors]).mean()


class _Head:
    """The torch module, built lazily so that importing this file does not need torch."""

    @staticmethod
    def build(input_width: int, output_width: int, hidden: int) -> object:
        import torch
        from torch import nn

        class Head(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.hidden = nn.Linear(input_width, hidden)
                self.out = nn.Linear(hidden, output_width)
                nn.init.zeros_(self.out.weight)
                nn.init.zeros_(self.out.bias)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                base = x[:, :output_width]
                return base + self.out(torch.relu(self.hidden(x)))

        return Head()


def train_head(
    features: np.ndarray,
    style: np.ndarray,
    items: np.ndarray,
    settings: HeadSettings = HeadSettings(),
    labels: np.ndarray | None = None,
) -> TrainingResult:
    """Trains the head on cached rows (CPU; seconds for a few thousand rows)."""
    import torch

    torch.manual_seed(settings.seed)
    inputs = torch.from_numpy(head_input(features, style))
    groups = torch.from_numpy(positive_groups(items, labels))
    width = int(np.asarray(features).shape[1])
    head = _Head.build(inputs.shape[1], width, settings.hidden)
    optimiser = torch.optim.AdamW(
        head.parameters(),  # type: ignore[attr-defined]
        lr=settings.learning_rate,
        weight_decay=settings.weight_decay,
    )
    generator = np.random.default_rng(settings.seed)
    with torch.no_grad():
        initial = float(supervised_contrastive_loss(head(inputs), groups, settings.temperature))  # type: ignore[operator]
    losses: list[float] = []
    for _ in range(settings.epochs):
        epoch_losses = []
        for rows in _batches(len(inputs), settings.batch_size, generator):
            index = torch.from_numpy(rows)
            if not _has_positive(groups[index]):
                continue  # a batch of singletons teaches nothing
            loss = supervised_contrastive_loss(head(inputs[index]), groups[index], settings.temperature)  # type: ignore[operator]
            optimiser.zero_grad()
            loss.backward()  # type: ignore[attr-defined]
            optimiser.step()
            epoch_losses.append(loss.item())  # type: ignore[attr-defined]
        losses.append(float(np.mean(epoch_losses)) if epoch_losses else initial)
    weights = HeadWeights(
        w1=head.hidden.weight.detach().numpy().T.copy(),  # type: ignore[attr-defined]
        b1=head.hidden.bias.detach().numpy().copy(),  # type: ignore[attr-defined]
        w2=head.out.weight.detach().numpy().T.copy(),  # type: ignore[attr-defined]
        b2=head.out.bias.detach().numpy().copy(),  # type: ignore[attr-defined]
    )
    final = losses[-1] if losses else initial
    log.info("head trained: loss %.4f -> %.4f over %d epochs", initial, final, settings.epochs)
    return TrainingResult(
        weights=weights,
        settings=settings,
        losses=losses,
        initial_loss=initial,
        rows=len(inputs),
        groups=int(groups.unique().numel()),
    )


def _has_positive(groups: object) -> bool:
    return bool(groups.unique().numel() < groups.numel())  # type: ignore[attr-defined]


def _batches(count: int, batch_size: int, generator: np.random.Generator) -> Sequence[np.ndarray]:
    if count <= batch_size:
        return [np.arange(count)]
    order = generator.permutation(count)
    return [order[start : start + batch_size] for start in range(0, count, batch_size)]
