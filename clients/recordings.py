"""Reading recordings (.npy, .csv, EDF/BDF) into (samples, channels) arrays and writing results (.npy, .csv)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

READABLE_SUFFIXES = (".npy", ".csv", ".edf", ".bdf")
WRITABLE_SUFFIXES = (".npy", ".csv")


class RecordingError(ValueError):
    """A file that cannot be read as, or written from, a (samples, channels) recording."""


@dataclass(frozen=True)
class Recording:
    """Samples in rows, channels in columns; sample rate and labels when the format carries them."""

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
        return Recording(_as_samples_by_channels(path, _load_csv(path)))
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


def _load_csv(path: Path) -> np.ndarray:
    """Comma-separated numbers, one sample per line; a first line of channel names is skipped."""
    for skip in (0, 1):
        try:
            return np.loadtxt(path, delimiter=",", ndmin=2, skiprows=skip, dtype=np.float64)
        except ValueError as exc:
            error = exc
    raise RecordingError(f"{path}: not a comma-separated table of numbers ({error})")


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
        return Recording(data, rates[0] if rates else None, list(reader.getSignalLabels()))
    finally:
        reader.close()
