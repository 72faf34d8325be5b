"""Event encoding (msgpack via msgspec) and frame compression (zstd)."""

from __future__ import annotations

import struct

import msgspec
import zstandard

from journal.event import AuditEvent, EventSummary

#: Compression level used for frames unless the journal is opened with another.
DEFAULT_LEVEL = 3
#: Size of a trained dictionary in bytes.
DICT_SIZE = 100 * 1024
#: Frames with fewer events than this are compressed against the dictionary.
DICT_MAX_EVENTS = 32

_encoder = msgspec.msgpack.Encoder()
_event_list_decoder = msgspec.msgpack.Decoder(list[AuditEvent])
_event_decoder = msgspec.msgpack.Decoder(AuditEvent)
_summary_decoder = msgspec.msgpack.Decoder(EventSummary)
_raw_list_decoder = msgspec.msgpack.Decoder(list[msgspec.Raw])
_ARRAY32 = struct.Struct(">BI")


def encode_event(event: AuditEvent) -> bytes:
    """Return the msgpack bytes of one event as stored inside a frame."""
    return _encoder.encode(event)


def build_payload(encoded: list[bytes]) -> bytes:
    """Join encoded events into one msgpack array (the frame's raw payload)."""
    return _ARRAY32.pack(0xDD, len(encoded)) + b"".join(encoded)


def decode_payload(payload: bytes) -> list[AuditEvent]:
    """Decode a frame's raw payload into events (``seq`` still unset)."""
    return _event_list_decoder.decode(payload)


def split_payload(payload: bytes) -> list[msgspec.Raw]:
    """Split a frame's raw payload into the undecoded bytes of each event."""
    return _raw_list_decoder.decode(payload)


def decode_event(data: msgspec.Raw | bytes) -> AuditEvent:
    """Decode one event from its stored bytes (``seq`` still unset)."""
    return _event_decoder.decode(data)


def decode_summary(data: msgspec.Raw | bytes) -> EventSummary:
    """Decode the indexed fields of one event from its stored bytes."""
    return _summary_decoder.decode(data)


def payload_count(payload: bytes) -> int | None:
    """Return the array length a payload declares, or ``None`` if it is not an array."""
    if len(payload) >= 5 and payload[0] == 0xDD:
        return int(_ARRAY32.unpack_from(payload)[1])
    if len(payload) >= 3 and payload[0] == 0xDC:
        return int(struct.unpack_from(">H", payload, 1)[0])
    if payload and 0x90 <= payload[0] <= 0x9F:
        return payload[0] & 0x0F
    return None


class Compressor:
    """zstd compression for one segment, with its optional dictionary."""

    def __init__(self, level: int, dictionary: bytes = b"") -> None:
        self.dictionary = dictionary
        self._plain = zstandard.ZstdCompressor(level=level, write_checksum=False)
        self._with_dict: zstandard.ZstdCompressor | None = None
        if dictionary:
            zdict = zstandard.ZstdCompressionDict(dictionary)
            # The segment header names the dictionary, so frames omit its id.
            self._with_dict = zstandard.ZstdCompressor(
                level=level,
                dict_data=zdict,
                write_dict_id=False,
                write_checksum=False,
            )

    def compress(self, payload: bytes, count: int) -> tuple[bytes, bool]:
        """Compress *payload*; return the bytes and whether the dictionary was used."""
        if self._with_dict is not None and count < DICT_MAX_EVENTS:
            return self._with_dict.compress(payload), True
        return self._plain.compress(payload), False


class Decompressor:
    """zstd decompression for one segment, bounded by the declared raw size."""

    def __init__(self, dictionary: bytes = b"") -> None:
        self._plain = zstandard.ZstdDecompressor()
        self._with_dict: zstandard.ZstdDecompressor | None = None
        if dictionary:
            zdict = zstandard.ZstdCompressionDict(dictionary)
            self._with_dict = zstandard.ZstdDecompressor(dict_data=zdict)

    def decompress(self, data: bytes, raw_len: int, uses_dict: bool) -> bytes:
        """Return exactly *raw_len* bytes or raise :class:`zstandard.ZstdError`/``ValueError``."""
        ctx = self._plain
        if uses_dict:
            if self._with_dict is None:
                raise ValueError("frame uses a dictionary but the segment has none")
            ctx = self._with_dict
        # A damaged header could claim any content size; the caller already
        # bounded raw_len, and a mismatch is rejected rather than trusted.
        declared = zstandard.frame_content_size(data)
        if declared != raw_len:
            raise ValueError(
                f"zstd frame declares {declared} bytes, frame header {raw_len}"
            )
        out = ctx.decompress(data, max_output_size=raw_len)
        if len(out) != raw_len:
            raise ValueError(f"zstd frame gave {len(out)} bytes, expected {raw_len}")
        return out


def train_dictionary(samples: list[bytes]) -> bytes:
    """Train a zstd dictionary on encoded events; return b"" when there are too few."""
    if len(samples) < 64 or sum(map(len, samples)) < 2 * DICT_SIZE:
        return b""
    try:
        zdict = zstandard.train_dictionary(
            DICT_SIZE, list[bytes | bytearray | memoryview](samples)
        )
    except zstandard.ZstdError:
        return b""
    return zdict.as_bytes()
