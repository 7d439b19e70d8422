"""Weights W (square float64 matrix) <-> CSV text, compatible with np.loadtxt(delimiter=",").

Formatting uses the shortest repr that round-trips, so W survives text bit for bit; parsing validates
every cell and reports the 1-based line and column of the first problem. Parsing is linear in the
size of the text: the patterns are unambiguous and possessive, so no input makes them backtrack.
"""

from __future__ import annotations

import re
from typing import Final

import numpy as np

_UTF8_BOM: Final = b"\xef\xbb\xbf"
_NUMBER: Final = r"[+-]?+(?:[0-9]++(?:\.[0-9]*+)?+|\.[0-9]++)(?:[eE][+-]?+[0-9]++)?+"
_DECIMAL: Final = re.compile(_NUMBER)
_NUMBERS_LINE: Final = re.compile(rf"[ \t]*+{_NUMBER}[ \t]*+(?:,[ \t]*+{_NUMBER}[ \t]*+)*+")
_NON_FINITE_WORDS: Final = frozenset({"nan", "inf", "infinity"})
_BYTES_PER_VALUE: Final = 28  # widest np.savetxt "%.18e" value (26) + delimiter + one space
_BYTES_PER_ROW: Final = 2  # CRLF
_ALLOWANCE: Final = 4096  # BOM and a header comment


class WeightsCsvError(ValueError):
    """A weights CSV was refused: `.row` / `.column` are 1-based line and column numbers, or None."""

    def __init__(self, message: str, *, row: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.row = row
        self.column = column


def max_csv_bytes(max_channels: int) -> int:
    """An upper bound on the size of a legitimate weights CSV, so a server can refuse larger uploads early."""
    if type(max_channels) is not int or max_channels < 1:
        raise ValueError(f"max_channels is {max_channels!r}; expected an integer >= 1")
    return max_channels * (max_channels * _BYTES_PER_VALUE + _BYTES_PER_ROW) + _ALLOWANCE


def format_weights_csv(weights: np.ndarray) -> str:
    """W as CSV text (one row per line, shortest round-trip floats) that parses back bit-exactly."""
    matrix = np.asarray(weights)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 1:
        raise ValueError(f"weights have shape {matrix.shape}; expected a square (n, n) matrix with n >= 1")
    kind, size = matrix.dtype.kind, matrix.dtype.itemsize
    if not ((kind == "f" and size <= 8) or (kind in "iu" and size <= 4)):
        raise ValueError(f"weights have dtype {matrix.dtype}; expected real numbers representable as float64")
    matrix = matrix.astype(np.float64, copy=False)
    if not np.isfinite(matrix).all():
        row, column = (int(i) for i in np.argwhere(~np.isfinite(matrix))[0])
        raise ValueError(f"weights[{row}, {column}] is not finite; expected finite numbers only")
    return "".join(",".join(map(repr, row)) + "\n" for row in matrix.tolist())


def _decode_text(content: str | bytes | bytearray | memoryview) -> str:
    """The CSV as text: bytes must be UTF-8 (a byte-order mark is dropped)."""
    if isinstance(content, str):
        return content.removeprefix("\ufeff")
    raw = bytes(content).removeprefix(_UTF8_BOM)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise WeightsCsvError(
            f"line {line}: byte 0x{raw[exc.start]:02x} at offset {exc.start} is not valid UTF-8; "
            "expected a UTF-8 (or ASCII) text file",
            row=line,
        ) from None


def _data_lines(text: str) -> list[tuple[int, str]]:
    """(1-based line number, content) of every line holding data: comments ('#' to end) and blanks dropped."""
    lines = []
    for number, line in enumerate(text.split("\n"), start=1):
        content = line.split("#", 1)[0].strip()
        if content:
            lines.append((number, content))
    return lines


def _cell_error(line: int, column: int, cell: str) -> WeightsCsvError:
    """Explain why one cell is not a finite number."""
    shown = cell if len(cell) <= 40 else cell[:37] + "..."
    if not cell:
        what = "is empty"
    elif cell.lower().lstrip("+-") in _NON_FINITE_WORDS:
        what = f"is {shown!r}, which is not finite"
    elif any(mark in cell for mark in " \t"):
        what = f"is {shown!r}: values separated by spaces or tabs; expected comma-separated values"
        return WeightsCsvError(f"line {line}, column {column} {what}", row=line, column=column)
    else:
        what = f"is {shown!r}, not a number"
    return WeightsCsvError(
        f"line {line}, column {column} {what}; expected a finite decimal number such as -0.25 or 1e-3",
        row=line,
        column=column,
    )


def _values(count: int) -> str:
    """'1 value' / 'n values', for messages."""
    return f"{count} value" if count == 1 else f"{count} values"


def _parse_row(line: int, content: str, width: int | None, max_channels: int) -> list[float]:
    """One data line as floats; `width` is the column count every line must have (None for the first)."""
    if ";" in content:
        raise WeightsCsvError(f"line {line} uses ';' as a separator; expected comma-separated values (',')", row=line)
    cells = content.split(",")
    if width is not None and len(cells) != width:
        raise WeightsCsvError(
            f"line {line} has {_values(len(cells))}; expected {width} like the first data line (rows differ in length)",
            row=line,
        )
    if len(cells) > max_channels:
        raise WeightsCsvError(
            f"line {line} has {_values(len(cells))}; expected at most {max_channels} (the channel limit)", row=line
        )
    if not _NUMBERS_LINE.fullmatch(content):
        for column, raw in enumerate(cells, start=1):
            cell = raw.strip()
            if not _DECIMAL.fullmatch(cell):
                raise _cell_error(line, column, cell)
    return list(map(float, cells))


def parse_weights_csv(content: str | bytes | bytearray | memoryview, *, max_channels: int) -> np.ndarray:
    """Validate and parse a weights CSV into a square float64 matrix with at most max_channels rows.

    Raises WeightsCsvError saying what was wrong (with line/column where it applies) and what was expected.
    """
    lines = _data_lines(_decode_text(content))
    if not lines:
        raise WeightsCsvError("the file holds no numbers; expected n lines of n comma-separated numbers")
    width = None
    rows: list[list[float]] = []
    for line, text in lines:
        row = _parse_row(line, text, width, max_channels)
        width = len(row)
        if len(rows) == max_channels:
            raise WeightsCsvError(
                f"more than {max_channels} rows (line {line}); expected at most the channel limit", row=line
            )
        rows.append(row)
    if len(rows) != width:
        raise WeightsCsvError(f"{len(rows)} rows x {width} columns is not square; expected n rows of n values")
    matrix = np.array(rows, dtype=np.float64)
    _check_finite(matrix, [line for line, _ in lines])
    return matrix


def _check_finite(matrix: np.ndarray, line_numbers: list[int]) -> None:
    """Refuse values that overflowed to infinity (e.g. 1e999), naming the first one's line and column."""
    infinite = ~np.isfinite(matrix)
    if infinite.any():
        row, column = (int(i) for i in np.argwhere(infinite)[0])
        line = line_numbers[row]
        raise WeightsCsvError(
            f"line {line}, column {column + 1} overflows to infinity; expected finite numbers within float64 range",
            row=line,
            column=column + 1,
        )
