"""Tests of core.weights_csv: bit-exact round trips through both parsers, and every refusal with its line/column."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lrr_service.core.weights_csv import WeightsCsvError, format_weights_csv, max_csv_bytes, parse_weights_csv


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """True when both float64 arrays hold identical bit patterns (tells -0.0 from 0.0)."""
    return a.shape == b.shape and bool((a.view(np.uint64) == b.view(np.uint64)).all())


def refused(content: str | bytes, max_channels: int = 4) -> WeightsCsvError:
    """The WeightsCsvError parse_weights_csv raises for content (the test fails if it parses)."""
    with pytest.raises(WeightsCsvError) as caught:
        parse_weights_csv(content, max_channels=max_channels)
    return caught.value


square_matrices = st.integers(min_value=1, max_value=6).flatmap(
    lambda n: hnp.arrays(np.float64, (n, n), elements=st.floats(allow_nan=False, allow_infinity=False))
)


@settings(max_examples=200, deadline=None)
@given(square_matrices)
def test_round_trip_is_bit_exact_through_both_parsers(weights: np.ndarray) -> None:
    text = format_weights_csv(weights)
    assert same_bits(parse_weights_csv(text, max_channels=6), weights)
    assert same_bits(np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2), weights)


def test_round_trip_keeps_negative_zero_subnormals_and_extremes() -> None:
    weights = np.array(
        [[-0.0, 5e-324, -2.2250738585072014e-308], [1.7976931348623157e308, 0.1, -1e-310], [0, 1, 2]], dtype=np.float64
    )
    text = format_weights_csv(weights)
    assert same_bits(parse_weights_csv(text.encode("utf-8"), max_channels=3), weights)
    assert same_bits(np.loadtxt(io.StringIO(text), delimiter=","), weights)


def test_format_accepts_float32_and_integers_exactly() -> None:
    single = np.array([[0.1, -3.5], [1e-40, 2.0]], dtype=np.float32)
    assert same_bits(parse_weights_csv(format_weights_csv(single), max_channels=2), single.astype(np.float64))
    assert parse_weights_csv(format_weights_csv(np.eye(2, dtype=np.int32)), max_channels=2).tolist() == [[1, 0], [0, 1]]


def test_reads_files_written_by_numpy_savetxt() -> None:
    weights = np.random.default_rng(1).standard_normal((5, 5))
    for fmt in ("%.18e", "%.17g"):
        buffer = io.StringIO()
        np.savetxt(buffer, weights, delimiter=",", fmt=fmt)
        assert same_bits(parse_weights_csv(buffer.getvalue(), max_channels=5), weights)


@pytest.mark.parametrize(
    "content",
    [
        b"\xef\xbb\xbf1,2\n3,4\n",
        "\ufeff1,2\n3,4",
        "1,2\r\n3,4\r\n",
        "  1 , 2  \n\t3,4\t\n\n\n   \n",
        "# weights exported by rig 3\n1,2  # first row\n\n3,4\n",
        "+1,2.\n3e0,.4e1",
    ],
    ids=["bom bytes", "bom text", "crlf", "whitespace and blank lines", "comments", "number forms"],
)
def test_tolerated_layouts_parse_to_the_same_matrix(content: str | bytes) -> None:
    assert parse_weights_csv(content, max_channels=2).tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize(
    ("content", "row", "column", "words"),
    [
        ("", None, None, "holds no numbers; expected n lines of n comma-separated numbers"),
        ("\n  \n# only a comment\n", None, None, "holds no numbers"),
        (b"\xef\xbb\xbf", None, None, "holds no numbers"),
        ("1,2\n3", 2, None, "line 2 has 1 value; expected 2"),
        ("1,2,3\n4,5\n6,7,8", 2, None, "line 2 has 2 values; expected 3"),
        ("1,2\n3,x4", 2, 2, "line 2, column 2 is 'x4', not a number; expected a finite decimal number"),
        ("1,,2\n3,4,5\n6,7,8", 1, 2, "line 1, column 2 is empty"),
        ("1,2,\n3,4,\n", 1, 3, "line 1, column 3 is empty"),
        ("1_0,2\n3,4", 1, 1, "'1_0', not a number"),
        ("\u0661,2\n3,4", 1, 1, "not a number"),
        ("0x1p3,2\n3,4", 1, 1, "'0x1p3', not a number"),
        ("1,2\nNaN,4", 2, 1, "line 2, column 1 is 'NaN', which is not finite"),
        ("1,2\n3,inf", 2, 2, "'inf', which is not finite"),
        ("1,-Infinity\n3,4", 1, 2, "which is not finite"),
        ("1,2\n3,1e999", 2, 2, "line 2, column 2 overflows to infinity; expected finite numbers"),
        ("1;2\n3;4", 1, None, "line 1 uses ';' as a separator; expected comma-separated values"),
        ("1,2\n3;4", 2, None, "line 2 uses ';'"),
        ("1 2\n3 4", 1, 1, "separated by spaces or tabs; expected comma-separated values"),
        ("1\t2\n3\t4", 1, 1, "separated by spaces or tabs"),
        ("1,2\n3,4\n5,6", None, None, "3 rows x 2 columns is not square; expected n rows of n values"),
        ("1,2,3\n4,5,6", None, None, "2 rows x 3 columns is not square"),
        ("1,2,3,4,5\n", 1, None, "line 1 has 5 values; expected at most 4 (the channel limit)"),
        ("1\n2\n3\n4\n5\n", 5, None, "more than 4 rows (line 5); expected at most the channel limit"),
        (b"1,2\n3,\xff\n", 2, None, "line 2: byte 0xff at offset 6 is not valid UTF-8; expected a UTF-8"),
        (b"\xff\xfe1\x002\x00", 1, None, "is not valid UTF-8"),
    ],
    ids=[
        "empty",
        "blank and comments only",
        "bom only",
        "ragged short",
        "ragged middle",
        "non-numeric",
        "empty cell",
        "trailing comma",
        "underscore",
        "non-ascii digit",
        "hex float",
        "nan",
        "inf",
        "minus infinity",
        "overflow",
        "semicolon",
        "semicolon later",
        "spaces",
        "tabs",
        "more rows",
        "more columns",
        "too many columns",
        "too many rows",
        "bad utf-8",
        "utf-16",
    ],
)
def test_refusals_name_line_column_and_expectation(
    content: str | bytes, row: int | None, column: int | None, words: str
) -> None:
    error = refused(content)
    assert (error.row, error.column) == (row, column)
    assert words in str(error)
    assert "expected" in str(error)


def test_reported_line_counts_comments_and_blank_lines() -> None:
    error = refused("# header\n\n1,2\n3,oops\n")
    assert (error.row, error.column) == (4, 2)


def test_long_offending_text_is_shortened() -> None:
    error = refused("1," + "y" * 5000 + "\n3,4")
    assert (error.row, error.column) == (1, 2)
    assert len(str(error)) < 200


def test_error_is_a_value_error() -> None:
    assert isinstance(refused("x"), ValueError)


@pytest.mark.parametrize(
    ("weights", "words"),
    [
        (np.zeros((2, 3)), "expected a square (n, n) matrix"),
        (np.zeros(4), "expected a square (n, n) matrix"),
        (np.zeros((0, 0)), "n >= 1"),
        (np.array([[0.0, np.nan], [0.0, 0.0]]), "weights[0, 1] is not finite"),
        (np.array([[np.inf]]), "weights[0, 0] is not finite"),
        (np.zeros((2, 2), dtype=complex), "expected real numbers"),
        (np.zeros((2, 2), dtype=object), "expected real numbers representable as float64"),
        (np.zeros((2, 2), dtype=np.int64), "expected real numbers representable as float64"),
    ],
)
def test_format_refuses_what_the_parser_would_reject(weights: np.ndarray, words: str) -> None:
    with pytest.raises(ValueError) as caught:
        format_weights_csv(weights)
    assert words in str(caught.value)
    assert "expected" in str(caught.value)


@pytest.mark.parametrize("max_channels", [1, 3, 64])
def test_max_csv_bytes_bounds_legitimate_files(max_channels: int) -> None:
    widest = np.full((max_channels, max_channels), -2.2250738585072014e-308)
    savetxt = io.StringIO()
    np.savetxt(savetxt, widest, delimiter=",")
    ours = format_weights_csv(widest)
    limit = max_csv_bytes(max_channels)
    assert len(savetxt.getvalue().replace("\n", "\r\n").encode()) + 3 <= limit
    assert len(ours.encode()) <= limit
    assert limit < max_csv_bytes(max_channels + 1)


def test_max_csv_bytes_refuses_non_positive_channel_counts() -> None:
    for bad in (0, -1, True):
        with pytest.raises(ValueError, match="expected an integer >= 1"):
            max_csv_bytes(bad)


@pytest.mark.timeout(30)  # a hang guard: the backtracking pattern took hours on this input
@pytest.mark.parametrize("cell", ["1" * 1_000_000 + "x", "1" * 500_000 + "." + "2" * 500_000 + "e"])
def test_parsing_a_megabyte_cell_that_is_almost_a_number_is_linear(cell: str) -> None:
    with pytest.raises(WeightsCsvError, match="line 1, column 1") as info:
        parse_weights_csv(cell + "\n", max_channels=4)
    assert (info.value.row, info.value.column) == (1, 1)
