from artsearch.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IndexedArtwork(_message.Message):
    __slots__ = ("artwork", "embedding", "regions")
    ARTWORK_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    artwork: _common_pb2.Artwork
    embedding: _common_pb2.Embedding
    regions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Embedding]
    def __init__(self, artwork: _Optional[_Union[_common_pb2.Artwork, _Mapping]] = ..., embedding: _Optional[_Union[_common_pb2.Embedding, _Mapping]] = ..., regions: _Optional[_Iterable[_Union[_common_pb2.Embedding, _Mapping]]] = ...) -> None: ...

class UpsertRequest(_message.Message):
    __slots__ = ("collection", "items")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    items: _containers.RepeatedCompositeFieldContainer[IndexedArtwork]
    def __init__(self, collection: _Optional[str] = ..., items: _Optional[_Iterable[_Union[IndexedArtwork, _Mapping]]] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("upserted",)
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    upserted: int
    def __init__(self, upserted: _Optional[int] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("artists", "styles", "genres", "year_min", "year_max", "exclude_ids", "exclude_style_labels")
    ARTISTS_FIELD_NUMBER: _ClassVar[int]
    STYLES_FIELD_NUMBER: _ClassVar[int]
    GENRES_FIELD_NUMBER: _ClassVar[int]
    YEAR_MIN_FIELD_NUMBER: _ClassVar[int]
    YEAR_MAX_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_IDS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_STYLE_LABELS_FIELD_NUMBER: _ClassVar[int]
    artists: _containers.RepeatedScalarFieldContainer[str]
    styles: _containers.RepeatedScalarFieldContainer[str]
    genres: _containers.RepeatedScalarFieldContainer[str]
    year_min: int
    year_max: int
    exclude_ids: _containers.RepeatedScalarFieldContainer[str]
    exclude_style_labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, artists: _Optional[_Iterable[str]] = ..., styles: _Optional[_Iterable[str]] = ..., genres: _Optional[_Iterable[str]] = ..., year_min: _Optional[int] = ..., year_max: _Optional[int] = ..., exclude_ids: _Optional[_Iterable[str]] = ..., exclude_style_labels: _Optional[_Iterable[str]] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("collection", "query", "limit", "offset", "filter", "parts", "part_query", "match_regions", "region_margin")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    PART_QUERY_FIELD_NUMBER: _ClassVar[int]
    MATCH_REGIONS_FIELD_NUMBER: _ClassVar[int]
    REGION_MARGIN_FIELD_NUMBER: _ClassVar[int]
    collection: str
    query: _common_pb2.Embedding
    limit: int
    offset: int
    filter: Filter
    parts: _containers.RepeatedCompositeFieldContainer[VectorPart]
    part_query: _common_pb2.Embedding
    match_regions: bool
    region_margin: float
    def __init__(self, collection: _Optional[str] = ..., query: _Optional[_Union[_common_pb2.Embedding, _Mapping]] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., parts: _Optional[_Iterable[_Union[VectorPart, _Mapping]]] = ..., part_query: _Optional[_Union[_common_pb2.Embedding, _Mapping]] = ..., match_regions: _Optional[bool] = ..., region_margin: _Optional[float] = ...) -> None: ...

class ScoredArtwork(_message.Message):
    __slots__ = ("artwork", "score", "part_projections", "whole_score", "region_score", "region_matched")
    ARTWORK_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    PART_PROJECTIONS_FIELD_NUMBER: _ClassVar[int]
    WHOLE_SCORE_FIELD_NUMBER: _ClassVar[int]
    REGION_SCORE_FIELD_NUMBER: _ClassVar[int]
    REGION_MATCHED_FIELD_NUMBER: _ClassVar[int]
    artwork: _common_pb2.Artwork
    score: float
    part_projections: _containers.RepeatedScalarFieldContainer[float]
    whole_score: float
    region_score: float
    region_matched: bool
    def __init__(self, artwork: _Optional[_Union[_common_pb2.Artwork, _Mapping]] = ..., score: _Optional[float] = ..., part_projections: _Optional[_Iterable[float]] = ..., whole_score: _Optional[float] = ..., region_score: _Optional[float] = ..., region_matched: _Optional[bool] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "regions_matched")
    HITS_FIELD_NUMBER: _ClassVar[int]
    REGIONS_MATCHED_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[ScoredArtwork]
    regions_matched: bool
    def __init__(self, hits: _Optional[_Iterable[_Union[ScoredArtwork, _Mapping]]] = ..., regions_matched: _Optional[bool] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("collection", "ids", "with_embeddings")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    WITH_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    with_embeddings: bool
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ..., with_embeddings: _Optional[bool] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("items", "missing_ids")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MISSING_IDS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[IndexedArtwork]
    missing_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, items: _Optional[_Iterable[_Union[IndexedArtwork, _Mapping]]] = ..., missing_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("collection", "ids")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class CountRequest(_message.Message):
    __slots__ = ("collection", "filter")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    collection: str
    filter: Filter
    def __init__(self, collection: _Optional[str] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ...) -> None: ...

class CountResponse(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class ScrollRequest(_message.Message):
    __slots__ = ("collection", "limit", "cursor", "filter", "with_embeddings")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    WITH_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    limit: int
    cursor: str
    filter: Filter
    with_embeddings: bool
    def __init__(self, collection: _Optional[str] = ..., limit: _Optional[int] = ..., cursor: _Optional[str] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., with_embeddings: _Optional[bool] = ...) -> None: ...

class ScrollResponse(_message.Message):
    __slots__ = ("items", "next_cursor")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[IndexedArtwork]
    next_cursor: str
    def __init__(self, items: _Optional[_Iterable[_Union[IndexedArtwork, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class CreateSnapshotRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class Snapshot(_message.Message):
    __slots__ = ("name", "collection", "size_bytes", "created_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    collection: str
    size_bytes: int
    created_at: str
    def __init__(self, name: _Optional[str] = ..., collection: _Optional[str] = ..., size_bytes: _Optional[int] = ..., created_at: _Optional[str] = ...) -> None: ...

class RestoreSnapshotRequest(_message.Message):
    __slots__ = ("collection", "name")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    collection: str
    name: str
    def __init__(self, collection: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class RestoreSnapshotResponse(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class SetAliasRequest(_message.Message):
    __slots__ = ("alias", "collection", "replace_collection")
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    REPLACE_COLLECTION_FIELD_NUMBER: _ClassVar[int]
    alias: str
    collection: str
    replace_collection: bool
    def __init__(self, alias: _Optional[str] = ..., collection: _Optional[str] = ..., replace_collection: _Optional[bool] = ...) -> None: ...

class SetAliasResponse(_message.Message):
    __slots__ = ("alias", "collection", "previous_collection", "replaced_collection")
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_COLLECTION_FIELD_NUMBER: _ClassVar[int]
    REPLACED_COLLECTION_FIELD_NUMBER: _ClassVar[int]
    alias: str
    collection: str
    previous_collection: str
    replaced_collection: str
    def __init__(self, alias: _Optional[str] = ..., collection: _Optional[str] = ..., previous_collection: _Optional[str] = ..., replaced_collection: _Optional[str] = ...) -> None: ...

class ListAliasesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CollectionAlias(_message.Message):
    __slots__ = ("alias", "collection")
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    alias: str
    collection: str
    def __init__(self, alias: _Optional[str] = ..., collection: _Optional[str] = ...) -> None: ...

class ListAliasesResponse(_message.Message):
    __slots__ = ("aliases",)
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    aliases: _containers.RepeatedCompositeFieldContainer[CollectionAlias]
    def __init__(self, aliases: _Optional[_Iterable[_Union[CollectionAlias, _Mapping]]] = ...) -> None: ...

class VectorPart(_message.Message):
    __slots__ = ("offset", "length")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    offset: int
    length: int
    def __init__(self, offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class UpdateArtworkRequest(_message.Message):
    __slots__ = ("collection", "id", "title", "artist", "style", "genre", "year", "image_uri", "catalogue", "set_extra", "remove_extra")
    class SetExtraEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    ARTIST_FIELD_NUMBER: _ClassVar[int]
    STYLE_FIELD_NUMBER: _ClassVar[int]
    GENRE_FIELD_NUMBER: _ClassVar[int]
    YEAR_FIELD_NUMBER: _ClassVar[int]
    IMAGE_URI_FIELD_NUMBER: _ClassVar[int]
    CATALOGUE_FIELD_NUMBER: _ClassVar[int]
    SET_EXTRA_FIELD_NUMBER: _ClassVar[int]
    REMOVE_EXTRA_FIELD_NUMBER: _ClassVar[int]
    collection: str
    id: str
    title: str
    artist: str
    style: str
    genre: str
    year: int
    image_uri: str
    catalogue: str
    set_extra: _containers.ScalarMap[str, str]
    remove_extra: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collection: _Optional[str] = ..., id: _Optional[str] = ..., title: _Optional[str] = ..., artist: _Optional[str] = ..., style: _Optional[str] = ..., genre: _Optional[str] = ..., year: _Optional[int] = ..., image_uri: _Optional[str] = ..., catalogue: _Optional[str] = ..., set_extra: _Optional[_Mapping[str, str]] = ..., remove_extra: _Optional[_Iterable[str]] = ...) -> None: ...

class UpdateArtworkResponse(_message.Message):
    __slots__ = ("artwork", "previous")
    ARTWORK_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    artwork: _common_pb2.Artwork
    previous: _common_pb2.Artwork
    def __init__(self, artwork: _Optional[_Union[_common_pb2.Artwork, _Mapping]] = ..., previous: _Optional[_Union[_common_pb2.Artwork, _Mapping]] = ...) -> None: ...
