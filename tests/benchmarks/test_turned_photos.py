"""The turned-photo rule bench/turned_photos.py measures (the measurement itself is a benchmark run)."""

from __future__ import annotations

import numpy as np

from bench.turned_photos import PhotoScores, answer, tally

# Rows: upright, turned left, turned right; columns: three paintings.
SIDEWAYS = np.array([[0.62, 0.60, 0.55], [0.50, 0.81, 0.40], [0.58, 0.66, 0.52]])
CONFIDENT = np.array([[0.90, 0.60, 0.55], [0.70, 0.50, 0.40], [0.95, 0.66, 0.52]])


def test_an_unsure_photo_whose_turned_copy_scores_clearly_better_is_answered_turned():
    assert answer(SIDEWAYS, margin=0.05, threshold=0.7) == (1, True)


def test_a_turned_copy_that_wins_by_less_than_the_margin_is_not_taken():
    assert answer(SIDEWAYS, margin=0.25, threshold=0.7) == (0, True)


def test_a_confident_photo_is_never_turned_nor_its_turned_copies_encoded():
    assert answer(CONFIDENT, margin=0.0, threshold=0.7) == (0, False)


def test_the_tally_counts_top1_and_encodes_per_kind_and_overall():
    photos = [PhotoScores("sideways", 1, SIDEWAYS), PhotoScores("phone", 0, CONFIDENT)]
    result = tally(photos, margin=0.05, threshold=0.7)
    assert result["sideways"] == {"top1": 1.0, "turned_encoded": 1.0}
    assert result["phone"] == {"top1": 1.0, "turned_encoded": 0.0}
    assert result["overall"] == {"top1": 1.0, "turned_encoded": 0.5}
    assert tally(photos, margin=0.05, threshold=float("-inf"))["sideways"]["top1"] == 0.0
