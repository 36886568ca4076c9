"""The fusion formula against hand-computed cases (BRIEF.md: the original re-rank, ordering bug fixed)."""

from __future__ import annotations

import pytest

from services.gateway.fusion import (
    Candidate,
    FusionParams,
    influence_weight_for,
    rank_with_influence,
)


def by_id(ranked):
    return {r.candidate.id: r for r in ranked}


def test_same_artist_penalty_counts_in_descending_similarity():
    # Three works by the source artist: the most similar gets w=1, then 1/2, then 1/4.
    cands = [
        Candidate("c", "monet", 0.70),
        Candidate("a", "monet", 0.90),
        Candidate("b", "monet", 0.80),
    ]
    ranked = by_id(rank_with_influence(cands, "monet", {}))
    assert ranked["a"].weight == 1.0 and ranked["a"].score == pytest.approx(0.90 * 2.0)
    assert ranked["b"].weight == 0.5 and ranked["b"].score == pytest.approx(0.80 * 1.5)
    assert ranked["c"].weight == 0.25 and ranked["c"].score == pytest.approx(0.70 * 1.25)
    assert [ranked[i].same_artist_rank for i in "abc"] == [0, 1, 2]
    assert all(ranked[i].hops == 0 for i in "abc")


def test_the_original_bug_is_fixed():
    # The buggy original counted k ascending: the 0.70 work would have been boosted most (1.40 > 1.35).
    ranked = rank_with_influence([Candidate("lo", "x", 0.70), Candidate("hi", "x", 0.90)], "x", {})
    assert [r.candidate.id for r in ranked] == ["hi", "lo"]
    assert ranked[0].score == pytest.approx(1.80) and ranked[1].score == pytest.approx(1.05)


def test_hops_weights_and_unknown_and_disconnected():
    cands = [
        Candidate("src", "vangogh", 0.50),
        Candidate("h1", "gauguin", 0.60),  # 1 hop -> w = 1
        Candidate("h3", "kandinsky", 0.62),  # 3 hops -> w = 1/3
        Candidate("dis", "nobody", 0.64),  # in no hop map: not connected -> 1/100
        Candidate("unk", "", 0.66),  # no artist at all -> 1/100
    ]
    hops = {"gauguin": 1, "kandinsky": 3}
    ranked = by_id(rank_with_influence(cands, "vangogh", hops))
    assert ranked["h1"].score == pytest.approx(0.60 * 2.0) and ranked["h1"].hops == 1
    assert ranked["h3"].score == pytest.approx(0.62 * (1 + 1 / 3)) and ranked["h3"].hops == 3
    assert ranked["dis"].score == pytest.approx(0.64 * 1.01) and ranked["dis"].hops is None
    assert ranked["unk"].score == pytest.approx(0.66 * 1.01)
    assert ranked["src"].score == pytest.approx(0.50 * 2.0)
    order = [r.candidate.id for r in rank_with_influence(cands, "vangogh", hops)]
    # 1.20 (h1) > 1.00 (src) > 0.8267 (h3) > 0.6666 (unk) > 0.6464 (dis)
    assert order == ["h1", "src", "h3", "unk", "dis"]


def test_no_source_artist_gives_every_candidate_the_unrelated_weight():
    cands = [Candidate("a", "x", 0.9), Candidate("b", "x", 0.8)]
    ranked = rank_with_influence(cands, None, {"x": 1})
    assert [r.weight for r in ranked] == [0.01, 0.01]
    assert [r.candidate.id for r in ranked] == ["a", "b"]


def test_constants_are_parameters_and_weight_zero_turns_rerank_off():
    cands = [Candidate("a", "x", 0.9), Candidate("b", "y", 0.95)]
    off = rank_with_influence(cands, "x", {"y": 1}, FusionParams(influence_weight=0.0))
    assert [r.candidate.id for r in off] == ["b", "a"]
    assert [r.score for r in off] == pytest.approx([0.95, 0.9])
    custom = by_id(
        rank_with_influence(cands, "x", {}, FusionParams(unrelated_weight=0.5, same_artist_base=4))
    )
    assert custom["b"].score == pytest.approx(0.95 * 1.5)
    assert influence_weight_for(None, 2, FusionParams(same_artist_base=4)) == pytest.approx(1 / 16)


def test_hop_zero_for_another_key_is_ignored():
    # Only the source artist's own key counts as "same artist"; a stray 0 in the map is not trusted.
    ranked = rank_with_influence([Candidate("a", "y", 0.5)], "x", {"y": 0})
    assert ranked[0].weight == 0.01 and ranked[0].hops is None


def test_influence_weight_scales_every_w_i():
    # score = s * (1 + p * w): same artist w=1, one hop w=1, two hops w=1/2, unrelated w=1/100.
    cands = [
        Candidate("same", "x", 0.50),
        Candidate("h1", "y", 0.55),
        Candidate("h2", "z", 0.60),
        Candidate("far", "q", 0.80),
    ]
    hops = {"y": 1, "z": 2}
    for p in (0.5, 1.0, 2.0, 10.0):
        ranked = by_id(rank_with_influence(cands, "x", hops, FusionParams(influence_weight=p)))
        assert ranked["same"].score == pytest.approx(0.50 * (1 + p))
        assert ranked["h1"].score == pytest.approx(0.55 * (1 + p))
        assert ranked["h2"].score == pytest.approx(0.60 * (1 + p / 2))
        assert ranked["far"].score == pytest.approx(0.80 * (1 + p / 100))
        # w_i itself does not depend on the weight: the explanation shows both.
        assert [ranked[i].weight for i in ("same", "h1", "h2", "far")] == [1.0, 1.0, 0.5, 0.01]


def test_a_larger_influence_weight_lets_influence_overtake_visual_similarity():
    cands = [Candidate("far", "q", 0.80), Candidate("h2", "z", 0.60), Candidate("h1", "y", 0.55)]
    hops = {"y": 1, "z": 2}

    def order(p: float) -> list[str]:
        return [
            r.candidate.id for r in rank_with_influence(cands, "x", hops, FusionParams(influence_weight=p))
        ]

    assert order(0.0) == ["far", "h2", "h1"]
    # p = 0.5: far 0.804, h2 0.75, h1 0.825 -> h1 first.
    assert order(0.5) == ["h1", "far", "h2"]
    # p = 2: far 0.816, h2 1.20, h1 1.65.
    assert order(2.0) == ["h1", "h2", "far"]


def test_default_influence_weight_is_the_brief_formula():
    assert FusionParams().influence_weight == 1.0
    default = rank_with_influence([Candidate("a", "x", 0.9), Candidate("b", "y", 0.8)], "x", {"y": 2})
    explicit = rank_with_influence(
        [Candidate("a", "x", 0.9), Candidate("b", "y", 0.8)],
        "x",
        {"y": 2},
        FusionParams(influence_weight=1.0),
    )
    assert [r.score for r in default] == [r.score for r in explicit] == pytest.approx([1.8, 0.8 * 1.5])
