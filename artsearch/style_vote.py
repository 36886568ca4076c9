"""Predicts an image's style from its nearest catalogue neighbours: a similarity-weighted vote.

Each neighbour with a style label votes for it with its cosine similarity (negative similarities count as
0). The winner is the label with the most votes; its confidence is its share of all the votes. A catalogue
without style labels gives "unknown" with confidence 0. When every labelled neighbour has a similarity of 0
or less, each of them counts once instead (there is still a best guess, from the labels alone).

Only labels that are art styles vote. Each catalogue declares at ingest what its `style` labels are
(`style_labels`: ART for art styles such as "Ukiyo-e"; CATEGORY for subject categories such as clip art's
"computer/icons", a stamp set's "animals"), and ingest stores the declaration with every artwork under
extra[STYLE_LABELS_KEY]. An artwork stored without a declaration (ingested before there was one) counts as
art, as every label did before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

UNKNOWN = "unknown"

# The `extra` key of a stored artwork holding its catalogue's declared label kind.
STYLE_LABELS_KEY = "style_labels"
ART = "art"
CATEGORY = "category"
LABEL_KINDS = (ART, CATEGORY)
# The kinds whose labels never vote (what the search filter `exclude_style_labels` is sent).
NOT_ART = (CATEGORY,)


def labels_are_art(extra: Mapping[str, str]) -> bool:
    """Whether an artwork's style label is an art style, from its stored `extra` (undeclared: yes)."""
    return extra.get(STYLE_LABELS_KEY, ART) not in NOT_ART


@dataclass(frozen=True)
class StylePrediction:
    label: str
    # The winner's share of the vote, in [0, 1]; 0 for "unknown".
    confidence: float
    # The best labels with their share of the vote, best first (the first is `label`).
    top: list[tuple[str, float]]


def predict_style(neighbours: Sequence[tuple[str, float]], top: int = 3) -> StylePrediction:
    """`neighbours` are (style label, cosine similarity) of the nearest catalogue artworks. Ties between
    labels go to the one first seen in `neighbours` (the nearest, when they are sorted)."""
    labelled = [(label.strip(), similarity) for label, similarity in neighbours if label and label.strip()]
    if not labelled:
        return StylePrediction(UNKNOWN, 0.0, [])
    votes: dict[str, float] = {}
    for label, similarity in labelled:
        votes[label] = votes.get(label, 0.0) + max(0.0, float(similarity))
    if sum(votes.values()) <= 0.0:
        votes = dict.fromkeys(votes, 0.0)
        for label, _ in labelled:
            votes[label] += 1.0
    total = sum(votes.values())
    # sorted() is stable: equal votes keep the order labels were first seen in.
    ranked = sorted(votes.items(), key=lambda item: item[1], reverse=True)
    shares = [(label, count / total) for label, count in ranked[: max(0, top)]]
    winner, winner_votes = ranked[0]
    return StylePrediction(winner, winner_votes / total, shares)
