"""Region matching: an artwork scores the better of its whole picture and its best region.

Every stored artwork may carry region descriptors (artsearch.regions: crops of a grid at several scales,
encoded like the whole picture), kept with its point as a Qdrant multivector named `REGIONS_VECTOR` and
compared with MaxSim: against a one-vector query that is the best region's cosine. Both engines answer
two nearest-neighbour queries in one batch -- the whole vector and the regions, each `offset + limit`
deep, with the same filter -- and `merged_hits` takes, per artwork, the better of the two, the region's
less `margin`: the best of many regions is an optimistic similarity, and measured on the evaluation's
photos (docs/search.md, "Regions") an unhandicapped region beat the right painting's whole picture for
photos of whole paintings (gallery walls 0.30 -> 0.18 top-1, phone photos 0.95 -> 0.87), where a margin
of 0.06 keeps every kind at its whole-picture level and details at 0.98.

Why that is exact (the margin shifts every region score alike, so the regions' order is kept): an artwork
among the best `offset + limit` by its better score has that score from
the whole picture or from a region, and fewer than `offset + limit` artworks beat it there, so it is in
that list; an artwork in neither list is beaten by `offset + limit` artworks in each. Before the merge,
each artwork of either list gets the score it lacks (it may be missing from the other list), looked up
exactly among those few points, so the union is ranked on both scores.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import NamedTuple

# The name of the multivector holding an artwork's region descriptors (the whole picture's vector is the
# unnamed one, as in collections made before regions existed).
REGIONS_VECTOR = "regions"
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
