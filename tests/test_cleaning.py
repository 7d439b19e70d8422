"""What the cleaning did (clients/cleaning.py): powers, dB, groups, chunked accumulation, text, JSON, figure.

Every expected number is computed here on its own, channel by channel with math.fsum or exact Python
integers, from synthetic recordings whose common noise and cleaning weights are known.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
import sys

import numpy as np
import pytest

from lrr_service.clients import cleaning
from lrr_service.clients.cleaning import (
    CleaningAccumulator,
    ReportError,
    cleaning_report,
    decibels,
    plot_report,
    report_json,
    report_text,
)
from lrr_service.clients.grouping import groups_for_settings, session_groups
from lrr_service.clients.sync import LRRClientSync

try:
    from cli_runner import run_lrr as lrr
    from live_server import HTTP
except ImportError:
    from tests.cli_runner import run_lrr as lrr
    from tests.live_server import HTTP

GROUPS = [[0, 1, 2, 3], [4, 5, 6, 7]]  # channel 8 is in no group


def common_noise_rig(n_samples: int = 4000, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nine channels: independent signals of known size plus one common noise with a gain per channel.

    Returns (X, Y, W): Y is X cleaned by leave-one-out average reference in each of GROUPS (channel 8
    passes through), built with a loop here, and W the weights that do the same as X (I - W).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / 1000.0
    common = 4.0 * np.sin(2 * np.pi * 50.0 * t) + rng.standard_normal(n_samples)
    gains = np.array([1.0, 1.2, 0.8, 1.1, 2.0, 2.2, 1.9, 2.1, 1.5])
    signals = rng.standard_normal((n_samples, 9)) * np.linspace(0.5, 1.5, 9)
    x = signals + common[:, None] * gains
    y = x.copy()
    w = np.zeros((9, 9))
    for group in GROUPS:
        for c in group:
            others = [o for o in group if o != c]
            y[:, c] = x[:, c] - x[:, others].mean(axis=1)
            w[others, c] = 1.0 / len(others)
    return x, y, w


def mean_power(column: np.ndarray) -> float:
    """Mean square of one channel, summed exactly."""
    return math.fsum(float(v) * float(v) for v in column) / column.shape[0]


def db(before: float, after: float) -> float:
    return 10.0 * math.log10(before / after)


def test_channel_group_and_overall_reductions_match_a_channel_by_channel_computation():
    x, y, w = common_noise_rig()
    assert np.allclose(x @ (np.eye(9) - w), y)  # the rig's weights are the cleaning that was done
    report = cleaning_report(x, y, GROUPS)

    before = [mean_power(x[:, c]) for c in range(9)]
    after = [mean_power(y[:, c]) for c in range(9)]
    channel_db = [db(b, a) for b, a in zip(before, after)]
    np.testing.assert_allclose(report.power_before, before, rtol=1e-12)
    np.testing.assert_allclose(report.power_after, after, rtol=1e-12)
    np.testing.assert_allclose(report.reduction_db, channel_db, rtol=1e-10)
    assert report.reduction_db[8] == pytest.approx(0.0, abs=1e-12)  # passed through
    assert min(channel_db[:8]) > 3  # the common noise was large: the cleaning removed most of the power

    for group, measured in zip(GROUPS, report.groups):
        assert measured.channels == tuple(group)
        assert measured.power_before == pytest.approx(math.fsum(before[c] for c in group), rel=1e-12)
        assert measured.power_after == pytest.approx(math.fsum(after[c] for c in group), rel=1e-12)
        assert measured.reduction_db == pytest.approx(
            db(math.fsum(before[c] for c in group), math.fsum(after[c] for c in group)), rel=1e-10
        )
        assert measured.median_channel_db == pytest.approx(statistics.median(channel_db[c] for c in group), rel=1e-10)
        worst = min(group, key=lambda c: channel_db[c])
        assert (measured.worst_channel, measured.worst_channel_db) == (worst, pytest.approx(channel_db[worst]))
    overall = report.overall
    assert overall.reduction_db == pytest.approx(db(math.fsum(before), math.fsum(after)), rel=1e-10)
    assert overall.median_channel_db == pytest.approx(statistics.median(channel_db), rel=1e-10)
    assert overall.worst_channel == 8  # the channel in no group kept everything
    assert report.ungrouped == (8,)
    assert report.group_of().tolist() == [0, 0, 0, 0, 1, 1, 1, 1, -1]
    assert (report.n_samples, report.n_excluded, report.n_channels) == (4000, 0, 9)


def test_removing_the_common_noise_exactly_gives_the_reduction_its_size_predicts():
    rng = np.random.default_rng(7)
    n = 200_000
    signals = rng.standard_normal((n, 4)) * np.array([1.0, 2.0, 0.5, 1.0])
    common = rng.standard_normal(n) * 3.0
    x = signals + common[:, None]
    report = cleaning_report(x, signals)
    # E[x²] = σ_s² + 9 for independent zero-mean signal and noise
    expected = [10 * math.log10((s2 + 9.0) / s2) for s2 in (1.0, 4.0, 0.25, 1.0)]
    np.testing.assert_allclose(report.reduction_db, expected, atol=0.05)


def test_int16_and_float32_inputs_are_measured_in_float64():
    rng = np.random.default_rng(3)
    x16 = rng.integers(-32768, 32768, size=(50_000, 3), dtype=np.int16)  # squares overflow int16 and int32 sums
    y16 = (x16 // 4).astype(np.int16)
    report = cleaning_report(x16, y16)
    exact_before = [sum(int(v) ** 2 for v in x16[:, c]) / 50_000 for c in range(3)]
    exact_after = [sum(int(v) ** 2 for v in y16[:, c]) / 50_000 for c in range(3)]
    np.testing.assert_allclose(report.power_before, exact_before, rtol=1e-13)
    np.testing.assert_allclose(report.power_after, exact_after, rtol=1e-13)

    offset = (10_000.0 + rng.standard_normal((200_000, 2))).astype(np.float32)  # float32 sums would drift
    cleaned = (offset - np.float32(10_000.0)).astype(np.float32)
    report = cleaning_report(offset, cleaned)
    for c in range(2):
        assert report.power_before[c] == pytest.approx(mean_power(offset[:, c]), rel=1e-12)
        assert report.power_after[c] == pytest.approx(mean_power(cleaned[:, c]), rel=1e-12)


def test_rows_with_nan_or_infinity_in_input_or_output_are_left_out_and_counted():
    x, y, _ = common_noise_rig(n_samples=1000)
    x[10, 2] = np.nan
    y[20, 5] = np.inf
    y[30, 0] = -np.inf
    x[40, 1] = np.nan
    y[40, 1] = np.nan  # the same row twice counts once
    x[50, 3] = 1e200  # its square is not a finite float64
    bad = [10, 20, 30, 40, 50]
    keep = np.setdiff1d(np.arange(1000), bad)
    report = cleaning_report(x, y, GROUPS)
    assert (report.n_samples, report.n_excluded) == (995, 5)
    np.testing.assert_allclose(report.power_before, [mean_power(x[keep, c]) for c in range(9)], rtol=1e-12)
    np.testing.assert_allclose(report.power_after, [mean_power(y[keep, c]) for c in range(9)], rtol=1e-12)
    assert np.isfinite(report.reduction_db).all()


def test_zero_powers_give_inf_minus_inf_or_nan_and_print_as_such():
    x = np.array([[1.0, 0.0, 0.0, 2.0], [1.0, 0.0, 0.0, 2.0]])
    y = np.array([[0.0, 3.0, 0.0, 1.0], [0.0, 3.0, 0.0, 1.0]])
    report = cleaning_report(x, y)
    assert report.reduction_db[0] == np.inf  # all removed
    assert report.reduction_db[1] == -np.inf  # power where there was none
    assert math.isnan(report.reduction_db[2])  # silent before and after
    assert report.reduction_db[3] == pytest.approx(db(4.0, 1.0))
    assert report.overall.worst_channel == 1
    assert report.overall.median_channel_db == pytest.approx(db(4.0, 1.0))  # median of -inf, 6.02, inf; NaN out
    assert decibels(1.0, 0.0) == math.inf and decibels(0.0, 1.0) == -math.inf and math.isnan(decibels(0.0, 0.0))

    data = report_json(report)
    json.dumps(data, allow_nan=False)  # strict JSON: no NaN or Infinity anywhere
    assert [c["reduction_db"] for c in data["channels"]] == [None, None, None, pytest.approx(db(4.0, 1.0))]
    assert data["worst_channel"] == {"channel": 1, "reduction_db": None}
    rows = {line.split()[0]: line.split() for line in report_text(report).splitlines()[2:6]}
    assert rows["0"][-1] == "inf" and rows["1"][-1] == "-inf" and rows["2"][-1] == "n/a" and rows["3"][-1] == "6.0"

    nothing = cleaning_report(np.full((3, 2), np.nan), np.zeros((3, 2)))
    assert (nothing.n_samples, nothing.n_excluded) == (0, 3)
    assert np.isnan(nothing.power_before).all() and nothing.overall.worst_channel is None
    assert "overall power reduction: n/a dB" in report_text(nothing)


def test_the_accumulator_chunk_by_chunk_equals_the_one_shot_report(monkeypatch):
    x, y, _ = common_noise_rig(n_samples=3001)
    x[100, 4] = np.nan
    monkeypatch.setattr(cleaning, "BLOCK_ELEMENTS", 9 * 64)  # the one-shot report in 64-row blocks too
    whole = cleaning_report(x, y, GROUPS)
    accumulator = CleaningAccumulator(GROUPS)
    edges = [0, 1, 1, 250, 999, 1000, 2345, 3001]  # an empty chunk and a one-row chunk included
    for start, stop in itertools.pairwise(edges):
        accumulator.add(x[start:stop], y[start:stop].astype(np.float32))
    chunked = accumulator.report()
    y32 = y.astype(np.float32)
    assert (chunked.n_samples, chunked.n_excluded) == (whole.n_samples, whole.n_excluded) == (3000, 1)
    np.testing.assert_allclose(chunked.power_before, whole.power_before, rtol=1e-12)
    np.testing.assert_allclose(
        chunked.power_after, [mean_power(np.delete(y32[:, c], 100)) for c in range(9)], rtol=1e-12
    )
    np.testing.assert_allclose(whole.power_after, [mean_power(np.delete(y[:, c], 100)) for c in range(9)], rtol=1e-12)
    assert [g.channels for g in chunked.groups] == [g.channels for g in whole.groups]


def test_bad_input_is_refused_with_a_message():
    x = np.zeros((5, 3))
    with pytest.raises(ValueError, match="shape"):
        cleaning_report(x, np.zeros((5, 4)))
    with pytest.raises(ValueError, match="2-D"):
        cleaning_report(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="real numbers"):
        cleaning_report(x.astype(complex), x)
    with pytest.raises(ValueError, match=r"valid range is 0\.\.2"):
        cleaning_report(x, x, [[0, 3]])
    with pytest.raises(ValueError, match="must not overlap"):
        cleaning_report(x, x, [[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="empty"):
        cleaning_report(x, x, [[0], []])
    accumulator = CleaningAccumulator()
    with pytest.raises(ValueError, match="no chunk"):
        accumulator.report()
    accumulator.add(x, x)
    with pytest.raises(ValueError, match="4 channels but the earlier ones had 3"):
        accumulator.add(np.zeros((2, 4)), np.zeros((2, 4)))


def test_groups_follow_the_sessions_settings():
    assert groups_for_settings({"channel_groups": [[5, 3], [0, 1, 2]]}, 6) == [[3, 5], [0, 1, 2]]
    assert groups_for_settings({"block_size": 3, "min_group_size": 3}, 8) == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert groups_for_settings({"channel_groups": None, "block_size": None}, 4) == [[0, 1, 2, 3]]
    session = {"n_channels": 5, "settings": {"block_size": 2, "a_setting_from_a_newer_server": 1}}
    assert session_groups(session) == [[0, 1], [2, 3], [4]]
    assert session_groups({"n_channels": None, "settings": {"block_size": 2}}) == []
    assert session_groups({"n_channels": None, "settings": {"block_size": 2}}, n_channels=3) == [[0, 1], [2]]
    with pytest.raises(ValueError, match="out-of-range index 4"):
        groups_for_settings({"channel_groups": [[0, 4]]}, 3)


def test_groups_of_a_real_session(shared_server):
    HTTP.put(f"{shared_server.url}/streams/cleaning-groups", json={"channel_groups": [[4, 5, 6], [0, 1, 2]]})
    with LRRClientSync(shared_server.url, "cleaning-groups") as client:
        client.fit(np.random.default_rng(0).standard_normal((20, 7)))
        assert session_groups(client.info()) == [[4, 5, 6], [0, 1, 2]]
        client.delete()


def test_the_table_has_a_row_per_channel_up_to_64_then_groups_and_the_worst_ten():
    x, y, _ = common_noise_rig()
    small = report_text(cleaning_report(x, y, GROUPS))
    lines = small.splitlines()
    assert lines[0].split() == ["channel", "group", "power", "before", "power", "after", "reduction", "dB"]
    assert [line.split()[:2] for line in lines[2:11]] == [[str(c), str(c // 4) if c < 8 else "-"] for c in range(9)]
    assert "in no group (passed through): 8" in small
    assert any(line.split()[:2] == ["0", "0-3"] for line in lines) and any(
        line.split()[:2] == ["1", "4-7"] for line in lines
    )

    rng = np.random.default_rng(5)
    many = rng.standard_normal((500, 100))
    scale = rng.uniform(0.2, 0.9, 100)  # each channel keeps its own fraction of the amplitude
    report = cleaning_report(many, many * scale, [list(range(g, g + 25)) for g in range(0, 100, 25)])
    text = report_text(report)
    table = text.split("\n\n")[0].splitlines()
    assert table[0].startswith("the 10 channels of 100 with the least reduction")
    listed = [int(line.split()[0]) for line in table[3:]]
    assert listed == sorted(range(100), key=lambda c: scale[c], reverse=True)[:10]  # largest kept fraction first
    group_rows = [line.split() for line in text.split("\n\n")[1].splitlines()[3:]]
    assert [row[:2] for row in group_rows] == [["0", "0-24"], ["1", "25-49"], ["2", "50-74"], ["3", "75-99"]]
    overall = db(float(np.sum(many**2)), float(np.sum((many * scale) ** 2)))
    assert f"overall power reduction: {overall:.1f} dB (100 channels" in text
    assert report_text(report, max_channel_rows=100).count("\n") > 100


def test_json_names_the_quantity_and_lists_every_channel_and_group():
    x, y, _ = common_noise_rig()
    report = cleaning_report(x, y, GROUPS)
    data = json.loads(json.dumps(report_json(report, quantity="artifact_power"), allow_nan=False))
    assert data["n_channels"] == 9 and data["n_samples"] == 4000 and data["n_samples_excluded"] == 0
    assert data["artifact_power_before"] == pytest.approx(math.fsum(mean_power(x[:, c]) for c in range(9)))
    assert [g["channel_indices"] for g in data["groups"]] == GROUPS
    assert data["ungrouped_channels"] == [8]
    assert data["channels"][5] == {
        "channel": 5,
        "group": 1,
        "artifact_power_before": pytest.approx(mean_power(x[:, 5])),
        "artifact_power_after": pytest.approx(mean_power(y[:, 5])),
        "reduction_db": pytest.approx(db(mean_power(x[:, 5]), mean_power(y[:, 5]))),
    }


def test_the_figure_is_a_png_with_bars_and_weights_in_colours_centred_on_zero(tmp_path):
    from matplotlib import image

    x, y, _ = common_noise_rig()
    report = cleaning_report(x, y, GROUPS)
    w = np.zeros((9, 9))
    w[0, 1], w[5, 4] = 1.0, -0.5  # lopsided: a colour scale from min to max would not put 0 in its middle
    written = plot_report(report, tmp_path / "report.png", w)
    assert written == tmp_path / "report.png"
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = image.imread(written)[..., :3]
    assert pixels.shape[0] > 200 and pixels.shape[1] > pixels.shape[0]  # bars and heatmap side by side
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50

    # 0 is the neutral light centre of a diverging map, and most of the heatmap is 0 (the page is pure white)
    light_grey = (pixels.min(axis=2) > 0.8) & (pixels.max(axis=2) < 0.99) & (np.ptp(pixels, axis=2) < 0.02)
    assert light_grey.sum() > 60_000  # about 12 000 such pixels are text and lines; the zero cells add far more
    # the two weights drawn with their signs flipped change exactly their cells: red one way, blue the other
    flipped = image.imread(plot_report(report, tmp_path / "flipped.png", -w))[..., :3]
    changed = np.abs(pixels - flipped).max(axis=2) > 0.1
    assert changed.sum() > 200
    reddish = pixels[changed][:, 0] - pixels[changed][:, 2] > 0.2
    bluish = pixels[changed][:, 2] - pixels[changed][:, 0] > 0.2
    assert reddish.sum() > 100 and bluish.sum() > 100 and (reddish | bluish).mean() > 0.9

    # the group boundaries are black lines across the heatmap and the bars (about 300 pixels each)
    dark = [
        (image.imread(plot_report(r, tmp_path / f"{i}.png", np.zeros((9, 9))))[..., :3].max(axis=2) < 0.2).sum()
        for i, r in enumerate((report, cleaning_report(x, y)))
    ]
    assert dark[0] - dark[1] > 900

    bars_only = plot_report(report, tmp_path / "bars.png")
    bars = image.imread(bars_only)[..., :3]
    assert bars.shape[1] < pixels.shape[1] and len(np.unique(bars.reshape(-1, 3), axis=0)) > 10
    with pytest.raises(ValueError, match="9 x 9"):
        plot_report(report, tmp_path / "bad.png", np.zeros((3, 3)))


def test_the_figure_without_matplotlib_names_the_extra(monkeypatch, tmp_path):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.ticker"):
        monkeypatch.setitem(sys.modules, name, None)  # makes the import fail, as when it is not installed
    x, y, _ = common_noise_rig(n_samples=10)
    with pytest.raises(ReportError, match=r"pip install 'lrr-service\[report\]'"):
        plot_report(cleaning_report(x, y), tmp_path / "r.png")
    with pytest.raises(ReportError, match="matplotlib"):
        cleaning.require_plotting()
    assert not (tmp_path / "r.png").exists()


def test_demo_reports_per_group_and_draws_the_figure(server_factory, tmp_path):
    server = server_factory(env={"LRR_BLOCK_SIZE": "4"})
    figure = tmp_path / "demo.png"
    done = lrr(
        "demo",
        "--channels",
        "8",
        "--seconds",
        "4",
        "--fit-seconds",
        "2",
        "--report",
        str(figure),
        "--json",
        url=server.url,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert [g["channel_indices"] for g in data["groups"]] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    before = [c["artifact_power_before"] for c in data["channels"]]
    after = [c["artifact_power_after"] for c in data["channels"]]
    for group in data["groups"]:
        members = group["channel_indices"]
        expected = db(math.fsum(before[c] for c in members), math.fsum(after[c] for c in members))
        assert group["reduction_db"] == pytest.approx(expected) and expected > 5  # identity gives 0
    assert data["report"] == str(figure) and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = lrr("demo", "--channels", "6", "--seconds", "2", "--fit-seconds", "1", url=server.url).stdout
    assert "per group (reduction of the group's summed power)" in text
