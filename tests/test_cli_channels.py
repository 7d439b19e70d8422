"""Channel names travel from recordings into the session, and `--group-by` groups by them (`lrr stream`).

The reading of names is checked on files alone; the rest runs `lrr stream` in-process (tests/cli_runner.py)
against a real server.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from lrr_service.clients import LRRClientSync
from lrr_service.clients.commands.common import group_by_setting
from lrr_service.clients.grouping import grouping_fallback, settings_with_channel_groups
from lrr_service.clients.recordings import RecordingError, read_recording

try:
    from cli_runner import Done, run_lrr
except ImportError:
    from tests.cli_runner import Done, run_lrr

NAMES = ["Fp1", "Fp2", "C3", "C4", "O1", "O2"]


def signals(samples: int = 600, seed: int = 5) -> np.ndarray:
    """(samples, len(NAMES)) float64 with shared components, so every group has something to remove."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((samples, len(NAMES))) @ (rng.standard_normal((len(NAMES), len(NAMES))) + 1.0)


def write_csv(path: Path, data: np.ndarray, header: str | None) -> Path:
    with path.open("w", encoding="utf-8") as file:
        if header is not None:
            file.write(header + "\n")
        np.savetxt(file, data, delimiter=",", fmt="%.17g")
    return path


def stream(path: Path, url: str, key: str, *options: str) -> Done:
    return run_lrr("stream", str(path), "--key", key, "-o", str(path.with_suffix(".out.npy")), *options, url=url)


def description(url: str, key: str) -> dict:
    with LRRClientSync(url, key) as client:
        held = client.get_channels()
    assert held is not None, f"session {key!r} holds no channel description"
    return held.to_dict()


# -- names read from files ---------------------------------------------------------------------------


def test_a_csv_header_row_gives_one_label_per_column(tmp_path):
    header = '\ufeffFp1, "C3, left" ,Cz'  # a byte-order mark, spaces, a quoted name holding a comma
    read = read_recording(write_csv(tmp_path / "named.csv", signals(4)[:, :3], header))
    assert read.labels == ["Fp1", "C3, left", "Cz"] and read.data.shape == (4, 3)
    assert read_recording(write_csv(tmp_path / "bare.csv", signals(4)[:, :3], None)).labels == []
    assert read_recording(write_csv(tmp_path / "blank.csv", signals(4)[:, :3], " , ,")).labels == []


def test_a_csv_header_naming_another_number_of_columns_is_refused(tmp_path):
    path = write_csv(tmp_path / "short.csv", signals(4)[:, :3], "a,b")
    with pytest.raises(RecordingError, match=r"short\.csv: the header row names 2 column\(s\) but the rows hold 3"):
        read_recording(path)


def write_edf(path: Path, data: np.ndarray, labels: list[str]) -> Path:
    import pyedflib.highlevel as edf

    headers = edf.make_signal_headers(labels, sample_frequency=300, physical_min=-100, physical_max=100)
    edf.write_edf(str(path), np.ascontiguousarray(data.T), headers)
    return path


def test_edf_signal_labels_are_the_labels(tmp_path):
    read = read_recording(write_edf(tmp_path / "rec.edf", signals(300), NAMES))
    assert read.labels == NAMES and read.sample_rate == 300


# -- names into the session --------------------------------------------------------------------------


def test_csv_header_names_become_the_session_labels(shared_server, tmp_path, stream_key):
    done = stream(write_csv(tmp_path / "rec.csv", signals(), ",".join(NAMES)), shared_server.url, stream_key, "--json")
    assert done.returncode == 0, done.stderr
    assert description(shared_server.url, stream_key) == {"labels": NAMES, "fields": {}}
    assert json.loads(done.stdout)["labels"] == NAMES


def test_edf_labels_become_the_session_labels(shared_server, tmp_path, stream_key):
    done = stream(write_edf(tmp_path / "rec.edf", signals(300), NAMES), shared_server.url, stream_key)
    assert done.returncode == 0, done.stderr
    assert description(shared_server.url, stream_key)["labels"] == NAMES


def test_with_transpose_the_header_names_samples_and_no_labels_are_sent(shared_server, tmp_path, stream_key):
    wide = write_csv(tmp_path / "wide.csv", signals(8)[:, :3].T, ",".join(f"t{i}" for i in range(8)))  # 3 x 8
    done = stream(wide, shared_server.url, stream_key, "--transpose", "--allow-identity")
    assert done.returncode == 0, done.stderr
    assert "--transpose: the 8 names in wide.csv name its columns, now samples; no channel labels are sent" in (
        done.stderr
    )
    assert httpx.get(f"{shared_server.url}/streams/{stream_key}/channels").json()["channels"] is None


# -- --group-by ----------------------------------------------------------------------------------------


def test_group_by_a_field_the_file_does_not_describe_warns_once_and_falls_back(shared_server, tmp_path, stream_key):
    url = shared_server.url
    assert httpx.put(f"{url}/streams/{stream_key}", json={"ridge_lambda": 0.25, "block_size": 3}).status_code == 201
    done = stream(write_csv(tmp_path / "rec.csv", signals(), ",".join(NAMES)), url, stream_key, "--group-by", "bank")
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("lrr stream: warning:")]
    assert warnings == [
        "lrr stream: warning: the channel description has no field 'bank' (it has ['label']); it groups the "
        "channels in blocks of block_size channels instead"
    ]
    info = httpx.get(f"{url}/streams/{stream_key}").json()
    assert info["settings"]["channel_groups"] == "bank"
    assert info["settings"]["ridge_lambda"] == 0.25 and info["settings"]["block_size"] == 3  # kept
    assert info["grouping"]["source"] == "block_size" and info["grouping"]["sizes"] == [3, 3]


def test_group_by_a_field_of_a_description_put_by_rest_groups_by_it(shared_server, tmp_path, stream_key):
    url, banks = shared_server.url, [0, 1, 0, 1, 0, 1]
    with LRRClientSync(url, stream_key) as client:
        client.put_channels({"labels": NAMES, "fields": {"bank": banks}})
    np.save(tmp_path / "rec.npy", signals())  # no names: the session's own description stays
    done = stream(tmp_path / "rec.npy", url, stream_key, "--group-by", "bank", "--json")
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    assert json.loads(done.stdout)["grouping"]["source"] == "fields"
    assert sorted(httpx.get(f"{url}/streams/{stream_key}/channels").json()["groups"]) == [[0, 2, 4], [1, 3, 5]]
    with LRRClientSync(url, stream_key) as client:
        weights = client.get_weights()
    assert not weights[np.ix_([0, 2, 4], [1, 3, 5])].any() and weights[np.ix_([0, 2, 4], [0, 2, 4])].any()


def test_group_by_several_fields_sets_a_list_and_comma_separated_equals_repeated(shared_server, tmp_path, stream_key):
    path = write_csv(tmp_path / "rec.csv", signals(), ",".join(NAMES))
    done = stream(path, shared_server.url, stream_key, "--fit", "--group-by", "bank, label", "--group-by", "x")
    assert done.returncode == 0, done.stderr
    info = httpx.get(f"{shared_server.url}/streams/{stream_key}").json()
    assert info["settings"]["channel_groups"] == ["bank", "label", "x"]
    assert group_by_setting(["bank,label", "x"]) == group_by_setting(["bank", "label", "x", "bank"])
    assert group_by_setting(["bank"]) == "bank" and group_by_setting(None) is None


def test_group_by_with_an_empty_name_is_refused_before_anything_is_sent(shared_server, tmp_path, stream_key):
    done = stream(
        write_csv(tmp_path / "rec.csv", signals(), None), shared_server.url, stream_key, "--group-by", "bank,"
    )
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "--group-by 'bank,': empty field name; expected FIELD or FIELD,FIELD" in done.stderr
    assert httpx.get(f"{shared_server.url}/streams/{stream_key}").status_code == 404


def test_group_by_that_would_drop_what_append_or_transform_use_is_refused(shared_server, tmp_path, stream_key):
    url, path = shared_server.url, write_csv(tmp_path / "rec.csv", signals(), ",".join(NAMES))
    assert stream(path, url, stream_key, "--fit").returncode == 0
    refused = stream(path, url, stream_key, "--fit", "--append", "--group-by", "label")
    assert refused.returncode == 1, refused.stderr
    assert "changes how session" in refused.stderr and "pass --reset instead of --append" in refused.stderr
    info = httpx.get(f"{url}/streams/{stream_key}").json()
    assert info["n_samples"] == 600 and info["settings"]["channel_groups"] is None  # nothing changed
    same = stream(path, url, stream_key, "--fit", "--reset", "--group-by", "label")
    assert same.returncode == 0, same.stderr
    assert httpx.get(f"{url}/streams/{stream_key}").json()["settings"]["channel_groups"] == "label"
    again = stream(path, url, stream_key, "--fit", "--append", "--group-by", "label")  # no change: appends
    assert again.returncode == 0, again.stderr
    assert httpx.get(f"{url}/streams/{stream_key}").json()["n_samples"] == 1200
    refused = stream(path, url, stream_key, "--transform", "--group-by", "bank", "--allow-identity")
    assert refused.returncode == 1 and "drops the weights --transform would apply" in refused.stderr
    assert httpx.get(f"{url}/streams/{stream_key}").json()["settings"]["channel_groups"] == "label"


def test_settings_with_channel_groups_keeps_the_others_and_says_when_nothing_changes():
    session = {"settings": {"ridge_lambda": 0.5, "channel_groups": None, "block_size": 4}}
    assert settings_with_channel_groups(session, "bank") == {
        "ridge_lambda": 0.5,
        "channel_groups": "bank",
        "block_size": 4,
    }
    assert settings_with_channel_groups(None, ["bank", "x"]) == {"channel_groups": ["bank", "x"]}
    assert settings_with_channel_groups({"settings": {"channel_groups": "bank"}}, "bank") is None
    assert settings_with_channel_groups(session, None) is None
    assert grouping_fallback({"grouping": {"source": "fields", "fallback": None}}) is None
    assert grouping_fallback({}) is None


def test_field_groups_too_small_to_clean_are_refused_like_index_groups(shared_server, tmp_path, stream_key):
    path = write_csv(tmp_path / "rec.csv", signals(), ",".join(NAMES))  # distinct labels: six groups of one
    refused = stream(path, shared_server.url, stream_key, "--group-by", "label")
    assert refused.returncode == 1
    assert "every channel group of session" in refused.stderr and "(largest: 1)" in refused.stderr
