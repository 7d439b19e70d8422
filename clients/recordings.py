"""Reading recordings (.npy, .csv, EDF/BDF) into (samples, channels) arrays and writing results (.npy, .csv)."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

READABLE_SUFFIXES = (".npy", ".csv", ".edf", ".bdf")
WRITABLE_SUFFIXES = (".npy", ".csv")


class RecordingError(ValueError):
    """A file that cannot be read as, or written from, a (samples, channels) recording."""


@dataclass(frozen=True)
class Recording:
    """Samples in rows, channels in columns; sample rate and labels when the format carries them.

    `labels` holds one name per column (a CSV header row, EDF/BDF signal labels), or is empty.
    """

    data: np.ndarray
    sample_rate: float | None = None
    labels: list[str] = field(default_factory=list)


def read_recording(path: Path | str) -> Recording:
    """Load a recording by its suffix; the error names the file and what was expected of it."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in READABLE_SUFFIXES:
        raise RecordingError(
            f"{path}: unknown recording format {suffix!r}; expected one of {', '.join(READABLE_SUFFIXES)}"
        )
    if not path.is_file():
        raise RecordingError(f"{path}: no such file")
    if suffix == ".npy":
        return Recording(_as_samples_by_channels(path, _load_npy(path)))
    if suffix == ".csv":
        data, labels = _load_csv(path)
        return Recording(_as_samples_by_channels(path, data), labels=labels)
    return _load_edf(path)


def write_recording(path: Path | str, data: np.ndarray) -> None:
    """Write (samples, channels) data as .npy (exact) or .csv (shortest exact decimal per value)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITABLE_SUFFIXES:
        raise RecordingError(f"{path}: cannot write {suffix!r}; expected an output ending in .npy or .csv")
    if suffix == ".npy":
        np.save(path, data)
        return
    digits = 9 if data.dtype == np.float32 else 17
    np.savetxt(path, data, delimiter=",", fmt=f"%.{digits}g")


def _load_npy(path: Path) -> np.ndarray:
    try:
        loaded: np.ndarray = np.load(path, allow_pickle=False)
        return loaded
    except (ValueError, OSError) as exc:
        raise RecordingError(f"{path}: not a readable .npy array ({exc})") from None


def _load_csv(path: Path) -> tuple[np.ndarray, list[str]]:
    """Comma-separated numbers, one sample per line, and the channel names of a first line that is not numbers
    (a header: one name per column; [] without one)."""
    for skip in (0, 1):
        try:
            data = np.loadtxt(path, delimiter=",", ndmin=2, skiprows=skip, dtype=np.float64)
        except ValueError as exc:
            error = exc
            continue
        return data, _csv_header(path, data.shape[1]) if skip else []
    raise RecordingError(f"{path}: not a comma-separated table of numbers ({error})")


def _csv_header(path: Path, n_columns: int) -> list[str]:
    """The names of a CSV header row (quotes and surrounding spaces removed; UTF-8, else Latin-1); [] when
    every name is blank; RecordingError unless it names each of the `n_columns` columns."""
    with path.open("rb") as file:
        line = file.readline()
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = line.decode("latin-1")
    names = [name.strip() for name in next(csv.reader([text.rstrip("\r\n")], skipinitialspace=True), [])]
    if len(names) != n_columns:
        raise RecordingError(
            f"{path}: the header row names {len(names)} column(s) but the rows hold {n_columns}; expected one "
            "name per column (or no header row)"
        )
    return names if any(names) else []


def _as_samples_by_channels(path: Path, data: np.ndarray) -> np.ndarray:
    if data.ndim != 2:
        raise RecordingError(
            f"{path}: holds a {data.ndim}-D array of shape {data.shape}; expected 2-D (samples, channels)"
        )
    if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)):
        raise RecordingError(f"{path}: holds {data.dtype} values; expected numbers")
    return data


def _load_edf(path: Path) -> Recording:
    """EDF/BDF through pyedflib (the optional `edf` extra); every channel must share one sample rate."""
    try:
        import pyedflib
    except ImportError:
        raise RecordingError(
            f"{path}: reading EDF/BDF needs pyedflib; install it with: pip install 'lrr-service[edf]'"
        ) from None
    try:
        reader = pyedflib.EdfReader(str(path))
    except OSError as exc:
        raise RecordingError(f"{path}: not a readable EDF/BDF file ({exc})") from None
    try:
        count = reader.signals_in_file
        rates = sorted({float(reader.getSampleFrequency(i)) for i in range(count)})
        if len(rates) > 1:
            raise RecordingError(f"{path}: channels have different sample rates {rates}; expected one rate for all")
        data = np.column_stack([reader.readSignal(i) for i in range(count)]) if count else np.zeros((0, 0))
        labels = [str(label).strip() for label in reader.getSignalLabels()]
        return Recording(data, rates[0] if rates else None, labels)
    finally:
        reader.close()
