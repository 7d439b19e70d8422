"""Channel names travel from recordings into the session, and `--group-by` groups by them (`lrr stream`);
`lrr channels get|put|delete` shows, sets and removes a session's channel description.

The reading of names is checked on files alone; the rest runs `lrr stream` and `lrr channels` in-process
(tests/cli_runner.py) against a real server.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lrr_service.clients import LRRClientSync
from lrr_service.clients.commands.channels import read_description
from lrr_service.clients.commands.common import group_by_setting
from lrr_service.clients.grouping import grouping_fallback, settings_with_channel_groups
from lrr_service.clients.recordings import RecordingError, read_recording
from lrr_service.core.vocabulary import Regrouped

try:
    from cli_runner import Done, run_lrr
    from live_server import HTTP
except ImportError:
    from tests.cli_runner import Done, run_lrr
    from tests.live_server import HTTP

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
    assert HTTP.get(f"{shared_server.url}/streams/{stream_key}/channels").json()["channels"] is None


# -- --group-by ----------------------------------------------------------------------------------------


def test_group_by_a_field_the_file_does_not_describe_warns_once_and_falls_back(shared_server, tmp_path, stream_key):
    url = shared_server.url
    assert HTTP.put(f"{url}/streams/{stream_key}", json={"ridge_lambda": 0.25, "block_size": 3}).status_code == 201
    done = stream(write_csv(tmp_path / "rec.csv", signals(), ",".join(NAMES)), url, stream_key, "--group-by", "bank")
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("lrr stream: warning:")]
    assert warnings == [
        "lrr stream: warning: the channel description has no field 'bank' (it has ['label']); it groups the "
        "channels in blocks of block_size channels instead"
    ]
    info = HTTP.get(f"{url}/streams/{stream_key}").json()
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
    assert sorted(HTTP.get(f"{url}/streams/{stream_key}/channels").json()["groups"]) == [[0, 2, 4], [1, 3, 5]]
    with LRRClientSync(url, stream_key) as client:
        weights = client.get_weights()
    assert not weights[np.ix_([0, 2, 4], [1, 3, 5])].any() and weights[np.ix_([0, 2, 4], [0, 2, 4])].any()


def test_group_by_several_fields_sets_a_list_and_comma_separated_equals_repeated(shared_server, tmp_path, stream_key):
    path = write_csv(tmp_path / "rec.csv", signals(), ",".join(NAMES))
    done = stream(path, shared_server.url, stream_key, "--fit", "--group-by", "bank, label", "--group-by", "x")
    assert done.returncode == 0, done.stderr
    info = HTTP.get(f"{shared_server.url}/streams/{stream_key}").json()
    assert info["settings"]["channel_groups"] == ["bank", "label", "x"]
    assert group_by_setting(["bank,label", "x"]) == group_by_setting(["bank", "label", "x", "bank"])
    assert group_by_setting(["bank"]) == "bank" and group_by_setting(None) is None


def test_group_by_with_an_empty_name_is_refused_before_anything_is_sent(shared_server, tmp_path, stream_key):
    done = stream(
        write_csv(tmp_path / "rec.csv", signals(), None), shared_server.url, stream_key, "--group-by", "bank,"
    )
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "--group-by 'bank,': empty field name; expected FIELD or FIELD,FIELD" in done.stderr
    assert HTTP.get(f"{shared_server.url}/streams/{stream_key}").status_code == 404


def test_group_by_that_would_drop_what_append_or_transform_use_is_refused(shared_server, tmp_path, stream_key):
    url, path = shared_server.url, write_csv(tmp_path / "rec.csv", signals(), ",".join(NAMES))
    assert stream(path, url, stream_key, "--fit").returncode == 0
    refused = stream(path, url, stream_key, "--fit", "--append", "--group-by", "label")
    assert refused.returncode == 1, refused.stderr
    assert "changes how session" in refused.stderr and "pass --reset instead of --append" in refused.stderr
    info = HTTP.get(f"{url}/streams/{stream_key}").json()
    assert info["n_samples"] == 600 and info["settings"]["channel_groups"] is None  # nothing changed
    same = stream(path, url, stream_key, "--fit", "--reset", "--group-by", "label")
    assert same.returncode == 0, same.stderr
    assert HTTP.get(f"{url}/streams/{stream_key}").json()["settings"]["channel_groups"] == "label"
    again = stream(path, url, stream_key, "--fit", "--append", "--group-by", "label")  # no change: appends
    assert again.returncode == 0, again.stderr
    assert HTTP.get(f"{url}/streams/{stream_key}").json()["n_samples"] == 1200
    refused = stream(path, url, stream_key, "--transform", "--group-by", "bank", "--allow-identity")
    assert refused.returncode == 1 and "drops the weights --transform would apply" in refused.stderr
    assert HTTP.get(f"{url}/streams/{stream_key}").json()["settings"]["channel_groups"] == "label"


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


# -- lrr channels get / put / delete -------------------------------------------------------------------

BANKS = ["A", "B", "A", "B", "A", "B"]
MONTAGE = "\ufefflabel, bank ,x\n" + "".join(
    f'"{name}", {bank} ,{0.1 * i:.1f}\n' for i, (name, bank) in enumerate(zip(NAMES, BANKS))
)  # a byte-order mark, spaces around names and values, quoted labels
MONTAGE_DESCRIPTION = {"labels": NAMES, "fields": {"bank": BANKS, "x": [f"{0.1 * i:.1f}" for i in range(6)]}}


def channels(*args: str, url: str) -> Done:
    return run_lrr("channels", *args, url=url)


def held_channels(url: str, key: str) -> dict | None:
    """What GET /streams/{key}/channels says the session holds (None: no description); 404 fails the test."""
    response = HTTP.get(f"{url}/streams/{key}/channels")
    assert response.status_code == 200, response.text
    return response.json()["channels"]


def session_status(url: str, key: str) -> int:
    return HTTP.get(f"{url}/streams/{key}").status_code


def upload_weights(url: str, key: str, n: int) -> None:
    """Bind the session to `n` channels with uploaded weights (a zero diagonal)."""
    weights = (np.ones((n, n)) - np.eye(n)) / (n - 1)
    body = "".join(",".join(f"{w:.17g}" for w in row) + "\n" for row in weights)
    response = HTTP.put(f"{url}/streams/{key}/weights", content=body, headers={"Content-Type": "text/csv"})
    assert response.status_code == 200, response.text


def assert_refused(done: Done, *fragments: str) -> None:
    """Exit status 1, nothing on stdout, one line on stderr holding every fragment."""
    assert done.returncode == 1 and done.stdout == "", (done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lrr channels: error: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_channels_put_from_a_montage_csv_then_get_shows_labels_and_fields(shared_server, tmp_path, stream_key):
    url, path = shared_server.url, tmp_path / "montage.csv"
    path.write_text(MONTAGE, encoding="utf-8")
    put = channels("put", str(path), "--key", stream_key, url=url)
    assert put.returncode == 0, put.stderr
    assert put.stdout.splitlines() == [
        f"described the 6 channels of '{stream_key}' from {path}: labels; fields bank, x",
        f"regrouped: unbound ({Regrouped.UNBOUND.meaning})",  # PUT made the session; no chunk bound it yet
    ]
    assert held_channels(url, stream_key) == MONTAGE_DESCRIPTION  # values stay strings: "0.1", not 0.1
    got = channels("get", "--key", stream_key, url=url)
    assert got.returncode == 0, got.stderr
    rows = [line.split() for line in got.stdout.splitlines()]
    assert rows[0] == ["index", "label", "bank", "x"] and set("".join(rows[1])) == {"-"}
    assert rows[2:] == [[str(i), NAMES[i], BANKS[i], f"{0.1 * i:.1f}"] for i in range(6)]
    as_json = channels("get", "--key", stream_key, "--json", url=url)
    assert json.loads(as_json.stdout) == held_channels(url, stream_key)


def test_channels_put_from_json_keeps_the_value_types(shared_server, tmp_path, stream_key):
    url, path = shared_server.url, tmp_path / "channels.json"
    body = {"labels": None, "fields": {"bank": [1, 1, "1", None], "good": [True, False, True, True]}}
    path.write_text(json.dumps(body), encoding="utf-8")
    put = channels("put", str(path), "--key", stream_key, "--json", url=url)
    assert put.returncode == 0, put.stderr
    reply = json.loads(put.stdout)
    assert reply["regrouped"] == "unbound" and reply["channels"] == {
        "n_channels": 4,
        "labels": False,
        "fields": ["bank", "good"],
    }
    assert held_channels(url, stream_key) == body
    table = channels("get", "--key", stream_key, url=url).stdout.splitlines()
    assert [line.split() for line in table[2:]] == [
        ["0", "-", "1", "true"],
        ["1", "-", "1", "false"],
        ["2", "-", "1", "true"],  # the string "1": as it is; --json tells it from the number
        ["3", "-", "null", "true"],
    ]


def test_grouping_by_a_field_of_a_put_description(shared_server, tmp_path, stream_key):
    url, path = shared_server.url, tmp_path / "montage.csv"
    path.write_text(MONTAGE, encoding="utf-8")
    settings = run_lrr("settings", "put", "--key", stream_key, 'channel_groups="bank"', url=url)
    assert settings.returncode == 0, settings.stderr
    upload_weights(url, stream_key, 6)  # bound to 6 channels; no description yet: one group of all
    before = HTTP.get(f"{url}/streams/{stream_key}").json()["grouping"]
    assert before["source"] == "all" and "no channel description" in before["fallback"]
    put = channels("put", str(path), "--key", stream_key, url=url)
    assert put.returncode == 0, put.stderr
    assert put.stdout.splitlines()[1:] == [
        f"regrouped: uploaded_kept ({Regrouped.UPLOADED_KEPT.meaning})",
        "grouping: fields (2 group(s))",
    ]
    after = HTTP.get(f"{url}/streams/{stream_key}").json()["grouping"]
    assert after["source"] == "fields" and after["fallback"] is None and after["sizes"] == [3, 3]
    assert HTTP.get(f"{url}/streams/{stream_key}/channels").json()["groups"] == [[0, 2, 4], [1, 3, 5]]


def test_channels_delete_removes_the_description_and_says_how_the_session_groups_now(
    shared_server, tmp_path, stream_key
):
    url, path = shared_server.url, tmp_path / "montage.csv"
    path.write_text(MONTAGE, encoding="utf-8")
    assert run_lrr("settings", "put", "--key", stream_key, "channel_groups=bank", url=url).returncode == 0
    assert channels("put", str(path), "--key", stream_key, url=url).returncode == 0
    upload_weights(url, stream_key, 6)
    deleted = channels("delete", "--key", stream_key, url=url)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.splitlines() == [
        f"session '{stream_key}' holds no channel description now",
        f"regrouped: uploaded_kept ({Regrouped.UPLOADED_KEPT.meaning})",
        "grouping: all (1 group(s))",
        "note: channel_groups names 'bank' but the session has no channel description; it groups the channels as "
        "one group of all channels instead",
    ]
    assert held_channels(url, stream_key) is None
    got = channels("get", "--key", stream_key, url=url)
    assert got.returncode == 0 and got.stdout == f"session '{stream_key}' has no channel description\n"
    assert json.loads(channels("get", "--key", stream_key, "--json", url=url).stdout) is None
    again = channels("delete", "--key", stream_key, "--json", url=url)
    assert json.loads(again.stdout)["regrouped"] == "unchanged"


def test_a_description_of_another_channel_count_than_the_bound_session_is_refused(shared_server, tmp_path, stream_key):
    url, six, four = shared_server.url, tmp_path / "six.csv", tmp_path / "four.csv"
    six.write_text(MONTAGE, encoding="utf-8")
    four.write_text("label,bank\na,1\nb,1\nc,2\nd,2\n", encoding="utf-8")
    assert channels("put", str(six), "--key", stream_key, url=url).returncode == 0
    upload_weights(url, stream_key, 6)
    refused = channels("put", str(four), "--key", stream_key, url=url)
    assert_refused(
        refused,
        "channels_mismatch: the description has 4 channels but session",
        "is bound to 6; describe 6 channels, or reset the session",
        f"(lrr reset --key {stream_key}) first (HTTP 409)",
    )
    assert held_channels(url, stream_key) == MONTAGE_DESCRIPTION
    assert HTTP.get(f"{url}/streams/{stream_key}").json()["n_channels"] == 6


def test_a_description_beyond_the_server_channel_limit_is_refused_with_bad_channels(server_factory, tmp_path):
    server = server_factory(env={"LRR_MAX_CHANNELS": "4"})
    path = tmp_path / "five.csv"
    path.write_text("label\n" + "".join(f"c{i}\n" for i in range(5)), encoding="utf-8")
    refused = channels("put", str(path), "--key", "wide", url=server.url)
    assert_refused(refused, "bad_channels: the channel description has 5 channels; expected at most 4", "(HTTP 422)")
    assert session_status(server.url, "wide") == 404


MALFORMED = [
    ("ragged.csv", "label,bank\nFp1,A\nFp2\n", "line 3 has 1 value(s) but the header row names 2 column(s)"),
    ("empty.csv", "", "the file is empty"),
    ("blank.csv", "\n \n", "the file is empty"),
    ("header.csv", "label,bank\n\n", "a header row but no channel rows"),
    ("twice.csv", "label,bank,bank\na,1,2\n", "the header row names 'bank' twice"),
    ("unnamed.csv", "label,,x\na,1,2\n", "column 2 of the header row has no name"),
    ("spaced.csv", "label,x pos\na,1\n", "field name 'x pos' is not allowed"),
    ("bad.json", '{"labels": ["a", "b"', "not valid JSON"),
    ("list.json", '["a", "b"]', "a channel description must be a map"),
    ("uneven.json", '{"labels": ["a"], "fields": {"bank": [1, 2]}}', "every list must have one entry per channel"),
    ("montage.txt", "label\na\n", "unsupported file type (.txt); expected .json"),
    ("montage", "label\na\n", "unsupported file type (no suffix); expected .json"),
    ("huge.csv", "label\n" + "a" * 140_000 + "\n", "not a readable CSV table (line 2: field larger than"),
]


@pytest.mark.parametrize(("name", "content", "problem"), MALFORMED, ids=[case[0] for case in MALFORMED])
def test_a_malformed_or_unsupported_file_is_refused_before_anything_is_sent(
    shared_server, tmp_path, stream_key, name, content, problem
):
    url, path = shared_server.url, tmp_path / name
    path.write_text(content, encoding="utf-8")
    assert_refused(channels("put", str(path), "--key", stream_key, url=url), f"{path}: {problem}")
    assert session_status(url, stream_key) == 404  # nothing was sent: no session was made
    assert HTTP.put(f"{url}/streams/{stream_key}", json={}).status_code == 201
    assert_refused(channels("put", str(path), "--key", stream_key, url=url), f"{path}: {problem}")
    assert held_channels(url, stream_key) is None  # an existing session keeps having none


def test_the_refusal_names_the_formats_expected_and_a_missing_file(shared_server, tmp_path, stream_key):
    wrong = channels("put", str(tmp_path / "montage.xlsx"), "--key", stream_key, url=shared_server.url)
    assert_refused(wrong, ".json (labels and fields", ".csv (a montage table: a header row naming the columns")
    missing = channels("put", str(tmp_path / "absent.csv"), "--key", stream_key, url=shared_server.url)
    assert_refused(missing, f"{tmp_path / 'absent.csv'}: no such file")
    assert session_status(shared_server.url, stream_key) == 404


def test_an_unknown_session_fails_as_lrr_settings_get_does(shared_server):
    url = shared_server.url
    settings = run_lrr("settings", "get", "--key", "never-made", url=url)
    error = settings.stderr.removeprefix("lrr settings: error: ")
    assert settings.returncode == 1 and error.startswith("unknown_session: no session for stream key 'never-made'")
    for action in ("get", "delete"):
        done = channels(action, "--key", "never-made", url=url)
        assert_refused(done)
        assert done.stderr == "lrr channels: error: " + error
    assert session_status(url, "never-made") == 404  # neither made it


def test_a_montage_gives_the_label_column_as_labels_and_every_other_as_a_string_field(tmp_path):
    def read(text: str) -> dict:
        (tmp_path / "m.csv").write_text(text, encoding="utf-8")
        return read_description(tmp_path / "m.csv").to_dict()

    assert read(MONTAGE) == MONTAGE_DESCRIPTION
    assert read("bank,x\n 1 ,\n\n2,y\n") == {"labels": None, "fields": {"bank": ["1", "2"], "x": ["", "y"]}}
    assert read("Label,bank\nFp1,a\n") == {"labels": None, "fields": {"Label": ["Fp1"], "bank": ["a"]}}


@pytest.mark.parametrize("action", ["get", "put", "delete"])
def test_every_channels_action_has_help(action):
    done = run_lrr("channels", action, "--help")
    assert done.returncode == 0 and "usage: lrr channels " + action in done.stdout and "--key" in done.stdout
    usage = run_lrr("channels", "--key", "k")
    assert usage.returncode == 2 and "lrr channels: error:" in usage.stderr
