"""The curated influence data shipped with the influence service: complete, consistent, plausible."""

from __future__ import annotations

import csv
import itertools
from collections import defaultdict, deque
from pathlib import Path

import pytest

from artsearch.artists import ArtistIndex, normalise_name
from services.influence.curated import DEFAULT_DATA_DIR, load_curated
from services.influence.graph import RELATION_TEACHER, RELATIONS

# The artists of the GCompris demo catalogue, spelled as its captions spell them.
DEMO_ARTISTS = {
    "Katsushika Hokusai": "katsushika hokusai",
    "Utagawa Hiroshige": "utagawa hiroshige",
    "Pierre-Auguste Renoir": "pierre auguste renoir",
    "Giuseppe Arcimboldo": "giuseppe arcimboldo",
    "Leonardo da Vinci": "leonardo da vinci",
    "Michelangelo": "michelangelo buonarroti",
    "Giovanni Bellini": "giovanni bellini",
    "Albrecht Dürer": "albrecht durer",
    "Pieter Bruegel the Elder": "pieter bruegel the elder",
    "Wassily Kandinsky": "wassily kandinsky",
    "Bazille": "frederic bazille",
    "Mary Cassatt": "mary cassatt",
    "Vincent Van Gogh": "vincent van gogh",
    "Paul Gauguin": "paul gauguin",
    "Ambrosius Bosschaert": "ambrosius bosschaert the elder",
}
# The painters around them that the graph must hold.
MAIN_PAINTERS = [
    "Claude Monet", "Édouard Manet", "Edgar Degas", "Camille Pissarro", "Paul Cézanne", "Georges Seurat",
    "Toulouse-Lautrec", "Henri Matisse", "Pablo Picasso", "Georges Braque", "Paul Klee", "Franz Marc",
    "Gabriele Münter", "Rembrandt", "Rubens", "Vermeer", "Caravaggio", "Titian", "Raphael", "Giorgione",
    "Mantegna", "Verrocchio", "Whistler", "Gustave Courbet", "Eugène Delacroix", "Jean-François Millet",
    "Corot", "J. M. W. Turner", "John Constable", "Hieronymus Bosch", "Katsukawa Shunsho", "Katsushika Oi",
]  # fmt: skip
CURRENT_YEAR = 2026


@pytest.fixture(scope="module")
def curated():
    return load_curated(DEFAULT_DATA_DIR)


@pytest.fixture(scope="module")
def index(curated):
    return ArtistIndex.from_records(curated.artists)


@pytest.fixture(scope="module")
def undirected(curated):
    neighbours = defaultdict(set)
    for edge in curated.influences:
        neighbours[edge.influencer].add(edge.influenced)
        neighbours[edge.influenced].add(edge.influencer)
    return neighbours


def _hops(neighbours, start: str) -> dict[str, int]:
    hops = {start: 0}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for neighbour in neighbours[node]:
            if neighbour not in hops:
                hops[neighbour] = hops[node] + 1
                queue.append(neighbour)
    return hops


def test_there_are_enough_artists_and_edges(curated):
    assert len(curated.artists) >= 120
    assert len(curated.influences) >= 200


def test_keys_are_normalised_names_and_unique(curated):
    keys = [artist.key for artist in curated.artists]
    assert len(keys) == len(set(keys))
    assert all(artist.key == normalise_name(artist.name) for artist in curated.artists)


def test_names_and_aliases_resolve_unambiguously(curated, index):
    # Building the index raises on any form claimed by two artists; every form must come back home.
    for artist in curated.artists:
        for form in (artist.name, *artist.aliases):
            assert index.resolve(form) == artist.key, form


def test_every_edge_joins_two_known_distinct_artists_once(curated):
    keys = {artist.key for artist in curated.artists}
    pairs = [(edge.influencer, edge.influenced) for edge in curated.influences]
    assert all(a in keys and b in keys for a, b in pairs)
    assert all(a != b for a, b in pairs)
    assert len(pairs) == len(set(pairs))


def test_every_edge_has_a_relation_and_a_source(curated):
    for edge in curated.influences:
        assert edge.relation in RELATIONS, edge
        assert len(edge.source) >= 10, edge


def test_years_are_plausible(curated):
    for artist in curated.artists:
        assert 1200 <= artist.birth_year < artist.death_year <= CURRENT_YEAR, artist
        assert 15 <= artist.death_year - artist.birth_year <= 105, artist
        assert artist.movement and artist.nationality, artist


def test_influence_runs_forward_in_time(curated):
    born = {artist.key: artist.birth_year for artist in curated.artists}
    died = {artist.key: artist.death_year for artist in curated.artists}
    for edge in curated.influences:
        # The influenced artist outlived the influencer's birth; a teacher is older than the pupil.
        assert born[edge.influencer] < died[edge.influenced], edge
        if edge.relation == RELATION_TEACHER:
            assert born[edge.influencer] < born[edge.influenced], edge


def test_every_demo_artist_is_present_and_connected(index, undirected):
    for caption_name, key in DEMO_ARTISTS.items():
        assert index.resolve(caption_name) == key
        assert undirected[key], f"{key} has no influence edges"


def test_the_main_painters_are_present(index):
    missing = [name for name in MAIN_PAINTERS if index.resolve(name) is None]
    assert missing == []


def test_demo_artists_are_few_hops_apart(undirected):
    keys = list(DEMO_ARTISTS.values())
    hops = {key: _hops(undirected, key) for key in keys}
    distances = [hops[a][b] for a, b in itertools.combinations(keys, 2)]
    assert all(d <= 8 for d in distances)
    assert sum(distances) / len(distances) <= 4.5
    assert hops["vincent van gogh"]["katsushika hokusai"] == 1
    assert hops["vincent van gogh"]["utagawa hiroshige"] == 1
    assert hops["vincent van gogh"]["paul gauguin"] == 1
    assert hops["wassily kandinsky"]["claude monet"] == 1


def test_almost_every_artist_is_in_one_connected_graph(curated, undirected):
    reached = _hops(undirected, "vincent van gogh")
    assert len(reached) == len(curated.artists)


def test_well_known_facts_are_in_the_data(curated):
    edges = {(edge.influencer, edge.influenced): edge.relation for edge in curated.influences}
    assert edges[("katsushika hokusai", "vincent van gogh")] == "influenced"
    assert edges[("utagawa hiroshige", "vincent van gogh")] == "influenced"
    assert edges[("jean francois millet", "vincent van gogh")] == "influenced"
    assert edges[("claude monet", "wassily kandinsky")] == "influenced"
    assert ("paul gauguin", "vincent van gogh") in edges and ("vincent van gogh", "paul gauguin") in edges
    assert edges[("andrea del verrocchio", "leonardo da vinci")] == "teacher"
    assert edges[("giovanni bellini", "titian")] == "teacher"
    assert edges[("andrea mantegna", "albrecht durer")] == "influenced"
    assert edges[("hieronymus bosch", "pieter bruegel the elder")] == "influenced"
    assert edges[("edgar degas", "mary cassatt")] == "influenced"
    assert ("gustave courbet", "frederic bazille") in edges and ("edouard manet", "frederic bazille") in edges


def test_the_demo_catalogue_artists_resolve_when_the_catalogue_is_built(index, repo_root: Path):
    metadata = repo_root / "data" / "catalogues" / "gcompris" / "metadata.csv"
    if not metadata.exists():
        pytest.skip("demo catalogue not built (make catalogue)")
    with metadata.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    anonymous = ("unknown", "anonymous", "unicorn")
    unresolved = {
        row.get("artist", "")
        for row in rows
        if index.resolve(row.get("artist", "")) is None
        and not any(word in f"{row.get('artist', '')} {row.get('title', '')}".lower() for word in anonymous)
        and row.get("artist", "").strip()
    }
    assert unresolved == set()
