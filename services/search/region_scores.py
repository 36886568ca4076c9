"""Region matching: an artwork scores the better of its whole picture and its best region.

Every stored artwork may carry region descriptors (artsearch_tools.regions: crops of a grid at several scales,
encoded like the whole picture). In a collection with regions each one is a point of its own, with its own
HNSW graph and a payload of the artwork's filterable fields and `region_of`, the artwork's id (so every
filter applies to region points as to artworks): on qdrant-edge in a shard of its own beside the artworks'
(edge_files: one unnamed vector each); on a Qdrant server beside the artwork's point in the same
collection, with one named vector `REGIONS_VECTOR` (no whole-picture vector), while artwork points have
only the unnamed vector, so a query on one vector never meets the other kind of point.

Both engines answer two nearest-neighbour queries in one call, with the same filter: the whole vector
`offset + limit` deep, and the regions `REGION_DEPTH_FACTOR` times as deep, at most `REGION_LIST_MAX`
points (`region_list_limit`); the region points are grouped by artwork, each artwork taking its best
region's score (`best_region_scores`). `merged_hits` then takes, per artwork, the better of the two, the
region's less `margin`: the best of many regions is an optimistic similarity, and measured on the
evaluation's photos (docs/search.md, "Regions") an unhandicapped region beat the right painting's whole
picture for photos of whole paintings (gallery walls 0.30 -> 0.18 top-1, phone photos 0.95 -> 0.87), where
a margin of 0.06 keeps every kind at its whole-picture level and details at 0.98. Before the merge, the
artworks found only by their regions that may make the page get their whole score and record, looked up
exactly among those few points (`needed_lookups`); a region whose artwork point is gone (a crash between
the two writes) is dropped there. An artwork found only whole scores its whole picture: its regions were
not among the nearest region points, so `region_score` is unset for it.

Approximate, like the HNSW search itself: an artwork is ranked by its region only when one of its regions
is among the region list's points. The first places -- what a photo of a detail is judged on -- need only
their own best regions to be in the list; deeper in a pool of 100 an artwork whose regions did not make the
list is ranked by its whole picture. Measured (bench/region_points.py, synthetic 3,000 artworks x 20
regions, docs/search.md "Regions"), before the cap: top-1 0.995 and top-10 0.995 against the exact ranking
(the multivector scan: 1.0, 1.0); the cap and the dropped look-ups of whole matches (whose best region was
scored exactly, one query each: most of a limit-100 search's time) took a limit-100 search on the
evaluation's index (6,066 artworks, 121,320 region points) from ~28 to ~19 ms in process.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from services.search.payload import REGION_OF_FIELD, point_id

# The name of the vector of region points (the whole picture's vector is the unnamed one, as in collections
# made before regions existed).
REGIONS_VECTOR = "regions"
# Region points fetched per artwork of the page (offset + limit): an artwork's several good regions must
# not crowd the others out of the list (see above)...
REGION_DEPTH_FACTOR = 4
# ... but no more than this many: a detail's artwork is among the first region matches, and reading 400
# region points for the gateway's pool of 100 cost more than the rest of the search (see above).
REGION_LIST_MAX = 64
# Subtracted from the best region's similarity before it competes with the whole picture's (see above).
DEFAULT_REGION_MARGIN = 0.06


class RegionHit(NamedTuple):
    point_id: Hashable
    whole_score: float | None  # None: not scored (deleted meanwhile)
    region_score: float | None  # None: the artwork has no regions
    margin: float = 0.0

    @property
    def score(self) -> float:
        """The better of the whole picture's similarity and the best region's less the margin."""
        region = None if self.region_score is None else self.region_score - self.margin
        scores = [s for s in (self.whole_score, region) if s is not None]
        return max(scores) if scores else float("-inf")

    @property
    def region_matched(self) -> bool:
        return self.region_score is not None and self.score == self.region_score - self.margin


def best_region_scores(matches: Iterable[tuple[Hashable, float]]) -> dict[Hashable, float]:
    """{artwork: its best region's score} from (artwork, score) region matches, in the order first met."""
    best: dict[Hashable, float] = {}
    for artwork, score in matches:
        if artwork not in best or score > best[artwork]:
            best[artwork] = score
    return best


def needed_lookups(
    whole: Mapping[Hashable, float], regions: Mapping[Hashable, float], depth: int, margin: float = 0.0
) -> list[Hashable]:
    """The artworks found only by their regions that may belong among the best `depth`: their whole score
    and record must be looked up. One scores at least its region less the margin; the `depth`-th best of
    the known lower bounds (`bar`) is at least the whole list's last score, so one whose region less the
    margin is below the bar cannot make the page."""
    lower = dict(whole)
    for i, score in regions.items():
        lower[i] = max(lower.get(i, float("-inf")), score - margin)
    bar = sorted(lower.values(), reverse=True)[depth - 1] if len(lower) > depth else float("-inf")
    return [i for i, score in regions.items() if i not in whole and score - margin >= bar]


def region_list_limit(depth: int) -> int:
    """How many region points a search of `depth` artworks reads: `REGION_DEPTH_FACTOR` per artwork, at
    most `REGION_LIST_MAX`."""
    return min(REGION_DEPTH_FACTOR * depth, REGION_LIST_MAX)


def merged_hits(
    whole: Mapping[Hashable, float],
    regions: Mapping[Hashable, float],
    offset: int,
    limit: int,
    margin: float = 0.0,
) -> list[RegionHit]:
    """The page [offset, offset + limit) of the artworks of either list, best first by `RegionHit.score`
    (ties: whole-picture matches first, then the engine's order)."""
    ids = list(dict.fromkeys([*whole, *regions]))
    hits = [RegionHit(i, whole.get(i), regions.get(i), margin) for i in ids]
    hits.sort(key=lambda hit: (-hit.score, hit.region_matched))
    return hits[offset : offset + limit]


class EnginePoint(Protocol):
    """A scored point as either engine returns it (qdrant-edge's ScoredPoint, qdrant-client's)."""

    id: Any
    score: float
    payload: Mapping[str, Any] | None


@dataclass
class RegionSearchScores:
    """What one region search knows, by artwork point id: the artworks' payloads and whole-picture scores,
    and each artwork's best region score."""

    payloads: dict[str, Mapping[str, Any]]
    whole: dict[str, float]
    regions: dict[str, float]

    @classmethod
    def of(
        cls, whole_points: Iterable[EnginePoint], region_points: Iterable[EnginePoint]
    ) -> RegionSearchScores:
        """From the engine's two lists: artwork points (with payloads) and region points (with region_of)."""
        # Each id read once: qdrant-edge makes a new UUID object on every access.
        whole = [(str(point.id), point) for point in whole_points]
        regions = best_region_scores(
            (point_id(str(point.payload[REGION_OF_FIELD])), float(point.score))
            for point in region_points
            if point.payload and REGION_OF_FIELD in point.payload
        )
        return cls(
            {i: point.payload or {} for i, point in whole},
            {i: float(point.score) for i, point in whole},
            {str(i): score for i, score in regions.items()},
        )

    def add_artworks(self, points: Iterable[EnginePoint]) -> None:
        """Artwork points looked up exactly (those `needed_lookups` named)."""
        for point in points:
            self.payloads[str(point.id)] = point.payload or {}
            self.whole[str(point.id)] = float(point.score)

    def page(self, offset: int, limit: int, margin: float) -> list[RegionHit]:
        """`merged_hits` of the artworks with a whole score: a region whose artwork was not looked up
        cannot make the page, and one whose artwork point is gone (a crash between writes) is dropped."""
        regions = {i: score for i, score in self.regions.items() if i in self.whole}
        return merged_hits(self.whole, regions, offset, limit, margin)
