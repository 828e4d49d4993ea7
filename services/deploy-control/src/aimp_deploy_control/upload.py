"""A streamed multipart upload: one file part to a temporary file, small text fields kept.

The body is parsed as it arrives (python-multipart's push parser): the file's bytes go
to a temporary file while their SHA-256 and size are counted, so a model of any size
costs a fixed amount of memory, and a file over the size limit is refused (413) as
soon as the limit is passed, without reading the rest.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from aimp_core.errors import BadRequest, PayloadTooLarge

#: A text field (the JSON metadata) may be this long; a schema of 256 tensors fits.
MAX_FIELD_BYTES = 256 * 1024
#: Text fields per upload; the API knows one ("metadata").
MAX_FIELDS = 8
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class Upload:
    """What arrived: the file (in ``path``, removed by :meth:`discard`) and the fields."""

    path: Path | None = None
    field_name: str | None = None
    filename: str = ""
    sha256: str = ""
    size_bytes: int = 0
    fields: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def safe_filename(name: str) -> str:
    """The base name of an uploaded file with only harmless characters (shown, never used
    as a path)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE.sub("_", base).lstrip(".")[:200]
    return cleaned or "model"


def boundary_of(content_type: str | None) -> bytes:
    kind, params = parse_options_header(content_type or "")
    if kind != b"multipart/form-data" or b"boundary" not in params:
        raise BadRequest(
            "send the model as multipart/form-data with a 'file' part and a 'metadata' part "
            '(JSON), e.g. curl -F file=@model.onnx -F \'metadata={"framework": "onnx"}\''
        )
    return params[b"boundary"]


class _Receiver:
    """python-multipart callbacks: collect the parts of one upload."""

    def __init__(self, tmp_dir: Path, max_file_bytes: int) -> None:
        self.tmp_dir = tmp_dir
        self.max_file_bytes = max_file_bytes
        self.result = Upload()
        self.pending: list[bytes] = []  # file bytes parsed but not yet written
        self._digest = hashlib.sha256()
        self._header = b""
        self._value = b""
        self._disposition = b""
        self._name = ""
        self._is_file = False
        self._text = bytearray()

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }

    def on_part_begin(self) -> None:
        self._disposition, self._text = b"", bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        if self._header.lower() == b"content-disposition":
            self._disposition = self._value
        self._header, self._value = b"", b""

    def on_headers_finished(self) -> None:
        _kind, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise BadRequest("a multipart part has no name in its Content-Disposition header")
        self._name = options[b"name"].decode("utf-8", errors="replace")
        self._is_file = b"filename" in options
        if self._is_file:
            if self.result.path is not None:
                raise BadRequest("send exactly one file per upload (this one has several)")
            self.result.field_name = self._name
            self.result.filename = safe_filename(
                options[b"filename"].decode("utf-8", errors="replace")
            )
            self.result.path = self.tmp_dir / f"upload-{uuid.uuid4().hex}"
        elif len(self.result.fields) >= MAX_FIELDS:
            raise BadRequest(f"an upload has at most {MAX_FIELDS} text fields")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._is_file:
            self.result.size_bytes += len(chunk)
            if self.result.size_bytes > self.max_file_bytes:
                raise PayloadTooLarge(
                    f"the model file is larger than {self.max_file_bytes} bytes, the limit "
                    "here (AIMP_DEPLOY_CONTROL_UPLOAD_MAX_BYTES raises it)"
                )
            self._digest.update(chunk)
            self.pending.append(chunk)
        else:
            self._text += chunk
            if len(self._text) > MAX_FIELD_BYTES:
                raise BadRequest(
                    f"field {self._name!r} is longer than {MAX_FIELD_BYTES} bytes; only the file "
                    "may be large"
                )

    def on_part_end(self) -> None:
        if self._is_file:
            self.result.sha256 = self._digest.hexdigest()
        else:
            self.result.fields[self._name] = self._text.decode("utf-8", errors="replace")


def _append(path: Path, chunks: list[bytes]) -> None:
    with open(path, "ab") as out:
        for chunk in chunks:
            out.write(chunk)


async def receive(
    content_type: str | None,
    body: AsyncIterator[bytes],
    *,
    tmp_dir: Path,
    max_file_bytes: int,
) -> Upload:
    """Parse a multipart body as it streams in; the caller must :meth:`Upload.discard`."""
    boundary = boundary_of(content_type)
    receiver = _Receiver(tmp_dir, max_file_bytes)
    parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
    try:
        async for data in body:
            parser.write(data)
            if receiver.pending:
                path = receiver.result.path
                assert path is not None
                chunks, receiver.pending = receiver.pending, []
                await asyncio.to_thread(_append, path, chunks)
        parser.finalize()
        if receiver.result.path is not None and not receiver.result.path.exists():
            receiver.result.path.touch()  # an empty file still arrived
    except FormParserError as exc:
        receiver.result.discard()
        raise BadRequest(f"the multipart body is malformed: {exc}") from None
    except BaseException:
        receiver.result.discard()
        raise
    return receiver.result


def make_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) readable by this user only; call it in a thread."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path
