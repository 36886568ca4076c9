from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Artist(_message.Message):
    __slots__ = ("key", "name", "birth_year", "death_year", "movement")
    KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    BIRTH_YEAR_FIELD_NUMBER: _ClassVar[int]
    DEATH_YEAR_FIELD_NUMBER: _ClassVar[int]
    MOVEMENT_FIELD_NUMBER: _ClassVar[int]
    key: str
    name: str
    birth_year: int
    death_year: int
    movement: str
    def __init__(self, key: _Optional[str] = ..., name: _Optional[str] = ..., birth_year: _Optional[int] = ..., death_year: _Optional[int] = ..., movement: _Optional[str] = ...) -> None: ...

class DistancesRequest(_message.Message):
    __slots__ = ("source_artist", "candidate_artists", "max_hops", "with_paths")
    SOURCE_ARTIST_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_ARTISTS_FIELD_NUMBER: _ClassVar[int]
    MAX_HOPS_FIELD_NUMBER: _ClassVar[int]
    WITH_PATHS_FIELD_NUMBER: _ClassVar[int]
    source_artist: str
    candidate_artists: _containers.RepeatedScalarFieldContainer[str]
    max_hops: int
    with_paths: bool
    def __init__(self, source_artist: _Optional[str] = ..., candidate_artists: _Optional[_Iterable[str]] = ..., max_hops: _Optional[int] = ..., with_paths: _Optional[bool] = ...) -> None: ...

class ArtistDistance(_message.Message):
    __slots__ = ("artist", "key", "known", "hops", "path")
    ARTIST_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    artist: str
    key: str
    known: bool
    hops: int
    path: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, artist: _Optional[str] = ..., key: _Optional[str] = ..., known: _Optional[bool] = ..., hops: _Optional[int] = ..., path: _Optional[_Iterable[str]] = ...) -> None: ...

class DistancesResponse(_message.Message):
    __slots__ = ("source", "source_known", "distances", "source_inferred")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_KNOWN_FIELD_NUMBER: _ClassVar[int]
    DISTANCES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_INFERRED_FIELD_NUMBER: _ClassVar[int]
    source: Artist
    source_known: bool
    distances: _containers.RepeatedCompositeFieldContainer[ArtistDistance]
    source_inferred: bool
    def __init__(self, source: _Optional[_Union[Artist, _Mapping]] = ..., source_known: _Optional[bool] = ..., distances: _Optional[_Iterable[_Union[ArtistDistance, _Mapping]]] = ..., source_inferred: _Optional[bool] = ...) -> None: ...

class PathRequest(_message.Message):
    __slots__ = ("from_artist", "to_artist", "max_hops")
    FROM_ARTIST_FIELD_NUMBER: _ClassVar[int]
    TO_ARTIST_FIELD_NUMBER: _ClassVar[int]
    MAX_HOPS_FIELD_NUMBER: _ClassVar[int]
    from_artist: str
    to_artist: str
    max_hops: int
    def __init__(self, from_artist: _Optional[str] = ..., to_artist: _Optional[str] = ..., max_hops: _Optional[int] = ...) -> None: ...

class InfluenceEdge(_message.Message):
    __slots__ = ("from_key", "to_key", "source", "relation")
    FROM_KEY_FIELD_NUMBER: _ClassVar[int]
    TO_KEY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    RELATION_FIELD_NUMBER: _ClassVar[int]
    from_key: str
    to_key: str
    source: str
    relation: str
    def __init__(self, from_key: _Optional[str] = ..., to_key: _Optional[str] = ..., source: _Optional[str] = ..., relation: _Optional[str] = ...) -> None: ...

class PathResponse(_message.Message):
    __slots__ = ("found", "artists", "edges")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    ARTISTS_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    found: bool
    artists: _containers.RepeatedCompositeFieldContainer[Artist]
    edges: _containers.RepeatedCompositeFieldContainer[InfluenceEdge]
    def __init__(self, found: _Optional[bool] = ..., artists: _Optional[_Iterable[_Union[Artist, _Mapping]]] = ..., edges: _Optional[_Iterable[_Union[InfluenceEdge, _Mapping]]] = ...) -> None: ...

class GetArtistsRequest(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class GetArtistsResponse(_message.Message):
    __slots__ = ("artists", "missing")
    ARTISTS_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    artists: _containers.RepeatedCompositeFieldContainer[Artist]
    missing: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, artists: _Optional[_Iterable[_Union[Artist, _Mapping]]] = ..., missing: _Optional[_Iterable[str]] = ...) -> None: ...

class NewInfluence(_message.Message):
    __slots__ = ("influencer", "influenced", "source", "relation")
    INFLUENCER_FIELD_NUMBER: _ClassVar[int]
    INFLUENCED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    RELATION_FIELD_NUMBER: _ClassVar[int]
    influencer: str
    influenced: str
    source: str
    relation: str
    def __init__(self, influencer: _Optional[str] = ..., influenced: _Optional[str] = ..., source: _Optional[str] = ..., relation: _Optional[str] = ...) -> None: ...

class AddArtistsRequest(_message.Message):
    __slots__ = ("artists", "influences")
    ARTISTS_FIELD_NUMBER: _ClassVar[int]
    INFLUENCES_FIELD_NUMBER: _ClassVar[int]
    artists: _containers.RepeatedCompositeFieldContainer[Artist]
    influences: _containers.RepeatedCompositeFieldContainer[NewInfluence]
    def __init__(self, artists: _Optional[_Iterable[_Union[Artist, _Mapping]]] = ..., influences: _Optional[_Iterable[_Union[NewInfluence, _Mapping]]] = ...) -> None: ...

class AddArtistsResponse(_message.Message):
    __slots__ = ("artists_added", "influences_added")
    ARTISTS_ADDED_FIELD_NUMBER: _ClassVar[int]
    INFLUENCES_ADDED_FIELD_NUMBER: _ClassVar[int]
    artists_added: int
    influences_added: int
    def __init__(self, artists_added: _Optional[int] = ..., influences_added: _Optional[int] = ...) -> None: ...

class ListArtistsRequest(_message.Message):
    __slots__ = ("prefix", "limit", "cursor")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    limit: int
    cursor: str
    def __init__(self, prefix: _Optional[str] = ..., limit: _Optional[int] = ..., cursor: _Optional[str] = ...) -> None: ...

class ListArtistsResponse(_message.Message):
    __slots__ = ("artists", "next_cursor")
    ARTISTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    artists: _containers.RepeatedCompositeFieldContainer[Artist]
    next_cursor: str
    def __init__(self, artists: _Optional[_Iterable[_Union[Artist, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class NeighboursRequest(_message.Message):
    __slots__ = ("artist",)
    ARTIST_FIELD_NUMBER: _ClassVar[int]
    artist: str
    def __init__(self, artist: _Optional[str] = ...) -> None: ...

class Neighbour(_message.Message):
    __slots__ = ("artist", "relation", "source")
    ARTIST_FIELD_NUMBER: _ClassVar[int]
    RELATION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    artist: Artist
    relation: str
    source: str
    def __init__(self, artist: _Optional[_Union[Artist, _Mapping]] = ..., relation: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class NeighboursResponse(_message.Message):
    __slots__ = ("artist", "influencers", "influenced")
    ARTIST_FIELD_NUMBER: _ClassVar[int]
    INFLUENCERS_FIELD_NUMBER: _ClassVar[int]
    INFLUENCED_FIELD_NUMBER: _ClassVar[int]
    artist: Artist
    influencers: _containers.RepeatedCompositeFieldContainer[Neighbour]
    influenced: _containers.RepeatedCompositeFieldContainer[Neighbour]
    def __init__(self, artist: _Optional[_Union[Artist, _Mapping]] = ..., influencers: _Optional[_Iterable[_Union[Neighbour, _Mapping]]] = ..., influenced: _Optional[_Iterable[_Union[Neighbour, _Mapping]]] = ...) -> None: ...
