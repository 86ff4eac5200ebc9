from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_ENCODING_UNSPECIFIED: _ClassVar[ImageEncoding]
    IMAGE_ENCODING_RAW: _ClassVar[ImageEncoding]
    IMAGE_ENCODING_PNG: _ClassVar[ImageEncoding]
    IMAGE_ENCODING_TIFF: _ClassVar[ImageEncoding]

class PixelType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PIXEL_TYPE_UNSPECIFIED: _ClassVar[PixelType]
    PIXEL_TYPE_UINT8: _ClassVar[PixelType]
    PIXEL_TYPE_UINT16: _ClassVar[PixelType]

class Shot(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SHOT_UNSPECIFIED: _ClassVar[Shot]
    SHOT_A: _ClassVar[Shot]
    SHOT_B: _ClassVar[Shot]
IMAGE_ENCODING_UNSPECIFIED: ImageEncoding
IMAGE_ENCODING_RAW: ImageEncoding
IMAGE_ENCODING_PNG: ImageEncoding
IMAGE_ENCODING_TIFF: ImageEncoding
PIXEL_TYPE_UNSPECIFIED: PixelType
PIXEL_TYPE_UINT8: PixelType
PIXEL_TYPE_UINT16: PixelType
SHOT_UNSPECIFIED: Shot
SHOT_A: Shot
SHOT_B: Shot

class Image(_message.Message):
    __slots__ = ("encoding", "width", "height", "channels", "pixel_type", "data")
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    PIXEL_TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    encoding: ImageEncoding
    width: int
    height: int
    channels: int
    pixel_type: PixelType
    data: bytes
    def __init__(self, encoding: _Optional[_Union[ImageEncoding, str]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., channels: _Optional[int] = ..., pixel_type: _Optional[_Union[PixelType, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class TilePosition(_message.Message):
    __slots__ = ("x", "y")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    x: int
    y: int
    def __init__(self, x: _Optional[int] = ..., y: _Optional[int] = ...) -> None: ...

class FuseRequest(_message.Message):
    __slots__ = ("tile_id", "slide_id", "position", "shot_a", "shot_b", "defocus_a_um", "defocus_b_um", "output_encoding", "pixel_size_um")
    TILE_ID_FIELD_NUMBER: _ClassVar[int]
    SLIDE_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    SHOT_A_FIELD_NUMBER: _ClassVar[int]
    SHOT_B_FIELD_NUMBER: _ClassVar[int]
    DEFOCUS_A_UM_FIELD_NUMBER: _ClassVar[int]
    DEFOCUS_B_UM_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ENCODING_FIELD_NUMBER: _ClassVar[int]
    PIXEL_SIZE_UM_FIELD_NUMBER: _ClassVar[int]
    tile_id: str
    slide_id: str
    position: TilePosition
    shot_a: Image
    shot_b: Image
    defocus_a_um: float
    defocus_b_um: float
    output_encoding: ImageEncoding
    pixel_size_um: float
    def __init__(self, tile_id: _Optional[str] = ..., slide_id: _Optional[str] = ..., position: _Optional[_Union[TilePosition, _Mapping]] = ..., shot_a: _Optional[_Union[Image, _Mapping]] = ..., shot_b: _Optional[_Union[Image, _Mapping]] = ..., defocus_a_um: _Optional[float] = ..., defocus_b_um: _Optional[float] = ..., output_encoding: _Optional[_Union[ImageEncoding, str]] = ..., pixel_size_um: _Optional[float] = ...) -> None: ...

class TileError(_message.Message):
    __slots__ = ("code", "status", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    status: str
    message: str
    def __init__(self, code: _Optional[int] = ..., status: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("decode_ms", "queue_ms", "inference_ms", "encode_ms", "total_ms")
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    ENCODE_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    decode_ms: float
    queue_ms: float
    inference_ms: float
    encode_ms: float
    total_ms: float
    def __init__(self, decode_ms: _Optional[float] = ..., queue_ms: _Optional[float] = ..., inference_ms: _Optional[float] = ..., encode_ms: _Optional[float] = ..., total_ms: _Optional[float] = ...) -> None: ...

class FuseResponse(_message.Message):
    __slots__ = ("tile_id", "slide_id", "position", "fused", "brenner_a", "brenner_b", "y1_shot", "timings", "error", "focus_offset_um", "rescan", "rescan_reason", "trained_focus_range_um")
    TILE_ID_FIELD_NUMBER: _ClassVar[int]
    SLIDE_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    FUSED_FIELD_NUMBER: _ClassVar[int]
    BRENNER_A_FIELD_NUMBER: _ClassVar[int]
    BRENNER_B_FIELD_NUMBER: _ClassVar[int]
    Y1_SHOT_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FOCUS_OFFSET_UM_FIELD_NUMBER: _ClassVar[int]
    RESCAN_FIELD_NUMBER: _ClassVar[int]
    RESCAN_REASON_FIELD_NUMBER: _ClassVar[int]
    TRAINED_FOCUS_RANGE_UM_FIELD_NUMBER: _ClassVar[int]
    tile_id: str
    slide_id: str
    position: TilePosition
    fused: Image
    brenner_a: float
    brenner_b: float
    y1_shot: Shot
    timings: Timings
    error: TileError
    focus_offset_um: float
    rescan: bool
    rescan_reason: str
    trained_focus_range_um: float
    def __init__(self, tile_id: _Optional[str] = ..., slide_id: _Optional[str] = ..., position: _Optional[_Union[TilePosition, _Mapping]] = ..., fused: _Optional[_Union[Image, _Mapping]] = ..., brenner_a: _Optional[float] = ..., brenner_b: _Optional[float] = ..., y1_shot: _Optional[_Union[Shot, str]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., error: _Optional[_Union[TileError, _Mapping]] = ..., focus_offset_um: _Optional[float] = ..., rescan: _Optional[bool] = ..., rescan_reason: _Optional[str] = ..., trained_focus_range_um: _Optional[float] = ...) -> None: ...

class FindFocusRequest(_message.Message):
    __slots__ = ("tile_id", "planes", "z_um")
    TILE_ID_FIELD_NUMBER: _ClassVar[int]
    PLANES_FIELD_NUMBER: _ClassVar[int]
    Z_UM_FIELD_NUMBER: _ClassVar[int]
    tile_id: str
    planes: _containers.RepeatedCompositeFieldContainer[Image]
    z_um: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, tile_id: _Optional[str] = ..., planes: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., z_um: _Optional[_Iterable[float]] = ...) -> None: ...

class FindFocusResponse(_message.Message):
    __slots__ = ("tile_id", "best_index", "best_z_um", "refined_z_um", "brenner")
    TILE_ID_FIELD_NUMBER: _ClassVar[int]
    BEST_INDEX_FIELD_NUMBER: _ClassVar[int]
    BEST_Z_UM_FIELD_NUMBER: _ClassVar[int]
    REFINED_Z_UM_FIELD_NUMBER: _ClassVar[int]
    BRENNER_FIELD_NUMBER: _ClassVar[int]
    tile_id: str
    best_index: int
    best_z_um: float
    refined_z_um: float
    brenner: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, tile_id: _Optional[str] = ..., best_index: _Optional[int] = ..., best_z_um: _Optional[float] = ..., refined_z_um: _Optional[float] = ..., brenner: _Optional[_Iterable[float]] = ...) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Optics(_message.Message):
    __slots__ = ("numerical_aperture", "refractive_index", "pixel_size_um", "wavelengths_um", "defocus_um", "focus_sigma_um")
    NUMERICAL_APERTURE_FIELD_NUMBER: _ClassVar[int]
    REFRACTIVE_INDEX_FIELD_NUMBER: _ClassVar[int]
    PIXEL_SIZE_UM_FIELD_NUMBER: _ClassVar[int]
    WAVELENGTHS_UM_FIELD_NUMBER: _ClassVar[int]
    DEFOCUS_UM_FIELD_NUMBER: _ClassVar[int]
    FOCUS_SIGMA_UM_FIELD_NUMBER: _ClassVar[int]
    numerical_aperture: float
    refractive_index: float
    pixel_size_um: float
    wavelengths_um: _containers.RepeatedScalarFieldContainer[float]
    defocus_um: _containers.RepeatedScalarFieldContainer[float]
    focus_sigma_um: float
    def __init__(self, numerical_aperture: _Optional[float] = ..., refractive_index: _Optional[float] = ..., pixel_size_um: _Optional[float] = ..., wavelengths_um: _Optional[_Iterable[float]] = ..., defocus_um: _Optional[_Iterable[float]] = ..., focus_sigma_um: _Optional[float] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_tile_width", "max_tile_height", "max_batch_size", "max_message_bytes", "max_concurrent_streams")
    MAX_TILE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    MAX_TILE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_STREAMS_FIELD_NUMBER: _ClassVar[int]
    max_tile_width: int
    max_tile_height: int
    max_batch_size: int
    max_message_bytes: int
    max_concurrent_streams: int
    def __init__(self, max_tile_width: _Optional[int] = ..., max_tile_height: _Optional[int] = ..., max_batch_size: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., max_concurrent_streams: _Optional[int] = ...) -> None: ...

class GetInfoResponse(_message.Message):
    __slots__ = ("service_version", "model_name", "model_version", "backend", "optics", "limits", "patch_size", "patch_overlap", "model_metadata")
    class ModelMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SERVICE_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    OPTICS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    PATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    PATCH_OVERLAP_FIELD_NUMBER: _ClassVar[int]
    MODEL_METADATA_FIELD_NUMBER: _ClassVar[int]
    service_version: str
    model_name: str
    model_version: str
    backend: str
    optics: Optics
    limits: Limits
    patch_size: int
    patch_overlap: int
    model_metadata: _containers.ScalarMap[str, str]
    def __init__(self, service_version: _Optional[str] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., backend: _Optional[str] = ..., optics: _Optional[_Union[Optics, _Mapping]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., patch_size: _Optional[int] = ..., patch_overlap: _Optional[int] = ..., model_metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...
