"""The style vote against hand-computed cases."""

from __future__ import annotations

import pytest

from artsearch.style_vote import (
    ART,
    CATEGORY,
    LABEL_KINDS,
    NOT_ART,
    STYLE_LABELS_KEY,
    StylePrediction,
    labels_are_art,
    predict_style,
)


def test_similarity_weighted_vote_with_shares():
    # Impressionism 0.9 + 0.5 = 1.4, Cubism 0.8, Baroque 0.3: total 2.5.
    neighbours = [("Impressionism", 0.9), ("Cubism", 0.8), ("Impressionism", 0.5), ("Baroque", 0.3)]
    prediction = predict_style(neighbours)
    assert prediction.label == "Impressionism"
    assert prediction.confidence == pytest.approx(1.4 / 2.5)
    assert [label for label, _ in prediction.top] == ["Impressionism", "Cubism", "Baroque"]
    assert [share for _, share in prediction.top] == pytest.approx([0.56, 0.32, 0.12])


def test_weights_beat_counts():
    # Two weak Cubism votes (0.2 + 0.2 = 0.4) lose to one strong Ukiyo-e vote (0.9).
    prediction = predict_style([("Cubism", 0.2), ("Ukiyo-e", 0.9), ("Cubism", 0.2)])
    assert prediction.label == "Ukiyo-e"
    assert prediction.confidence == pytest.approx(0.9 / 1.3)


def test_negative_similarities_are_clipped_and_empty_labels_skipped():
    # Baroque's -0.7 counts 0; the unlabelled neighbours do not vote at all.
    neighbours = [("", 0.99), ("Baroque", -0.7), ("Rococo", 0.4), ("  ", 0.8), ("Rococo", 0.1)]
    prediction = predict_style(neighbours, top=5)
    assert prediction.label == "Rococo" and prediction.confidence == pytest.approx(1.0)
    assert prediction.top == [("Rococo", pytest.approx(1.0)), ("Baroque", 0.0)]


def test_no_labels_gives_unknown():
    assert predict_style([("", 0.9), ("", 0.8)]) == StylePrediction("unknown", 0.0, [])
    assert predict_style([]) == StylePrediction("unknown", 0.0, [])


def test_top_is_limited_and_ties_go_to_the_nearest():
    prediction = predict_style([("B", 0.5), ("A", 0.5), ("C", 0.25), ("D", 0.25)], top=2)
    assert prediction.label == "B" and prediction.confidence == pytest.approx(1 / 3)
    assert prediction.top == [("B", pytest.approx(1 / 3)), ("A", pytest.approx(1 / 3))]


def test_all_votes_zero_falls_back_to_counting_labels():
    prediction = predict_style([("Pop Art", -0.1), ("Dada", 0.0), ("Pop Art", -0.3)])
    assert prediction.label == "Pop Art" and prediction.confidence == pytest.approx(2 / 3)
    assert prediction.top == [("Pop Art", pytest.approx(2 / 3)), ("Dada", pytest.approx(1 / 3))]


def test_labels_are_trimmed_before_counting():
    prediction = predict_style([("Cubism ", 0.3), (" Cubism", 0.3), ("Fauvism", 0.4)])
    assert prediction.label == "Cubism" and prediction.confidence == pytest.approx(0.6)


def test_only_art_style_labels_vote_and_undeclared_ones_count_as_art():
    # Declared by ingest in extra["style_labels"]; records ingested before any declaration keep voting.
    assert labels_are_art({STYLE_LABELS_KEY: ART})
    assert labels_are_art({})
    assert labels_are_art({"museum": "Met"})
    assert not labels_are_art({STYLE_LABELS_KEY: CATEGORY})
    assert NOT_ART == (CATEGORY,) and set(LABEL_KINDS) == {ART, CATEGORY}
