"""The descriptor: its layout, how a query re-weights aspects (artsearch.descriptor_layout), and how the
encoder assembles content, style and colour (services.encoder.aspect_builder)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from artsearch.config import ConfigError
from artsearch.descriptor_layout import (
    Aspect,
    DescriptorLayout,
    aspect_similarities,
    assemble,
    query_weights,
    reweight_query,
    unit_rows,
)
from artsearch.v1 import encoder_pb2
from services.encoder import aspect_builder as encoder_descriptor
from services.encoder.aspect_builder import (
    COLOUR_BINS,
    DEFAULT_WEIGHTS,
    DescriptorAssembler,
    colour_part,
    descriptor_layout,
)
from services.encoder.backends import EmbeddingModelInfo

LAYOUT = DescriptorLayout.build(
    [("content", 4), ("style", 3), ("colour", 5)], {"content": 0.5, "style": 0.3, "colour": 0.2}
)


def random_parts(rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    return {a.name: rng.normal(size=(rows, a.length)).astype(np.float32) for a in LAYOUT.aspects}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


class TestLayout:
    def test_build_lays_aspects_end_to_end(self):
        assert [(a.name, a.offset, a.length) for a in LAYOUT.aspects] == [
            ("content", 0, 4),
            ("style", 4, 3),
            ("colour", 7, 5),
        ]
        assert LAYOUT.dimension == 12
        assert LAYOUT.names == ("content", "style", "colour")
        assert LAYOUT.aspect("style").span == slice(4, 7)
        with pytest.raises(KeyError, match="no aspect 'texture'"):
            LAYOUT.aspect("texture")

    def test_round_trips_through_model_info_with_float32_weights(self):
        info = encoder_pb2.ModelInfo(dimension=12, aspects=LAYOUT.to_proto())
        layout = DescriptorLayout.from_model_info(info)
        assert layout.names == LAYOUT.names
        assert [(a.offset, a.length) for a in layout.aspects] == [
            (a.offset, a.length) for a in LAYOUT.aspects
        ]
        np.testing.assert_allclose(list(layout.default_weights.values()), [0.5, 0.3, 0.2], rtol=1e-6)

    def test_model_info_without_aspects_is_one_content_aspect(self):
        layout = DescriptorLayout.from_model_info(encoder_pb2.ModelInfo(dimension=1280))
        assert layout.aspects == (Aspect("content", 0, 1280, 1.0),)

    def test_model_info_whose_dimension_disagrees_is_refused(self):
        with pytest.raises(ValueError, match="aspects cover 12 values, model info says 13"):
            DescriptorLayout.from_model_info(encoder_pb2.ModelInfo(dimension=13, aspects=LAYOUT.to_proto()))

    @pytest.mark.parametrize(
        ("aspects", "message"),
        [
            ((), "at least one aspect"),
            ((Aspect("a", 0, 2, 0.5), Aspect("a", 2, 2, 0.5)), "unique"),
            ((Aspect("a", 0, 2, 0.5), Aspect("b", 3, 2, 0.5)), "consecutive"),
            ((Aspect("a", 0, 0, 1.0),), "consecutive"),
            ((Aspect("a", 0, 2, 0.7), Aspect("b", 2, 2, 0.7)), "sum to 1.400000"),
            ((Aspect("a", 0, 2, -0.5), Aspect("b", 2, 2, 1.5)), "default weight -0.5"),
        ],
    )
    def test_invalid_layouts_are_refused(self, aspects, message):
        with pytest.raises(ValueError, match=message):
            DescriptorLayout(aspects)

    def test_build_needs_a_weight_for_every_aspect_and_no_other(self):
        with pytest.raises(ValueError, match=r"missing \['b'\], unknown \['c'\]"):
            DescriptorLayout.build([("a", 2), ("b", 2)], {"a": 1.0, "c": 0.0})


class TestAssembleAndReweight:
    def test_stored_descriptors_are_unit_length_and_dot_is_the_weighted_sum_of_aspect_cosines(self):
        rng = np.random.default_rng(0)
        parts_a, parts_b = random_parts(rng, 3), random_parts(rng, 3)
        a, b = assemble(parts_a, LAYOUT), assemble(parts_b, LAYOUT)
        np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
        for row in range(3):
            expected = sum(
                aspect.default_weight * cosine(parts_a[aspect.name][row], parts_b[aspect.name][row])
                for aspect in LAYOUT.aspects
            )
            assert a[row] @ b[row] == pytest.approx(expected, abs=1e-6)

    def test_assemble_checks_shapes(self):
        parts = random_parts(np.random.default_rng(1), 2)
        with pytest.raises(ValueError, match=r"no values for aspects \['colour'\]"):
            assemble({k: v for k, v in parts.items() if k != "colour"}, LAYOUT)
        with pytest.raises(ValueError, match="'style' has shape"):
            assemble({**parts, "style": np.zeros((2, 4))}, LAYOUT)
        with pytest.raises(ValueError, match="different numbers of rows"):
            assemble({**parts, "style": np.zeros((3, 3))}, LAYOUT)

    @pytest.mark.parametrize(
        "wanted",
        [{"content": 1.0}, {"colour": 2.0, "style": 2.0}, {"content": 0.1, "style": 0.1, "colour": 0.8}],
    )
    def test_a_reweighted_query_scores_the_wanted_weighted_sum(self, wanted):
        rng = np.random.default_rng(2)
        query_parts, stored_parts = random_parts(rng, 1), random_parts(rng, 5)
        query, stored = assemble(query_parts, LAYOUT)[0], assemble(stored_parts, LAYOUT)
        reweighted = reweight_query(query, LAYOUT, wanted)
        total = sum(wanted.values())
        for row in range(5):
            expected = sum(
                weight / total * cosine(query_parts[name][0], stored_parts[name][row])
                for name, weight in wanted.items()
            )
            assert reweighted @ stored[row] == pytest.approx(expected, abs=1e-5)

    def test_reweighting_to_the_defaults_gives_the_query_back(self):
        query = assemble(random_parts(np.random.default_rng(3), 1), LAYOUT)[0]
        np.testing.assert_allclose(reweight_query(query, LAYOUT, LAYOUT.default_weights), query, atol=1e-6)

    def test_one_aspect_query_ranks_by_that_aspect_alone(self):
        rng = np.random.default_rng(4)
        query_parts, stored_parts = random_parts(rng, 1), random_parts(rng, 20)
        stored = assemble(stored_parts, LAYOUT)
        reweighted = reweight_query(assemble(query_parts, LAYOUT)[0], LAYOUT, {"style": 1.0})
        by_style = np.argsort(-(unit_rows(stored_parts["style"]) @ unit_rows(query_parts["style"])[0]))
        np.testing.assert_array_equal(np.argsort(-(stored @ reweighted)), by_style)

    def test_several_queries_at_once(self):
        queries = assemble(random_parts(np.random.default_rng(5), 3), LAYOUT)
        together = reweight_query(queries, LAYOUT, {"colour": 1.0})
        for row in range(3):
            np.testing.assert_allclose(together[row], reweight_query(queries[row], LAYOUT, {"colour": 1.0}))

    @pytest.mark.parametrize(
        ("weights", "message"),
        [
            ({"texture": 1.0}, "unknown aspects"),
            ({"content": -1.0}, "finite and >= 0"),
            ({"content": float("nan")}, "finite and >= 0"),
            ({"content": 0.0}, "at least one"),
            ({}, "at least one"),
        ],
    )
    def test_bad_weights_are_refused(self, weights, message):
        with pytest.raises(ValueError, match=message):
            query_weights(LAYOUT, weights)

    def test_an_aspect_not_stored_cannot_be_asked_for(self):
        layout = DescriptorLayout.build([("a", 2), ("b", 2)], {"a": 1.0, "b": 0.0})
        with pytest.raises(ValueError, match="default weight 0"):
            reweight_query(np.ones(4), layout, {"b": 1.0})
        assert query_weights(layout, {"a": 3.0}) == {"a": 1.0, "b": 0.0}

    def test_query_of_the_wrong_width_is_refused(self):
        with pytest.raises(ValueError, match="vector has 11 values, the layout 12"):
            reweight_query(np.ones(11), LAYOUT, {"content": 1.0})

    def test_aspect_similarities_are_per_aspect_cosines_for_stored_and_reweighted_queries(self):
        rng = np.random.default_rng(6)
        query_parts, stored_parts = random_parts(rng, 1), random_parts(rng, 4)
        query, stored = assemble(query_parts, LAYOUT)[0], assemble(stored_parts, LAYOUT)
        single = aspect_similarities(query, stored[2], LAYOUT)
        batch = aspect_similarities(
            reweight_query(query, LAYOUT, {"content": 1, "colour": 1}), stored, LAYOUT
        )
        for name in LAYOUT.names:
            expected = cosine(query_parts[name][0], stored_parts[name][2])
            assert single[name] == pytest.approx(expected, abs=1e-5)
            assert isinstance(single[name], float)
            if name != "style":  # weight 0 in the re-weighted query: its part is empty
                assert batch[name][2] == pytest.approx(expected, abs=1e-5)
        np.testing.assert_array_equal(batch["style"], np.zeros(4))

    def test_unit_rows_leaves_a_zero_row_zero(self):
        np.testing.assert_allclose(unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]])), [[0.6, 0.8], [0.0, 0.0]])


def model_info(
    outputs: tuple[tuple[str, int], ...] = (("features", 1280), ("style", 384)),
) -> EmbeddingModelInfo:
    return EmbeddingModelInfo(
        name="test",
        version="v1",
        dimension=1280,
        input_size=224,
        input_name="pixels",
        features_output="features",
        onnx_sha256="0" * 64,
        backend="onnxruntime",
        outputs=outputs,
    )


def solid(colour: tuple[int, int, int], size: int = 16) -> np.ndarray:
    return np.broadcast_to(np.array(colour, dtype=np.uint8), (size, size, 3)).copy()


class TestEncoderDescriptor:
    def test_default_weights_are_positive_and_sum_to_one(self):
        assert set(DEFAULT_WEIGHTS) == {"content", "style", "colour"}
        assert all(weight > 0 for weight in DEFAULT_WEIGHTS.values())
        assert math.isclose(sum(DEFAULT_WEIGHTS.values()), 1.0)

    def test_default_weights_are_the_ones_the_published_evaluation_chose(self, repo_root: Path):
        published = json.loads((repo_root / "bench/results/descriptors.json").read_text())
        assert published["selection"]["chosen"] == pytest.approx(dict(DEFAULT_WEIGHTS))
        assert published["selection"]["meets_targets"]
        assert published["model"]["descriptor_revision"] == encoder_descriptor.DESCRIPTOR_REVISION

    def test_layout_follows_the_model_outputs(self):
        layout = descriptor_layout(model_info())
        assert [(a.name, a.offset, a.length) for a in layout.aspects] == [
            ("content", 0, 1280),
            ("style", 1280, 384),
            ("colour", 1664, COLOUR_BINS),
        ]
        assert layout.default_weights == dict(DEFAULT_WEIGHTS)

    def test_a_model_without_the_style_output_is_refused(self):
        with pytest.raises(ConfigError, match=r"no output \['style'\].*re-export"):
            descriptor_layout(model_info(outputs=(("features", 1280),)))

    def test_colour_ignores_white_and_is_a_unit_hellinger_histogram(self):
        red, white = solid((200, 30, 30)), solid((255, 255, 255))
        half_white = np.concatenate([red[:8], white[:8]])
        near_white = solid((240, 240, 240))
        rows = colour_part(np.stack([red, half_white, white, near_white]))
        assert rows.shape == (4, COLOUR_BINS)
        np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-6)
        np.testing.assert_array_equal(rows[0], rows[1])  # white is background: the red is all that counts
        assert rows[2] @ rows[3] == pytest.approx(
            1.0
        )  # all white: "white" (the lightest bin), like near-white
        assert rows[0] @ rows[2] == 0.0
        assert np.count_nonzero(rows[0]) == 1

    def test_colour_similarity_is_the_bhattacharyya_coefficient(self):
        red, blue = solid((200, 30, 30)), solid((30, 30, 200))
        mixed = np.concatenate([red[:4], blue[4:]])  # 1/4 red, 3/4 blue
        rows = colour_part(np.stack([red, mixed]))
        assert rows[0] @ rows[1] == pytest.approx(math.sqrt(0.25))

    def test_colour_bins_every_pixel_by_its_definition(self):
        """The lookup-table binning against the definition, pixel by pixel: 10 levels per channel,
        pixels with all channels >= 250 left out, frequencies square-rooted."""
        rng = np.random.default_rng(3)
        pixels = rng.integers(0, 256, (3, 9, 7, 3), dtype=np.uint8)
        pixels[1, :4] = rng.integers(245, 256, (4, 7, 3), dtype=np.uint8)  # around the white threshold
        rows = colour_part(pixels)
        for image, row in zip(pixels, rows, strict=True):
            counts = np.zeros(COLOUR_BINS)
            for red, green, blue in image.reshape(-1, 3).astype(int):
                if min(red, green, blue) < 250:
                    counts[(red * 10 // 256) * 100 + (green * 10 // 256) * 10 + blue * 10 // 256] += 1
            np.testing.assert_allclose(row, np.sqrt(counts / counts.sum()), atol=1e-6)

    def test_colour_refuses_anything_but_uint8_rgb_batches(self):
        with pytest.raises(ValueError, match="expected uint8"):
            colour_part(np.zeros((1, 8, 8, 3), dtype=np.float32))
        with pytest.raises(ValueError, match="expected uint8"):
            colour_part(np.zeros((8, 8, 3), dtype=np.uint8))

    def test_assembler_gives_unit_rows_of_the_layout_width_and_a_versioned_name(self):
        rng = np.random.default_rng(7)
        assembler = DescriptorAssembler(model_info())
        outputs = {
            "features": rng.uniform(0, 3, size=(2, 1280)).astype(np.float32),
            "style": rng.normal(size=(2, 384)).astype(np.float32),
        }
        pixels = rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
        vectors = assembler(outputs, pixels)
        assert vectors.shape == (2, assembler.layout.dimension)
        assert vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        colour = assembler.layout.aspect("colour")
        expected_colour = colour_part(pixels) * math.sqrt(DEFAULT_WEIGHTS["colour"])
        np.testing.assert_allclose(vectors[:, colour.span], expected_colour, atol=1e-6)
        assert assembler.version == f"v1-d{encoder_descriptor.DESCRIPTOR_REVISION}"
