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
at 0.98. Before the merge, the artworks that may belong in the page get the score they lack, looked up
exactly among those few points (`needed_lookups`: an artwork found by its regions, its whole vector and
payload; found whole, its best region when a region could lift it), the others are left out (they cannot
make the page); a region whose artwork point is gone (a crash between the two writes) is dropped there.
After the merge, the page's artworks found whole get their best region's score for the answer
(`region_score`; it cannot change their rank: their region is below the region list's last score).

Approximate, like the HNSW search itself: an artwork among the best `offset + limit` by its region score
is missed only when the region list's `REGION_DEPTH_FACTOR * (offset + limit)` points all belong to fewer
than `offset + limit` better artworks, i.e. when the best artworks each have several regions better than
its best one. Regions of one artwork are different crops, rarely all close to one query, and the first
places -- what a photo search is judged on -- need only their own best regions to be in the list.
Measured (bench/region_points.py, synthetic 3,000 artworks x 20 regions, docs/search.md "Regions"): the
400 region points of a limit-100 search held about 390 distinct artworks; against the exact ranking,
top-1 0.995, top-10 0.995, recall@100 0.9994 (the multivector scan: 1.0, 1.0, 0.9998); the one top-1
miss is the HNSW graph's (an exact engine search finds it), not the cut.
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


def needed_lookups(
    whole: Mapping[Hashable, float],
    regions: Mapping[Hashable, float],
    depth: int,
    region_floor: float | None,
    margin: float = 0.0,
) -> tuple[list[Hashable], list[Hashable]]:
    """The exact look-ups that can change the best `depth` artworks: (artworks found only by their regions
    that may belong there: their whole score and record are needed; artworks found only whole whose best
    region may beat their whole score). `region_floor`: the region list's last score when the list was
    full (None: it held every region point that passes the filter).

    An artwork found only by its regions scores at least its region less the margin, and at most that or
    the whole list's last score; the `depth`-th best of the known lower bounds (`bar`) is at least that
    last score, so one whose region less the margin is below the bar cannot make the page. An artwork
    found only whole has its best region at most `region_floor` (none when the list was not full), so only
    one whose whole score is below `region_floor - margin` may rank higher by a region."""
    lower = dict(whole)
    for i, score in regions.items():
        lower[i] = max(lower.get(i, float("-inf")), score - margin)
    bar = sorted(lower.values(), reverse=True)[depth - 1] if len(lower) > depth else float("-inf")
    found_by_regions = [i for i, score in regions.items() if i not in whole and score - margin >= bar]
    ceiling = float("-inf") if region_floor is None else region_floor - margin
    found_whole = [i for i, score in whole.items() if i not in regions and score < ceiling]
    return found_by_regions, found_whole


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
