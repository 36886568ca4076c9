"""Region matching: an artwork scores the better of its whole picture and its best region.

Every stored artwork may carry region descriptors (artsearch.regions: crops of a grid at several scales,
encoded like the whole picture). In a collection with regions each one is a point of its own, beside the
artwork's point in the same collection: one named vector `REGIONS_VECTOR` (no whole-picture vector), with
its own HNSW graph, a payload of the artwork's filterable fields and `region_of`, the artwork's id (so
every filter applies to region points as to artworks). Artwork points have only the unnamed vector, so a
query on one vector never meets the other kind of point.

Both engines answer two nearest-neighbour queries in one batch, with the same filter: the whole vector
`offset + limit` deep, and the regions `REGION_DEPTH_FACTOR` times as deep; the region points are grouped
by artwork, each artwork taking its best region's score (`best_region_scores`). `merged_hits` then takes,
per artwork, the better of the two, the region's less `margin`: the best of many regions is an optimistic
similarity, and measured on the evaluation's photos (docs/search.md, "Regions") an unhandicapped region
beat the right painting's whole picture for photos of whole paintings (gallery walls 0.30 -> 0.18 top-1,
phone photos 0.95 -> 0.87), where a margin of 0.06 keeps every kind at its whole-picture level and details
at 0.98. Before the merge, each artwork of either list gets the score it lacks, looked up exactly among
those few points (an artwork found by its regions: its whole vector and payload; found whole: its best
region); a region whose artwork point is gone (a crash between the two writes) is dropped there.

Approximate, like the HNSW search itself: an artwork among the best `offset + limit` by its region score
is missed only when the region list's `REGION_DEPTH_FACTOR * (offset + limit)` points all belong to fewer
than `offset + limit` better artworks, i.e. when the best artworks each have several regions better than
its best one. Regions of one artwork are different crops, rarely all close to one query, and the first
places -- what a photo search is judged on -- need only their own best regions to be in the list.
Measured (bench/region_points.py, synthetic 3,000 artworks x 20 regions): see docs/search.md, "Regions".
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import NamedTuple

# The name of the vector of region points (the whole picture's vector is the unnamed one, as in collections
# made before regions existed).
REGIONS_VECTOR = "regions"
# Region points fetched per artwork of the page (offset + limit): an artwork's several good regions must
# not crowd the others out of the list (see above).
REGION_DEPTH_FACTOR = 4
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


def missing_ids(
    whole: Mapping[Hashable, float], regions: Mapping[Hashable, float]
) -> tuple[list[Hashable], list[Hashable]]:
    """(ids found by their regions but not scored whole, ids found whole but not scored by regions)."""
    return [i for i in regions if i not in whole], [i for i in whole if i not in regions]


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
