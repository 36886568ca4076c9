"""Evaluation plumbing on tiny synthetic data: metrics (hand-computed), chance (against simulation),
category selection, the baseline, the weight grid and its selection rule, and the cached described sets."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artsearch_tools.evaluation import datasets
from artsearch_tools.evaluation.baselines import rgb_histogram
from artsearch_tools.evaluation.descriptors import (
    CategoryTask,
    DescribedSet,
    GalleryTask,
    choose_weights,
    fused,
    meets_targets,
    simplex_grid,
)
from artsearch_tools.evaluation.metrics import (
    average_precision,
    chance_average_precision,
    chance_leave_one_out,
    chance_top_k,
    first_match_ranks,
    leave_one_out_retrieval,
    top_k_accuracy,
)


class TestQueryToGallery:
    # 3 queries x 4 gallery items; the gallery labels are a, b, c, d.
    SIMILARITY = np.array(
        [
            [0.9, 0.1, 0.2, 0.3],  # label a: first
            [0.8, 0.1, 0.7, 0.6],  # label b: fourth
            [0.5, 0.5, 0.9, 0.1],  # label d: fourth
        ]
    )
    GALLERY = ["a", "b", "c", "d"]

    def test_ranks_and_top_k(self):
        ranks = first_match_ranks(self.SIMILARITY, ["a", "b", "d"], self.GALLERY)
        np.testing.assert_array_equal(ranks, [1, 4, 4])
        assert top_k_accuracy(self.SIMILARITY, ["a", "b", "d"], self.GALLERY, ks=(1, 3, 4)) == {
            1: pytest.approx(1 / 3),
            3: pytest.approx(1 / 3),
            4: 1.0,
        }

    def test_a_label_missing_from_the_gallery_is_never_found(self):
        ranks = first_match_ranks(self.SIMILARITY, ["a", "z", "d"], self.GALLERY)
        assert ranks[1] == 0
        assert top_k_accuracy(self.SIMILARITY, ["a", "z", "d"], self.GALLERY, ks=(4,)) == {
            4: pytest.approx(2 / 3)
        }

    def test_ties_go_to_the_earlier_gallery_item(self):
        similarity = np.array([[0.5, 0.5, 0.5]])
        assert first_match_ranks(similarity, ["b"], ["a", "b", "c"])[0] == 2

    def test_shape_mismatch_is_refused(self):
        with pytest.raises(ValueError, match="labels are 2 x 4"):
            first_match_ranks(self.SIMILARITY, ["a", "b"], self.GALLERY)


class TestLeaveOneOut:
    def test_average_precision_by_hand(self):
        assert average_precision(np.array([True, False, True, False])) == pytest.approx((1 + 2 / 3) / 2)
        assert average_precision(np.array([False, False, True])) == pytest.approx(1 / 3)
        with pytest.raises(ValueError):
            average_precision(np.array([False, False]))

    def test_map_and_precision_by_hand(self):
        # Items 0, 1, 2 are "x", 3 is "y", 4 is "z" (alone: not a query, still a distractor).
        similarity = np.array(
            [
                [1.0, 0.9, 0.2, 0.5, 0.3],  # 0: x x | ranks 1 (x), 2 (y), 3 (z), 4 (x) → AP (1 + 2/4)/2
                [0.9, 1.0, 0.8, 0.1, 0.2],  # 1: ranks 0 (x), 2 (x) → AP 1
                [0.2, 0.8, 1.0, 0.3, 0.9],  # 2: ranks 4 (z), 1 (x), 3, 0 (x) → AP (1/2 + 2/4)/2
                [0.5, 0.1, 0.3, 1.0, 0.0],  # 3: y has no other y
                [0.3, 0.2, 0.9, 0.0, 1.0],
            ]
        )
        scores = leave_one_out_retrieval(similarity, ["x", "x", "x", "y", "z"], k=2)
        assert scores.queries == 3
        assert scores.mean_average_precision == pytest.approx(((1 + 0.5) / 2 + 1 + (0.5 + 0.5) / 2) / 3)
        assert scores.precision_at_k == pytest.approx((1 / 2 + 2 / 2 + 1 / 2) / 3)

    def test_perfect_ranking_scores_one(self):
        labels = ["a", "a", "b", "b", "b"]
        codes = np.array([0, 0, 1, 1, 1])
        similarity = (codes[:, None] == codes[None, :]).astype(float)
        scores = leave_one_out_retrieval(similarity, labels, k=1)
        assert (scores.mean_average_precision, scores.precision_at_k) == (1.0, 1.0)

    def test_nothing_to_retrieve_is_an_error(self):
        with pytest.raises(ValueError, match="nothing to retrieve"):
            leave_one_out_retrieval(np.eye(3), ["a", "b", "c"])


class TestChance:
    def test_top_k(self):
        assert chance_top_k(36, 1) == pytest.approx(1 / 36)
        assert chance_top_k(36, 5) == pytest.approx(5 / 36)
        assert chance_top_k(10, 3, matches_per_query=2) == pytest.approx(1 - (8 * 7 * 6) / (10 * 9 * 8))
        assert chance_top_k(4, 10) == 1.0

    @pytest.mark.parametrize(("candidates", "relevant"), [(10, 1), (12, 4), (30, 29)])
    def test_expected_average_precision_matches_simulation(self, candidates, relevant):
        rng = np.random.default_rng(candidates)
        relevant_mask = np.zeros(candidates, dtype=bool)
        relevant_mask[:relevant] = True
        simulated = np.mean([average_precision(rng.permutation(relevant_mask)) for _ in range(20000)])
        assert chance_average_precision(candidates, relevant) == pytest.approx(simulated, abs=0.01)

    def test_expected_leave_one_out_matches_random_rankings(self):
        labels = ["a"] * 4 + ["b"] * 3 + ["c"] * 2 + ["d"]
        rng = np.random.default_rng(0)
        runs = [leave_one_out_retrieval(rng.random((10, 10)), labels, k=3) for _ in range(3000)]
        expected = chance_leave_one_out(labels, k=3)
        assert expected.queries == 9
        assert expected.mean_average_precision == pytest.approx(
            np.mean([r.mean_average_precision for r in runs]), abs=0.01
        )
        assert expected.precision_at_k == pytest.approx(np.mean([r.precision_at_k for r in runs]), abs=0.01)


class TestCategorySelection:
    @pytest.fixture()
    def tree(self, tmp_path):
        sizes = {"animals/birds": 12, "animals/fish": 3, "food": 30, "food/fruit/apples": 11}
        for folder, count in sizes.items():
            (tmp_path / folder).mkdir(parents=True)
            for index in range(count):
                Image.new("RGB", (10, 10), (index * 7 % 256, 50, 90)).save(
                    tmp_path / folder / f"{index:02d}.png"
                )
        (tmp_path / "food" / "notes.txt").write_text("not an image")
        return tmp_path

    def test_labels_are_the_first_two_folder_levels(self):
        assert datasets.category_label(Path("animals/birds/owl.png")) == "animals/birds"
        assert datasets.category_label(Path("food/fruit/apples/a.png")) == "food/fruit"
        assert datasets.category_label(Path("food/a.png")) == "food"

    def test_small_categories_are_dropped_and_large_ones_sampled_evenly(self, tree):
        selection = datasets.select_category_files(tree, min_per_category=10, max_images=30, seed=1)
        counts = {}
        for _, label in selection.files:
            counts[label] = counts.get(label, 0) + 1
        # cap 10: 10 + 10 + 10 fits 30; every category keeps min(size, cap)
        assert counts == {"animals/birds": 10, "food": 10, "food/fruit": 10}
        assert (selection.total_files, selection.categories, selection.dropped_small_categories) == (56, 3, 1)
        assert selection.sampled
        again = datasets.select_category_files(tree, min_per_category=10, max_images=30, seed=1)
        other = datasets.select_category_files(tree, min_per_category=10, max_images=30, seed=2)
        assert again.files == selection.files
        assert other.files != selection.files

    def test_everything_is_kept_when_it_fits(self, tree):
        selection = datasets.select_category_files(tree, min_per_category=3, max_images=None)
        assert len(selection.files) == 56
        assert not selection.sampled

    def test_stratified_cap(self):
        assert datasets.stratified_cap({"a": 5, "b": 50, "c": 50}, 45) == 20
        assert datasets.stratified_cap({"a": 5, "b": 6}, 100) == 6

    def test_images_over_the_pixel_cap_are_skipped(self, tree):
        big = tree / "food" / "zz-big.png"
        Image.new("RGB", (300, 300)).save(big)
        selection = datasets.select_category_files(tree, min_per_category=10, max_images=None)
        images = list(datasets.category_images(selection, tree, max_pixels=20_000))
        assert len(images) == len(selection.files) - 1
        assert all(image.pixels.shape == (224, 224, 3) for image in images)
        assert "food/zz-big.png" not in {image.id for image in images}


def test_baseline_histogram_is_unit_length_and_sees_every_pixel():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(3, 20, 20, 3), dtype=np.uint8)
    pixels[2] = 255  # all white counts too, unlike the descriptor's colour aspect
    rows = rgb_histogram(pixels)
    assert rows.shape == (3, 512)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-6)
    assert rows[2, 511] == pytest.approx(1.0)


def described(
    labels: list[str], vectors: dict[str, np.ndarray], kinds: list[str] | None = None
) -> DescribedSet:
    return DescribedSet(
        ids=np.array([f"item{i}" for i in range(len(labels))]),
        labels=np.array(labels),
        kinds=np.array(kinds or ["jigsaw"] * len(labels)),
        vectors={name: values.astype(np.float32) for name, values in vectors.items()},
    )


class TestWeightingTasks:
    def test_which_aspect_counts_decides_what_a_query_finds(self):
        # Gallery: painting "p" and "q". The query's content matches q, its colour matches p.
        gallery = described(["p", "q"], {"content": np.array([[1.0, 0], [0, 1]]), "colour": np.eye(2)})
        queries = described(["p"], {"content": np.array([[0.0, 1.0]]), "colour": np.array([[1.0, 0.0]])})
        task = GalleryTask("detail", queries, gallery)
        assert task.score({"content": 1.0})["top1"] == 0.0
        assert task.score({"colour": 1.0})["top1"] == 1.0
        assert task.score({"content": 0.3, "colour": 0.7})["top1"] == 1.0
        assert task.score({"colour": 1.0})["by_kind"] == {"jigsaw": {"queries": 1, "top1": 1.0, "top5": 1.0}}
        assert task.chance() == {"queries": 1, "top1": 0.5, "top5": 1.0}

    def test_category_task_scores_the_fused_similarity(self):
        content = np.array([[1.0, 0], [1, 0], [0, 1], [0, 1]])
        mixed = np.array([[1.0, 0], [0, 1], [1, 0], [0, 1]])  # puts one "a" with one "b"
        items = described(["a", "a", "b", "b"], {"content": content, "colour": mixed})
        task = CategoryTask("toy", items, k=1)
        assert task.score({"content": 1.0})["map"] == 1.0
        assert task.score({"colour": 1.0})["map"] < 1.0
        np.testing.assert_allclose(
            fused(task.similarities, {"content": 0.5, "colour": 0.5}),
            0.5 * task.similarities["content"] + 0.5 * task.similarities["colour"],
        )

    def test_simplex_grid(self):
        grid = simplex_grid(["content", "style", "colour"], 0.1)
        assert len(grid) == 66
        assert all(math.isclose(sum(w.values()), 1.0) for w in grid)
        assert {"content": 0.2, "style": 0.6, "colour": 0.2} in grid
        assert len(simplex_grid(["a", "b"], 0.5)) == 3
        with pytest.raises(ValueError, match="does not divide 1"):
            simplex_grid(["a", "b"], 0.3)

    def test_selection_keeps_the_targets_then_prefers_paintings(self):
        def scores(detail: float, photos: float, clipart: float, stamps: float) -> dict:
            return {
                "detail": {"top1": detail},
                "photos": {"top1": photos},
                "openclipart": {"map": clipart},
                "tuxpaint": {"map": stamps},
            }

        content_only = scores(0.5, 1.0, 0.20, 0.50)
        grid = [
            ({"w": 1}, scores(0.95, 0.99, 0.19, 0.55)),  # best paintings, but clip art below content: out
            ({"w": 2}, scores(0.90, 0.98, 0.21, 0.52)),
            ({"w": 3}, scores(0.90, 0.98, 0.22, 0.53)),  # same paintings, better categories: chosen
            ({"w": 4}, scores(0.80, 1.00, 0.30, 0.60)),  # detail below 0.85: out
        ]
        assert not meets_targets(grid[0][1], content_only)
        assert choose_weights(grid, content_only) == ({"w": 3}, True)
        assert choose_weights(grid[:1], content_only) == ({"w": 1}, False)

    def test_painting_scores_within_the_tolerance_tie_and_categories_decide(self):
        def scores(detail: float, photos: float, clipart: float) -> dict:
            return {"detail": {"top1": detail}, "photos": {"top1": photos}, "openclipart": {"map": clipart}}

        content_only = scores(0.5, 1.0, 0.20)
        grid = [
            ({"w": 1}, scores(0.930, 0.970, 0.21)),  # best at paintings (0.950)
            ({"w": 2}, scores(0.906, 0.990, 0.25)),  # 0.002 behind, much better at categories
            ({"w": 3}, scores(0.900, 0.980, 0.30)),  # 0.010 behind: not a tie
        ]
        assert choose_weights(grid, content_only, tie_tolerance=0.0) == ({"w": 1}, True)
        assert choose_weights(grid, content_only, tie_tolerance=0.004) == ({"w": 2}, True)
        assert choose_weights(grid, content_only, tie_tolerance=0.02) == ({"w": 3}, True)


def test_described_set_survives_the_cache_file(tmp_path):
    original = described(
        ["a", "b"], {"content": np.eye(2), "colour_histogram": np.ones((2, 3)) / math.sqrt(3)}
    )
    original.save(tmp_path / "set.npz")
    loaded = DescribedSet.load(tmp_path / "set.npz")
    assert list(loaded.ids) == ["item0", "item1"] and list(loaded.labels) == ["a", "b"]
    assert set(loaded.vectors) == {"content", "colour_histogram"}
    np.testing.assert_array_equal(loaded.vectors["content"], original.vectors["content"])
