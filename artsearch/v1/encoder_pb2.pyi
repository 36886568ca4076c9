from artsearch.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EncodeRequest(_message.Message):
    __slots__ = ("images", "analyse")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    ANALYSE_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedScalarFieldContainer[bytes]
    analyse: bool
    def __init__(self, images: _Optional[_Iterable[bytes]] = ..., analyse: _Optional[bool] = ...) -> None: ...

class EncodeResponse(_message.Message):
    __slots__ = ("embeddings", "model", "analyses")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ANALYSES_FIELD_NUMBER: _ClassVar[int]
    embeddings: _containers.RepeatedCompositeFieldContainer[_common_pb2.Embedding]
    model: ModelInfo
    analyses: _containers.RepeatedCompositeFieldContainer[ImageAnalysis]
    def __init__(self, embeddings: _Optional[_Iterable[_Union[_common_pb2.Embedding, _Mapping]]] = ..., model: _Optional[_Union[ModelInfo, _Mapping]] = ..., analyses: _Optional[_Iterable[_Union[ImageAnalysis, _Mapping]]] = ...) -> None: ...

class ImageAnalysis(_message.Message):
    __slots__ = ("located", "located_embedding", "corners", "confidence", "area_fraction", "greyscale", "chroma_spread", "photo_greyscale", "photo_chroma_spread")
    LOCATED_FIELD_NUMBER: _ClassVar[int]
    LOCATED_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    CORNERS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    AREA_FRACTION_FIELD_NUMBER: _ClassVar[int]
    GREYSCALE_FIELD_NUMBER: _ClassVar[int]
    CHROMA_SPREAD_FIELD_NUMBER: _ClassVar[int]
    PHOTO_GREYSCALE_FIELD_NUMBER: _ClassVar[int]
    PHOTO_CHROMA_SPREAD_FIELD_NUMBER: _ClassVar[int]
    located: bool
    located_embedding: _common_pb2.Embedding
    corners: _containers.RepeatedScalarFieldContainer[float]
    confidence: float
    area_fraction: float
    greyscale: bool
    chroma_spread: float
    photo_greyscale: bool
    photo_chroma_spread: float
    def __init__(self, located: _Optional[bool] = ..., located_embedding: _Optional[_Union[_common_pb2.Embedding, _Mapping]] = ..., corners: _Optional[_Iterable[float]] = ..., confidence: _Optional[float] = ..., area_fraction: _Optional[float] = ..., greyscale: _Optional[bool] = ..., chroma_spread: _Optional[float] = ..., photo_greyscale: _Optional[bool] = ..., photo_chroma_spread: _Optional[float] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "version", "dimension", "input_size", "max_batch_images", "backend", "aspects")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    INPUT_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_IMAGES_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    ASPECTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    dimension: int
    input_size: int
    max_batch_images: int
    backend: str
    aspects: _containers.RepeatedCompositeFieldContainer[DescriptorAspect]
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., dimension: _Optional[int] = ..., input_size: _Optional[int] = ..., max_batch_images: _Optional[int] = ..., backend: _Optional[str] = ..., aspects: _Optional[_Iterable[_Union[DescriptorAspect, _Mapping]]] = ...) -> None: ...

class DescriptorAspect(_message.Message):
    __slots__ = ("name", "offset", "length", "default_weight")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    offset: int
    length: int
    default_weight: float
    def __init__(self, name: _Optional[str] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ..., default_weight: _Optional[float] = ...) -> None: ...
