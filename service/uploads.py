"""Reading a weights upload: the raw `text/csv` body or the multipart field `file`, within a byte limit."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from lrr_service.core.vocabulary import ErrorCode
from lrr_service.service.errors import ServiceError

MULTIPART_OVERHEAD_BYTES = 64 * 1024
"""Room for multipart boundaries and part headers on top of the CSV itself."""

LARGE_UPLOAD_BYTES = 1024 * 1024
"""Uploads declaring more than this (or no length) are read and parsed one at a time (ServiceContext.upload_slot)."""


def _too_large(limit: int, what: str) -> ServiceError:
    return ServiceError(
        f"{what} exceeds the upload limit of {limit} bytes (LRR_MAX_CSV_BYTES); "
        "expected a CSV of at most LRR_MAX_CHANNELS x LRR_MAX_CHANNELS values",
        code=ErrorCode.TOO_LARGE,
    )


def is_large_upload(request: Request) -> bool:
    """True unless the request declares a body of at most LARGE_UPLOAD_BYTES (chunked bodies count as large)."""
    declared = request.headers.get("content-length", "")
    return not declared.isdigit() or int(declared) > LARGE_UPLOAD_BYTES


async def read_csv_upload(request: Request, limit: int) -> list[bytes]:
    """The CSV bytes of a PUT /streams/{key}/weights request, in the pieces they arrived in (never joined:
    a 20 MB copy would hold the GIL); raises ServiceError (empty_upload, missing_file, bad_multipart, too_large)."""
    is_multipart = request.headers.get("content-type", "").lower().startswith("multipart/form-data")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + (MULTIPART_OVERHEAD_BYTES if is_multipart else 0):
        raise _too_large(limit, f"the request body ({declared} bytes)")
    pieces = [await _read_multipart_file(request, limit)] if is_multipart else await _read_body(request, limit)
    if all(piece.isspace() or not piece for piece in pieces):  # no strip(): it would copy the upload
        raise ServiceError(
            "the upload is empty; expected CSV text, n lines of n comma-separated numbers", code=ErrorCode.EMPTY_UPLOAD
        )
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
        raise ServiceError(
            f"the multipart body could not be read: {exc.detail}", code=ErrorCode.BAD_MULTIPART
        ) from None
    try:
        field = form.get("file")
        if field is None:
            raise ServiceError(
                f"the multipart body has no field named 'file' (fields: {sorted(form.keys())}); "
                "send the CSV as -F file=@weights.csv",
                code=ErrorCode.MISSING_FILE,
            )
        if isinstance(field, UploadFile):
            content = await field.read(limit + 1)
        else:
            content = field.encode()
        if len(content) > limit:
            raise _too_large(limit, "the uploaded file")
        return content
    finally:
        await form.close()
