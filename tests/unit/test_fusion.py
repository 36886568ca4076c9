"""The fusion formula against hand-computed cases (BRIEF.md: the original re-rank, ordering bug fixed)."""

from __future__ import annotations

import pytest

from services.gateway.fusion import (
    Candidate,
    FusionParams,
    SourceVoteParams,
    effective_confidence,
    influence_weight_for,
    rank_with_influence,
    vote_source_artist,
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


# --- the source-artist vote and the confidence-scaled boost ------------------------------------------------


def test_the_vote_outweighs_a_single_most_similar_candidate():
    # A Hokusai photo whose most similar candidate is a Hiroshige: with T = 0.05, weights exp((s - 0.90)/0.05)
    # hiroshige 1 + e^-4 (0.78) = 1.018316; hokusai e^-0.4 + e^-0.8 + e^-1.2 = 0.670320 + 0.449329 +
    # 0.301194 = 1.420843; total 2.439159 -> hokusai 0.582514, hiroshige 0.417486.
    candidates = [
        Candidate("hiroshige-1", "hiroshige", 0.90),
        Candidate("hokusai-1", "hokusai", 0.88),
        Candidate("hokusai-2", "hokusai", 0.86),
        Candidate("hokusai-3", "hokusai", 0.84),
        Candidate("hiroshige-2", "hiroshige", 0.70),
        Candidate("clip-art", "", 0.95),  # no artist: does not vote
    ]
    vote = vote_source_artist(candidates, SourceVoteParams(top=10, temperature=0.05))
    assert vote.winner == "hokusai"
    assert vote.confidence == pytest.approx(0.582514, abs=1e-6)
    assert vote.runner_up == ("hiroshige", pytest.approx(0.417486, abs=1e-6))
    assert vote.voters == 5


def test_temperature_zero_is_the_nearest_rule_and_top_limits_the_voters():
    candidates = [Candidate("a", "x", 0.9), Candidate("b", "y", 0.8), Candidate("c", "y", 0.7)]
    nearest = vote_source_artist(candidates, SourceVoteParams(top=10, temperature=0.0))
    assert (nearest.winner, nearest.confidence, nearest.runner_up) == ("x", 1.0, ("y", 0.0))
    # Only the most similar candidate votes: it wins with all of the votes.
    alone = vote_source_artist(candidates, SourceVoteParams(top=1, temperature=1.0))
    assert (alone.winner, alone.confidence, alone.voters) == ("x", 1.0, 1)
    # A very high temperature counts heads: y has two of three (e^-0.1/T ~ e^-0.2/T ~ 1).
    flat = vote_source_artist(candidates, SourceVoteParams(top=3, temperature=1e6))
    assert flat.winner == "y" and flat.confidence == pytest.approx(2 / 3)


def test_a_tie_goes_to_the_more_similar_artist_and_no_artists_means_no_vote():
    tie = vote_source_artist(
        [Candidate("a", "x", 0.5), Candidate("b", "y", 0.5)], SourceVoteParams(temperature=0.1)
    )
    assert (tie.winner, tie.confidence) == ("x", 0.5)
    empty = vote_source_artist([Candidate("a", "", 0.9)])
    assert (empty.winner, empty.confidence, empty.runner_up, empty.voters) == (None, 0.0, None, 0)


def test_the_boost_is_scaled_by_the_confidence():
    # score = s * (1 + influence_weight * c * w): c = 0.6, influence weight 2.
    candidates = [Candidate("same", "x", 0.50), Candidate("h2", "z", 0.60), Candidate("far", "q", 0.80)]
    params = FusionParams(influence_weight=2.0, source_confidence=0.6)
    ranked = by_id(rank_with_influence(candidates, "x", {"z": 2}, params))
    assert ranked["same"].score == pytest.approx(0.50 * (1 + 1.2))  # w = 1
    assert ranked["h2"].score == pytest.approx(0.60 * (1 + 1.2 * 0.5))  # w = 1/2
    assert ranked["far"].score == pytest.approx(0.80 * (1 + 1.2 * 0.01))  # w = 1/100
    assert params.boost == pytest.approx(1.2)
    # c = 0: the visual order, scores the visual similarities.
    off = rank_with_influence(candidates, "x", {"z": 2}, FusionParams(source_confidence=0.0))
    assert [r.candidate.id for r in off] == ["far", "h2", "same"]
    assert [r.score for r in off] == pytest.approx([0.80, 0.60, 0.50])


def test_under_the_threshold_the_confidence_is_zero():
    assert effective_confidence(0.58, 0.5) == 0.58
    assert effective_confidence(0.42, 0.5) == 0.0
    assert effective_confidence(0.42, 0.5, 0.1) == 0.0
    assert effective_confidence(0.0, 0.0) == 0.0
    assert effective_confidence(1.0, 1.0) == 1.0


def test_the_confidence_applied_is_the_lead_over_the_runner_up():
    # A clear vote keeps nearly all of its share; a vote split between two painters boosts next to nothing.
    assert effective_confidence(0.9, 0.3, 0.05) == pytest.approx(0.85)
    assert effective_confidence(0.41, 0.3, 0.38) == pytest.approx(0.03)
    assert effective_confidence(0.5, 0.3, 0.5) == 0.0  # a tie (the more similar artist won it)


def test_a_split_vote_no_longer_pushes_the_best_match_out():
    # The turned photo of a Bazille (bench/results/visitor_photos.json before the lead): its painting is the
    # best visual match, the vote 0.41 Van Gogh / 0.38 Bazille, Bazille outside the influence graph's reach.
    candidates = [
        Candidate("bazille", "bazille", 0.647),
        Candidate("bedroom", "van gogh", 0.602),
        Candidate("wave", "hokusai", 0.579),
    ]
    hops = {"van gogh": 0, "hokusai": 1}

    def first(c: float) -> str:
        ranked = rank_with_influence(candidates, "van gogh", hops, FusionParams(source_confidence=c))
        return ranked[0].candidate.id

    assert first(effective_confidence(0.41, 0.3)) == "bedroom"  # the share: the painting loses first place
    assert first(effective_confidence(0.41, 0.3, 0.38)) == "bazille"  # the lead: it keeps it
