"""When the whole photo's first search answers alone (services/gateway/visual_candidates.py): a confident
match (the score set, a small lead) or a clear lead a little below that score."""

from __future__ import annotations

import pytest

from services.gateway.visual_candidates import (
    CLEAR_LEAD_ALLOWANCE,
    VisualCandidates,
    _clearly_leading,
    _confident,
)

SCORE = 0.7


def found(*visual: float) -> VisualCandidates:
    return VisualCandidates(hits=[], visual=list(visual), collection="artworks", weights={})


@pytest.mark.parametrize(
    ("visual", "confident", "clear"),
    [
        ((0.72, 0.70), True, False),  # at the score, the small lead is enough
        ((0.72, 0.705), False, False),  # two paintings matched about as well
        ((0.69, 0.61), False, True),  # below the score, a clear lead
        ((0.69, 0.63), False, False),  # below the score, a lead that is not clear
        ((SCORE - CLEAR_LEAD_ALLOWANCE - 0.005, 0.3), False, False),  # too far below, however far ahead
        ((0.80,), True, True),  # one candidate only: nothing to lead
        ((), False, False),  # nothing found
    ],
)
def test_confident_and_clearly_leading(visual, confident, clear):
    assert _confident(found(*visual), SCORE) is confident
    assert _clearly_leading(found(*visual), SCORE) is clear


def test_the_order_of_the_candidates_does_not_matter():
    assert _clearly_leading(found(0.5, 0.68, 0.60), SCORE) and not _clearly_leading(
        found(0.5, 0.68, 0.62), SCORE
    )
