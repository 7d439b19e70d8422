"""The vocabulary of core/vocabulary.py is the one the documentation lists: no code undocumented,
no documented code the server does not have, and the same HTTP status in both places."""

from __future__ import annotations

import re
from pathlib import Path

from lrr_service.core.vocabulary import ErrorCode, Mode

DOCS = Path(__file__).resolve().parents[1] / "docs"


def table_rows(document: str, heading: str) -> list[list[str]]:
    """The cells of the markdown table under `heading` in docs/<document> (header and rule dropped)."""
    text = (DOCS / document).read_text(encoding="utf-8")
    section = text.split(heading + "\n", 1)[1]
    table = next(block.strip() for block in section.split("\n\n") if block.strip().startswith("|"))
    rows = []
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and not set(cells[0]) <= set("-: "):
            rows.append(cells)
    return rows[1:]


def test_protocol_md_lists_exactly_the_frame_error_codes() -> None:
    documented = [re.fullmatch(r"`([a-z_]+)`", row[0]).group(1) for row in table_rows("protocol.md", "## Error codes")]
    assert sorted(documented) == sorted(code.value for code in ErrorCode if code.frame)
    assert len(documented) == len(set(documented))


def test_service_md_lists_exactly_the_rest_error_codes_with_their_status() -> None:
    documented = {
        re.fullmatch(r"`([a-z_]+)`", row[0]).group(1): int(row[1])
        for row in table_rows("service.md", "### Error codes")
    }
    assert documented == {code.value: code.status for code in ErrorCode if code.status is not None}


def test_every_code_is_answered_somewhere_and_modes_name_the_websocket_routes() -> None:
    assert all(code.frame or code.status is not None for code in ErrorCode)
    assert [mode.value for mode in Mode] == ["fit", "transform", "fit_transform"]
    assert (Mode.FIT.fits, Mode.FIT.transforms, Mode.TRANSFORM.fits, Mode.FIT_TRANSFORM.transforms) == (
        True,
        False,
        False,
        True,
    )
