"""The client's answer types read every field the gateway declares: each response schema of the gateway's
OpenAPI document (built in-process) against the dataclass the client reads it into. A field the gateway
adds fails here until the client has it (meanwhile older clients still read it from `raw`)."""

from __future__ import annotations

import dataclasses

import pytest

from artsearch_client import models

try:  # the gateway's code: present in the repository, absent where the package is tested alone
    from artsearch.config import Env
    from services.gateway.app import create_app
    from services.gateway.config import GatewayConfig
except ImportError as missing:
    pytest.skip(f"no gateway code around the package: {missing}", allow_module_level=True)

# Gateway schema -> the client class its JSON is read into.
CLIENT_TYPES: dict[str, type] = {
    "SearchAnswer": models.SearchResponse,
    "SearchResult": models.SearchResult,
    "Scores": models.Scores,
    "SourceArtist": models.SourceArtist,
    "RunnerUp": models.RunnerUp,
    "StylePrediction": models.StylePrediction,
    "StyleScore": models.LabelScore,
    "ModelVersion": models.ModelInfo,
    "StyleAnswer": models.StyleResponse,
    "Readiness": models.Readiness,
    "Artwork": models.Artwork,
    "StoredArtwork": models.Artwork,
    "ArtworkChange": models.ArtworkChange,
    "ArtworkPage": models.ArtworkPage,
    "BatchAnswer": models.BatchResult,
    "BatchItem": models.BatchItem,
    "BatchSearchAnswer": models.BatchSearchResponse,
    "BatchSearchItem": models.BatchSearchItem,
    "ArtistInfo": models.Artist,
    "ArtistPage": models.ArtistPage,
    "ArtistNeighbours": models.ArtistNeighbours,
    "Neighbour": models.Neighbour,
    "ArtistPath": models.InfluencePath,
    "InfluenceEdge": models.InfluenceEdge,
    "ArtistsAdded": models.ArtistAdditions,
    "ClusterList": models.Clustering,
    "Cluster": models.Cluster,
    "LabelCount": models.NameCount,
    "ClusterPage": models.ClusterMembers,
}
# Schemas the client reads as an artwork plus one number (the artwork's fields flattened beside it).
FLATTENED: dict[str, tuple[type, str]] = {
    "ClusterMember": (models.ClusterArtwork, "similarity"),
    "StyleNeighbour": (models.StyleNeighbour, "score"),
}


@pytest.fixture(scope="module")
def openapi() -> dict:
    addresses = {name: "127.0.0.1:1" for name in ("ENCODER_ADDR", "SEARCH_ADDR", "INFLUENCE_ADDR")}
    return create_app(GatewayConfig.from_env(Env(addresses))).openapi()


@pytest.fixture(scope="module")
def schemas(openapi: dict) -> dict[str, dict]:
    return openapi["components"]["schemas"]


def _fields(kind: type) -> set[str]:
    return {f.name for f in dataclasses.fields(kind)} - {"raw"}


@pytest.mark.parametrize("schema_name", sorted(CLIENT_TYPES))
def test_every_declared_field_has_its_place_in_the_client_type(schemas: dict[str, dict], schema_name: str):
    declared = set(schemas[schema_name].get("properties", {}))
    missing = sorted(declared - _fields(CLIENT_TYPES[schema_name]))
    assert not missing, f"{schema_name} answers {missing}: add them to {CLIENT_TYPES[schema_name].__name__}"


@pytest.mark.parametrize("schema_name", sorted(FLATTENED))
def test_flattened_artworks_carry_every_declared_field(schemas: dict[str, dict], schema_name: str):
    kind, number = FLATTENED[schema_name]
    assert {"artwork", number} <= _fields(kind)
    declared = set(schemas[schema_name].get("properties", {}))
    assert declared - {number} <= _fields(models.Artwork)


def test_every_answer_schema_of_the_gateway_is_read_by_the_client(openapi: dict):
    """Every 2xx JSON schema of the gateway is one the client knows (health is a plain dict; the evaluation
    pictures are for the web UI)."""
    answered = set()
    for item in openapi["paths"].values():
        for operation in item.values():
            for status, response in operation.get("responses", {}).items():
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                if status.startswith("2") and "$ref" in schema:
                    answered.add(schema["$ref"].rsplit("/", 1)[-1])
    assert answered and answered - set(CLIENT_TYPES) <= {"Health", "EvaluationPictures"}
