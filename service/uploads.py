"""Reading a weights upload: the raw `text/csv` body or the multipart field `file`, within a byte limit."""

from __future__ import annotations

from fastapi import Request, status
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from lrr_service.core.vocabulary import ErrorCode

MULTIPART_OVERHEAD_BYTES = 64 * 1024
"""Room for multipart boundaries and part headers on top of the CSV itself."""

LARGE_UPLOAD_BYTES = 1024 * 1024
"""Uploads declaring more than this (or no length) are read and parsed one at a time (ServiceContext.upload_slot)."""


class UploadError(Exception):
    """An upload that could not be read: `.status_code` (400 or 413) and protocol `.code`."""

    def __init__(self, status_code: int, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code


def _too_large(limit: int, what: str) -> UploadError:
    return UploadError(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, ErrorCode.TOO_LARGE,
                       f"{what} exceeds the upload limit of {limit} bytes (LRR_MAX_CSV_BYTES); "
                       "expected a CSV of at most LRR_MAX_CHANNELS x LRR_MAX_CHANNELS values")  # fmt: skip


def is_large_upload(request: Request) -> bool:
    """True unless the request declares a body of at most LARGE_UPLOAD_BYTES (chunked bodies count as large)."""
    declared = request.headers.get("content-length", "")
    return not declared.isdigit() or int(declared) > LARGE_UPLOAD_BYTES


async def read_csv_upload(request: Request, limit: int) -> list[bytes]:
    """The CSV bytes of a PUT /streams/{key}/weights request, in the pieces they arrived in (never joined:
    a 20 MB copy would hold the GIL); raises UploadError (400, 413)."""
    is_multipart = request.headers.get("content-type", "").lower().startswith("multipart/form-data")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + (MULTIPART_OVERHEAD_BYTES if is_multipart else 0):
        raise _too_large(limit, f"the request body ({declared} bytes)")
    pieces = [await _read_multipart_file(request, limit)] if is_multipart else await _read_body(request, limit)
    if all(piece.isspace() or not piece for piece in pieces):  # no strip(): it would copy the upload
        raise UploadError(status.HTTP_400_BAD_REQUEST, ErrorCode.EMPTY_UPLOAD,
                          "the upload is empty; expected CSV text, n lines of n comma-separated numbers")  # fmt: skip
    return pieces


async def _read_body(request: Request, limit: int) -> list[bytes]:
    """The raw body as it arrived, refusing it as soon as it grows past `limit` (chunked uploads included)."""
    pieces, size = [], 0
    async for piece in request.stream():
        size += len(piece)
        if size > limit:
            raise _too_large(limit, "the request body")
        pieces.append(piece)
    return pieces


async def _read_multipart_file(request: Request, limit: int) -> bytes:
    """The content of the multipart field `file` (a file part or a plain field)."""
    try:
        form = await request.form(max_files=1, max_fields=16, max_part_size=limit)
    except HTTPException as exc:  # starlette's own class (FastAPI's is a subclass): multipart parse failures
        raise UploadError(status.HTTP_400_BAD_REQUEST, ErrorCode.BAD_MULTIPART,
                          f"the multipart body could not be read: {exc.detail}") from None  # fmt: skip
    try:
        field = form.get("file")
        if field is None:
            raise UploadError(status.HTTP_400_BAD_REQUEST, ErrorCode.MISSING_FILE,
                              f"the multipart body has no field named 'file' (fields: {sorted(form.keys())}); "
                              "send the CSV as -F file=@weights.csv")  # fmt: skip
        if isinstance(field, UploadFile):
            content = await field.read(limit + 1)
        else:
            content = field.encode()
        if len(content) > limit:
            raise _too_large(limit, "the uploaded file")
        return content
    finally:
        await form.close()
