"""The fork server's wire format: frames of a 4-byte big-endian length and UTF-8 JSON."""

from __future__ import annotations

import json
import os
import struct
from typing import Any

__all__ = ["FRAME_HEADER", "MAX_FRAME_BYTES", "encode_frame", "FrameReader", "write_all"]

FRAME_HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 256 * 1024 * 1024    # a request/response bigger than this is a protocol error


def encode_frame(obj: Any) -> bytes:
    body = json.dumps(obj).encode("utf-8")
    return FRAME_HEADER.pack(len(body)) + body


class FrameReader:
    """Incremental decoder: feed bytes as they arrive, get whole frames back."""

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_frame_bytes

    def feed(self, data: bytes) -> list[Any]:
        self._buf += data
        frames = []
        while len(self._buf) >= FRAME_HEADER.size:
            (size,) = FRAME_HEADER.unpack_from(self._buf)
            if size > self._max:
                raise ValueError(f"frame of {size} bytes exceeds the {self._max}-byte limit")
            end = FRAME_HEADER.size + size
            if len(self._buf) < end:
                break
            frames.append(json.loads(bytes(self._buf[FRAME_HEADER.size:end]).decode("utf-8")))
            del self._buf[:end]
        return frames


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
