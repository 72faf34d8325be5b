"""The hash chain that makes tampering evident: links and keys.

Every frame stores ``link = BLAKE2b-128(prev_link || frame fields || payload)``,
where ``payload`` is the frame's uncompressed bytes. With a key the hash is
BLAKE2b in keyed mode, which is a MAC: a link that a verifier with the key
accepts cannot be computed without the key.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

from journal.errors import InvalidArgument

LINK_SIZE = 16
ZERO_LINK = bytes(LINK_SIZE)
KEY_ID_SIZE = 8
_FIELDS = struct.Struct("<BIQI")
_MAX_KEY = 64


def normalize_key(key: bytes | str | None) -> bytes | None:
    """Return *key* as BLAKE2b key bytes; longer keys are hashed down to 64 bytes."""
    if key is None:
        return None
    if isinstance(key, str):
        key = key.encode()
    if not isinstance(key, bytes | bytearray):
        raise InvalidArgument(f"key must be bytes or str, got {type(key).__name__}")
    key = bytes(key)
    if len(key) < 16:
        raise InvalidArgument(
            f"key is {len(key)} bytes; use at least 16 random bytes, for example "
            "`head -c 32 /dev/urandom > journal.key`"
        )
    if len(key) > _MAX_KEY:
        key = hashlib.blake2b(key, digest_size=_MAX_KEY).digest()
    return key


def read_key_file(path: str | os.PathLike[str]) -> bytes:
    """Read a key file; surrounding whitespace is stripped so text keys work too."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise InvalidArgument(
            f"cannot read key file {os.fspath(path)}: {err.strerror}"
        ) from err
    data = data.strip()
    if not data:
        raise InvalidArgument(f"key file {os.fspath(path)} is empty")
    return data


def key_id(key: bytes | None) -> bytes:
    """Return the 8-byte fingerprint stored in segment headers (zeros: no key)."""
    if key is None:
        return bytes(KEY_ID_SIZE)
    return hashlib.blake2b(b"journal key id", key=key, digest_size=KEY_ID_SIZE).digest()


def next_link(
    key: bytes | None,
    prev: bytes,
    kind: int,
    count: int,
    first_seq: int,
    payload: bytes,
) -> bytes:
    """Return the chain link of a frame that follows the link *prev*."""
    h = hashlib.blake2b(key=key or b"", digest_size=LINK_SIZE)
    h.update(prev)
    h.update(_FIELDS.pack(kind, count, first_seq, len(payload)))
    h.update(payload)
    return h.digest()
