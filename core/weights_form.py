"""Which matrix a weights upload holds, W or I - W, and the rule an uploaded W keeps: a zero diagonal.

LRR predicts each channel from the others, so W[i, i] = 0, and the output is X (I - W). A file holding
the rereferencing matrix M = I - W instead has ones on its diagonal; taken as W it would double every
channel before subtracting the others. Uploads therefore say which matrix they hold (the form: "w", the
default, or "i_minus_w"), and a W whose diagonal is not zero is refused, naming the first offending
entry and how to upload the other form. The engine itself takes any finite square matrix (core/engine.py):
this is the policy of uploads, shared by the service and the clients so that their messages agree.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, Literal, get_args

import numpy as np

from lrr_service.core.errors import WeightsError

WeightsForm = Literal["w", "i_minus_w"]
"""What an uploaded matrix is: "w", W itself; "i_minus_w", the rereferencing matrix M = I - W."""

WEIGHTS_FORMS: Final[tuple[WeightsForm, ...]] = get_args(WeightsForm)

DIAGONAL_TOLERANCE: Final = 1e-12
"""The largest |W[i, i]| an upload may hold. W is dimensionless and W[i, i] scales channel i's own output
by 1 - W[i, i], so 1e-12 is a gain error far below float32's resolution (6e-8), while it admits the
rounding noise of other tools that compute the diagonal (e.g. 1 - M[i, i] in float64, about 1e-16).
Entries within it are kept as uploaded (never rounded to zero), so an uploaded W stays bit-exact."""


class Interface(StrEnum):
    """Where a caller chooses the form, so that a message names the caller's own spelling of it."""

    QUERY = "query"
    """The query parameter of PUT /streams/{key}/weights: `?form=i_minus_w`."""
    PYTHON = "python"
    """The Python client's argument: `form="i_minus_w"`."""
    CLI = "cli"
    """The flag of `lrr weights put`: `--i-minus-w`."""


_HOW_TO_UPLOAD: Final[dict[tuple[Interface, WeightsForm], str]] = {
    (Interface.QUERY, "w"): "upload it with ?form=w or without ?form",
    (Interface.QUERY, "i_minus_w"): "upload it with ?form=i_minus_w",
    (Interface.PYTHON, "w"): 'upload it with form="w" (the default)',
    (Interface.PYTHON, "i_minus_w"): 'upload it with form="i_minus_w"',
    (Interface.CLI, "w"): "upload it without --i-minus-w",
    (Interface.CLI, "i_minus_w"): "upload it with --i-minus-w",
}


class DiagonalError(WeightsError):
    """An uploaded matrix whose diagonal breaks the rule of its form: `form` as uploaded, `index` (0-based)
    of the first offending diagonal entry, `value` that entry of the uploaded matrix."""

    def __init__(self, form: WeightsForm, index: int, value: float, via: Interface) -> None:
        self.form = form
        self.index = index
        self.value = value
        super().__init__(_diagonal_message(form, index, value, via))


def how_to_upload(form: WeightsForm, via: Interface) -> str:
    """The words telling a caller of `via` how to upload a file holding `form` ('upload it with ...')."""
    return _HOW_TO_UPLOAD[via, form]


def check_form(form: object) -> WeightsForm:
    """`form` if it names a form; ValueError naming the allowed values otherwise."""
    if isinstance(form, str):
        for known in WEIGHTS_FORMS:
            if form == known:
                return known
    raise ValueError(
        f"form is {form!r}; expected 'w' (the CSV holds W, the default) or 'i_minus_w' "
        "(it holds the rereferencing matrix I - W)"
    )


def weights_from_upload(matrix: np.ndarray, form: WeightsForm, via: Interface = Interface.QUERY) -> np.ndarray:
    """W from an uploaded square float64 matrix: the matrix itself for "w" (not copied, so bit-exact), or
    I - M for "i_minus_w", computed exactly (a new array). Raises DiagonalError, naming how to upload
    through `via`, unless every |W[i, i]| <= DIAGONAL_TOLERANCE.

    Exactness of I - M: an off-diagonal entry is 0 - M[i, j], which is exact (-0.0 becomes +0.0), and a
    diagonal entry 1 - M[i, i] is exact whenever M[i, i] is within the tolerance of 1 (Sterbenz).
    """
    form = check_form(form)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise WeightsError(f"weights have shape {matrix.shape}; expected a square (n, n) matrix")
    diagonal = np.diagonal(matrix)
    own_weights = diagonal if form == "w" else 1.0 - diagonal
    offending = np.flatnonzero(~(np.abs(own_weights) <= DIAGONAL_TOLERANCE))
    if offending.size:
        index = int(offending[0])
        raise DiagonalError(form, index, float(diagonal[index]), via)
    if form == "w":
        return matrix
    weights: np.ndarray = np.subtract(0.0, matrix)  # not -matrix: +0.0 stays +0.0
    np.fill_diagonal(weights, own_weights)
    return weights


def restate(message: str, via: Interface) -> str:
    """`message` with every interface's 'how to upload' words replaced by `via`'s: a refusal of the server
    (or of another layer) retold in the caller's own terms. Any other message comes back unchanged."""
    for (interface, form), words in _HOW_TO_UPLOAD.items():
        if interface is not via:
            message = message.replace(words, how_to_upload(form, via))
    return message


def _diagonal_message(form: WeightsForm, index: int, value: float, via: Interface) -> str:
    """What is wrong with the diagonal, what LRR expects, and how to upload the other form through `via`."""
    cell = f"[{index}, {index}]"
    position = f"(data row {index + 1}, column {index + 1})"
    rule = (
        f"expected |W[i, i]| <= {DIAGONAL_TOLERANCE:g}: LRR weights W have a zero diagonal "
        "(a channel is never predicted from itself)"
    )
    if form == "w":
        return (
            f"the weights' diagonal is not zero: W{cell} {position} is {value!r}, {rule}. The file may hold "
            f"I - W, the rereferencing matrix (ones on its diagonal): {how_to_upload('i_minus_w', via)}"
        )
    own_weight = 1.0 - value
    return (
        f"the matrix uploaded as I - W does not have ones on its diagonal: M{cell} {position} is {value!r}, "
        f"so W{cell} = 1 - M{cell} would be {own_weight!r}, {rule}. The file may hold W itself: "
        f"{how_to_upload('w', via)}"
    )
