"""docs/benchmarks.md: the targets with their gaps, the floors, every table, the plots and the analysis."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latency import fmt_us
from rigs import REPEATS, max_rigs, rigs_per_core
from transform_grid import GridRow

NOTES = Path(__file__).with_name("notes.md")


@dataclass(frozen=True)
class Target:
    """One target of issue 6: what is asked, what was measured, and whether it holds."""

    name: str
    goal: str
    measured: str
    met: bool
    gap: str


def find_row(rows: list[GridRow], n_channels: int, n_samples: int, dtype: str) -> GridRow:
    """The grid row of one configuration."""
    return next(r for r in rows if (r.n_channels, r.n_samples, r.dtype) == (n_channels, n_samples, dtype))


def targets(
    rows: list[GridRow], fit: dict[str, Any], rig_rows: list[dict[str, Any]], rest: dict[str, Any]
) -> list[Target]:
    """Evaluate every target against this run's figures."""
    key = find_row(rows, 384, 30, "float32")
    overhead = key.overhead_p50_us
    with_rt = fit["p99_ratio"]["realtime_fit"]
    with_full = fit["p99_ratio"]["full_speed_fit"]
    fit_rate = fit["fit_with_transform_samples_per_s"]
    rigs = max_rigs(rig_rows)
    hot = key.cpu_overhead_us
    return [
        Target(
            "service overhead, 30 x 384 float32, p50",
            "<= 30 µs",
            f"{overhead:.1f} µs",
            overhead <= 30,
            _gap(overhead - 30, "µs"),
        ),
        Target(
            "(same, hot: server CPU per frame pipelined, minus echo server and engine)",
            "<= 30 µs",
            f"{hot:.1f} µs",
            hot <= 30,
            _gap(hot - 30, "µs"),
        ),
        Target(
            "(same, the service's code alone: in-process on_binary minus engine)",
            "<= 30 µs",
            f"{key.path_overhead_us:.1f} µs",
            key.path_overhead_us <= 30,
            _gap(key.path_overhead_us - 30, "µs"),
        ),
        Target(
            "384 ch in 1 ms chunks, pipelined",
            ">= 5x real time",
            f"{key.realtime_factor:.1f}x",
            key.realtime_factor >= 5,
            _gap(5 - key.realtime_factor, "x", lower_is_better=False),
        ),
        Target(
            "(same, CPU-bound: 1 s / server CPU per frame)",
            ">= 5x real time",
            f"{key.cpu_bound_factor:.1f}x",
            key.cpu_bound_factor >= 5,
            _gap(5 - key.cpu_bound_factor, "x", lower_is_better=False),
        ),
        Target(
            "p99 at real-time pacing, 30 x 384 float32",
            "<= 1 ms",
            f"{key.service_paced.p99:,.0f} µs",
            key.service_paced.p99 <= 1000,
            _gap(key.service_paced.p99 - 1000, "µs"),
        ),
        Target(
            "fit through the service, 384 ch, 30-sample chunks, transform running",
            ">= 300 000 samples/s",
            f"{fit_rate:,.0f} samples/s",
            fit_rate >= 300_000,
            _gap(300_000 - fit_rate, "samples/s", lower_is_better=False),
        ),
        Target(
            "transform p99 with real-time fit traffic / without",
            "<= 1.5x",
            f"{with_rt:.2f}x",
            with_rt <= 1.5,
            _gap(with_rt - 1.5, "x"),
        ),
        Target(
            "transform p99 with full-speed fit traffic / without",
            "<= 1.5x",
            f"{with_full:.2f}x",
            with_full <= 1.5,
            _gap(with_full - 1.5, "x"),
        ),
        Target(
            "concurrent 96-ch rigs in real time (p99 < 5 ms)",
            ">= 8",
            str(rigs),
            rigs >= 8,
            _gap(8 - rigs, "rigs", lower_is_better=False),
        ),
        Target(
            "transform p99 with 4 clients moving 1024 x 1024 weights as CSV / without",
            "<= 1.5x",
            f"{rest['p99_ratio']:.2f}x",
            rest["goal_met"],
            _gap(rest["p99_ratio"] - rest["goal_ratio"], "x"),
        ),
    ]


def _gap(excess: float, unit: str, lower_is_better: bool = True) -> str:
    """'met' or how far the figure is from its target."""
    if excess <= 0:
        return "met"
    amount = f"{excess:,.0f}" if abs(excess) >= 100 else f"{excess:.1f}"
    return f"{amount} {unit} {'over' if lower_is_better else 'short'}"


def render(meta: dict[str, Any], results: dict[str, Any], plots: dict[str, Path], out: Path) -> str:
    """The whole markdown page."""
    rows, fit, rig_rows = results["grid"], results["fit"], results["rigs"]
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`bench/bench_service.py`); do not edit by hand: the analysis at the end comes",
        "from `bench/notes.md`. The service runs in its own process (`python -m lrr_service.service serve`),",
        "the client (`websockets` on uvloop) in another, over loopback. Every figure is read against floors",
        "measured in the same run.",
        "",
        f"Run: {meta['date']} on {meta['machine']}; load average before {meta['load_before']}, after "
        f"{meta['load_after']} (the machine is shared: other load shows up in the tails). Python {meta['python']}, "
        f"numpy {meta['numpy']}, {meta['blas']}, uvicorn {meta['uvicorn']}, websockets {meta['websockets']}. "
        f"Server BLAS threads: {meta['server_blas_threads']}. Total run time {meta['seconds']:.0f} s.",
        "",
        "## Targets",
        "",
        "| target | goal | measured | gap |",
        "|---|---|---:|---|",
    ]
    for t in targets(rows, fit, rig_rows, results["rest"]) + quality_targets(results.get("quality")):
        lines.append(f"| {t.name} | {t.goal} | {t.measured} | {'**met**' if t.met else t.gap} |")
    lines += _grid_section(rows, plots, out) + _banked_section(results["banked"])
    lines += _fit_section(fit, plots, out) + _rigs_section(rig_rows, plots, out)
    lines += _rest_section(results["rest"], plots, out)
    lines += _transport_section(results["transports"])
    lines += _memory_section(results["memory"]) + _blas_section(results["blas"], plots, out)
    lines += _quality_section(results.get("quality"))
    if NOTES.exists():
        lines += ["", NOTES.read_text().strip()]
    return "\n".join(lines) + "\n"


def _image(plots: dict[str, Path], name: str, out: Path, alt: str) -> list[str]:
    if name not in plots:
        return []
    return ["", f"![{alt}]({plots[name].relative_to(out.parent).as_posix()})"]


def _grid_section(rows: list[GridRow], plots: dict[str, Path], out: Path) -> list[str]:
    lines = [
        "",
        "## Transform round trip and its floors",
        "",
        "Per configuration (channels x samples per chunk, dtype): the **transport floor** is a bare websocket",
        'echo of a frame of the same size on the same stack (uvicorn, `ws="websockets-sansio"`, uvloop, the same',
        "client), paced like the service; **engine** is `LRR.transform` in-process on one BLAS thread and",
        "**matmul** a bare `np.matmul` of the same shape (medians); **overhead** = service p50 - echo p50 - engine.",
        "Paced = one chunk",
        "per chunk duration at 30 kHz (1 ms for 30 samples, 10 ms for 300); pipelined = 32 frames in flight.",
        "",
        "| config | frame B | echo p50 | echo p99 | engine | matmul | service p50 | p99 | p99.9 | overhead p50 |"
        " pipelined frames/s | x real time | pipelined p50 | CPU/frame service | CPU/frame echo | hot overhead |"
        " in-process path | path overhead | x real time, CPU-bound |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.n_channels} x {r.n_samples} {r.dtype} | {r.frame_bytes:,} | {fmt_us(r.echo_paced.p50)} | "
            f"{fmt_us(r.echo_paced.p99)} | {fmt_us(r.engine_us)} | {fmt_us(r.matmul_us)} | "
            f"{fmt_us(r.service_paced.p50)} | {fmt_us(r.service_paced.p99)} | {fmt_us(r.service_paced.p999)} | "
            f"{r.overhead_p50_us:.1f} | {r.service_pipelined_fps:,.0f} | {r.realtime_factor:.1f} | "
            f"{fmt_us(r.service_pipelined.p50)} | {fmt_us(r.service_cpu_us)} | {fmt_us(r.echo_cpu_us)} | "
            f"{r.cpu_overhead_us:.1f} | {fmt_us(r.path_us)} | {r.path_overhead_us:.1f} | {r.cpu_bound_factor:.1f} |"
        )
    lines += [
        "",
        "Times in µs. p99.9 of the 300-sample rows rests on a few hundred frames (10 ms pacing). CPU/frame:"
        " server process CPU (user + system, all threads) per frame during the pipelined run; hot overhead ="
        " service CPU/frame - echo CPU/frame - engine. In-process path: the service's `StreamChannel.on_binary`"
        " (decode, session, transform, encode, metrics) called in this process without network (median);"
        " path overhead = that minus engine. x real time, CPU-bound = what the pipelined rate would be if the"
        " server had a core to itself (1 s / its CPU per frame), which other load on the machine cannot lower.",
    ]
    lines += ["", "| frame size | echo pipelined frames/s |", "|---:|---:|"]
    lines += [f"| {r.frame_bytes:,} B | {r.echo_pipelined_fps:,.0f} |" for r in rows]
    lines += _image(plots, "transform_latency", out, "transform round trip vs floors")
    lines += _image(plots, "overhead_breakdown", out, "where the round trip goes")
    return lines


def banked_line(banked: dict[str, Any]) -> str:
    """One console line: the banked row against the dense one."""
    row, dense = banked["banked"], banked["dense"]
    paced = row.service_paced
    return (
        f"  banked p50 {paced.p50:8.1f} µs  p99 {paced.p99:8.1f} ({banked['p99_ratio']:.2f}x dense)"
        f"  engine {row.engine_us:7.1f} ({banked['engine_ratio']:.2f}x)"
        f"  pipelined {row.realtime_factor:6.1f}x real time (dense {dense.realtime_factor:.1f}x)"
    )


def _banked_section(banked: dict[str, Any]) -> list[str]:
    row, dense = banked["banked"], banked["dense"]
    lines = [
        "",
        "## 1024 channels in 8 banks",
        "",
        'A 1024-channel session grouped by the `bank` field of its channel description (`channel_groups: "bank"`,'
        " 8 banks of 128, `PUT /streams/{key}/channels`), fitted over the websocket and solved, so its weights are"
        " block diagonal; 30-sample float32 chunks paced at 30 kHz (one per ms) and pipelined, measured like the"
        " grid rows, against the dense 1024 x 30 float32 row of the same run.",
        "",
        "| session | engine | service p50 | p99 | p99.9 | x real time (pipelined) | CPU/frame service |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in (("dense 1024", dense), ("8 banks of 128", row)):
        lines.append(
            f"| {name} | {fmt_us(r.engine_us)} | {fmt_us(r.service_paced.p50)} | {fmt_us(r.service_paced.p99)} | "
            f"{fmt_us(r.service_paced.p999)} | {r.realtime_factor:.1f} | {fmt_us(r.service_cpu_us)} |"
        )
    lines += [
        "",
        f"Banked over dense: p99 {banked['p99_ratio']:.2f}x, p50 {banked['p50_ratio']:.2f}x, engine"
        f" {banked['engine_ratio']:.2f}x, pipelined real-time factor {banked['realtime_ratio']:.2f}x. Times in µs.",
    ]
    return lines


def _fit_section(fit: dict[str, Any], plots: dict[str, Path], out: Path) -> list[str]:
    def lat(name: str) -> str:
        v = fit[name]
        return f"p50 {fmt_us(v['p50'])} µs, p99 {fmt_us(v['p99'])} µs, p99.9 {fmt_us(v['p999'])} µs"

    rt, full = fit["lag_realtime_fit"], fit["lag_full_speed_fit"]

    def ratio(name: str) -> str:
        by_round = " / ".join(f"{r:.2f}" for r in fit["p99_ratio_by_round"][name])
        return f"p99 **{fit['p99_ratio'][name]:.2f}x** without (median of the rounds: {by_round})"

    rates = " / ".join(f"{r:,.0f}" for r in fit["fit_with_transform_samples_per_s_by_round"])
    lines = [
        "",
        "## Fit traffic (384 channels, 30-sample float32 chunks)",
        "",
        f"A paced transform stream (1 ms) on the key is measured alone and beside each kind of traffic from"
        f" another process, in {fit['rounds']} interleaved rounds; each ratio is a round's p99 over the same"
        f" round's p99 alone, and the figure is their median.",
        "",
        f"- Fit alone, pipelined: **{fit['fit_alone_samples_per_s']:,.0f} samples/s** "
        f"({fit['fit_alone_samples_per_s'] / 30_000:.1f}x real time).",
        f"- Fit at full speed, from its own process, while the paced transform stream runs on the same key: "
        f"**{fit['fit_with_transform_samples_per_s']:,.0f} samples/s** "
        f"({fit['fit_with_transform_samples_per_s'] / 30_000:.1f}x real time; rounds: {rates}).",
        f"- Transform stream without other traffic: {lat('transform_alone')}.",
        f"- ... with real-time fit traffic (1 kHz) on the same key: {lat('transform_with_realtime_fit')};"
        f" {ratio('realtime_fit')}.",
        f"- ... with full-speed fit traffic: {lat('transform_with_full_speed_fit')}; {ratio('full_speed_fit')}.",
        f"- Control: ... with a second paced transform stream of the same frames on another key instead of fit"
        f" traffic: {lat('transform_with_control_stream')}; {ratio('control_stream')}. What any second 1 kHz"
        f" stream costs this one on this machine, whatever it carries.",
        f"- Weights lag, from the ack of a fit chunk until weights including it are in use (the first ack"
        f" carrying their `weights_version`; one GET /streams/{{key}} per version for its sample count), over"
        f" all rounds: for the newest chunk a solve includes, real-time fit median {rt['median_ms']:.0f} ms,"
        f" worst {rt['max_ms']:.0f} ms ({rt['n']} solves seen); full-speed fit median {full['median_ms']:.0f} ms,"
        f" worst {full['max_ms']:.0f} ms ({full['n']} solves seen). The worst any chunk waited (it just missed"
        f" a solve and waits for the next): {rt['worst_sample_ms']:.0f} ms with real-time fit,"
        f" {full['worst_sample_ms']:.0f} ms at full speed.",
    ]
    return lines + _image(plots, "fit_cdf", out, "transform latency with fit traffic")


def _rigs_section(rig_rows: list[dict[str, Any]], plots: dict[str, Path], out: Path) -> list[str]:
    lines = [
        "",
        "## Concurrent rigs (96 channels, 30 kHz, 1 ms chunks, float32)",
        "",
        f"Kept in real time (median p99 of {REPEATS} runs per count < 5 ms, every rig at >= 98 % of its rate in"
        f" every run): **{max_rigs(rig_rows)} rigs**. "
        f"CPU-bound capacity, whatever else the machine runs: one rig costs the server "
        f"{100 / rigs_per_core(rig_rows):.1f} % of a core, so one core serves at most "
        f"**{rigs_per_core(rig_rows):.1f} rigs** at 100 % busy (queueing makes the tail grow well before that).",
        "",
        "| rigs | p50 µs | p99 µs by run | p99 µs, all runs | p99.9 µs | echo floor p50 | echo floor p99 |"
        " slowest rig's rate | server CPU | echo server CPU | client CPU | real time |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rig_rows:
        lat = r["latency"]
        by_run = " / ".join(fmt_us(v) for v in r["p99_by_repeat"])
        lines.append(
            f"| {r['rigs']} | {fmt_us(lat['p50'])} | {by_run} | {fmt_us(lat['p99'])} | {fmt_us(lat['p999'])} | "
            f"{fmt_us(r['echo']['p50'])} | {fmt_us(r['echo']['p99'])} | {r['min_rate']:.3f} | {r['server_cpu']:.0%} | "
            f"{r['echo_server_cpu']:.0%} | {r['client_cpu']:.0%} | "
            f"{'yes' if r['real_time'] else 'no'} |"
        )
    return lines + _image(plots, "rigs", out, "latency vs concurrent rigs")


def rest_table(rest: dict[str, Any]) -> list[str]:
    """The table of the REST load section (markdown; `make bench-rest` prints it as it is)."""
    alone, loaded = rest["transform_alone"], rest["transform_loaded"]
    verdict = "**met**" if rest["goal_met"] else f"missed ({_gap(rest['p99_ratio'] - rest['goal_ratio'], 'x')})"
    return [
        "| transform 30 x 384 float32, paced 1 ms | p50 µs | p99 µs | max µs | frames |",
        "|---|---:|---:|---:|---:|",
        f"| alone | {fmt_us(alone['p50'])} | {fmt_us(alone['p99'])} | {fmt_us(alone['max'])} | {alone['n']:,} |",
        f"| under REST load | {fmt_us(loaded['p50'])} | {fmt_us(loaded['p99'])} | {fmt_us(loaded['max'])} |"
        f" {loaded['n']:,} |",
        f"| ratio under load / alone (median of {rest['rounds']} rounds) | {rest['p50_ratio']:.2f}x |"
        f" **{rest['p99_ratio']:.2f}x** | | |",
        "",
        "| goal: p99 ratio | result | uploads/s | downloads/s | median PUT | median GET | server CPU, loaded |"
        " load process CPU |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        f"| <= {rest['goal_ratio']:.1f}x | {verdict} | {rest['uploads_per_s']:.2f} ({rest['uploads']:.1f}) |"
        f" {rest['downloads_per_s']:.2f} ({rest['downloads']:.1f}) | {rest['put_median_s']:.1f} s |"
        f" {rest['get_median_s']:.1f} s | {rest['server_cpu_loaded']:.0%} | {rest['load_process_cpu']:.0%} |",
    ]


def _rest_section(rest: dict[str, Any], plots: dict[str, Path], out: Path) -> list[str]:
    by_round = ", ".join(
        f"{fmt_us(loaded)} / {fmt_us(alone)} µs = {ratio:.2f}"
        for loaded, alone, ratio in zip(
            rest["p99_loaded_by_round"], rest["p99_alone_by_round"], rest["p99_ratio_by_round"]
        )
    )
    n = rest["load_channels"]
    lines = [
        "",
        f"## Transform latency under REST load ({rest['clients']} clients moving {n} x {n} weights)",
        "",
        f"A paced transform stream (30 x 384 float32, one chunk per ms, uploaded weights) is measured alone and"
        f" while {rest['clients']} REST clients, each on its own session, upload (`PUT .../weights`, `text/csv`,"
        f" {rest['csv_bytes'] / 2**20:.1f} MiB) and download (`GET`) {n} x {n} weights in turn as fast as the"
        f" server answers: the server reads, parses, formats and sends large CSVs and checkpoints each upload"
        f" throughout. The clients run in a process of their own, {rest['rounds']} times for"
        f" {rest['seconds']:.1f} s of stream (after 1 s of load), in rounds interleaved with the stream alone;"
        f" each ratio is a round's figure under load over the same round's alone, and the figure is their median"
        f" (p99 under load / alone by round: {by_round}). Request rates count the requests done while the stream"
        f" ran, pro rata for one that straddles its start or end (their number in brackets). Server CPU per frame"
        f" alone: {fmt_us(rest['server_cpu_us_per_frame_alone'])} µs; CPU shares are of one core, medians of the"
        f" rounds, the server's including its CSV worker process. Latency counts from the moment a frame is"
        f" written; the stream was sent at {rest['pace_alone']:.2f}x real time alone and"
        f" {rest['pace_loaded']:.2f}x under load (below 1x, the server stopped reading and a rig would see a"
        f" growing buffer).",
        "",
    ]
    return lines + rest_table(rest) + _image(plots, "rest_cdf", out, "transform latency under REST load")


def _transport_section(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "## Transport variants (echo of a 30 x 384 float32 frame)",
        "",
        "| uvicorn ws | app | p50 µs | p99 µs | pipelined frames/s | server CPU µs/frame |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['ws']} | {r['app']} | {fmt_us(r['paced']['p50'])} | {fmt_us(r['paced']['p99'])} | "
            f"{r['pipelined_fps']:,.0f} | {fmt_us(r['cpu_us'])} |"
        )
    return lines


def _memory_section(memory: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "## Memory per session",
        "",
        "| channels | sessions | RSS per session | arrays (C, W f64 + I-W f32) |",
        "|---:|---:|---:|---:|",
    ]
    for r in memory:
        lines.append(
            f"| {r['n_channels']} | {r['sessions']} | {r['rss_per_session_bytes'] / 2**20:.1f} MiB | "
            f"{r['arrays_bytes'] / 2**20:.1f} MiB |"
        )
    return lines


def _blas_section(blas: list[dict[str, Any]], plots: dict[str, Path], out: Path) -> list[str]:
    lines = [
        "",
        "## BLAS threads",
        "",
        "| where | shape | BLAS threads | neighbour | p50 µs | p99 µs | p99.9 µs |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    for r in blas:
        lat = r["latency"]
        lines.append(
            f"| {r['where']} | {r['shape']} | {r['threads']} | {'busy' if r['busy_neighbour'] else 'quiet'}"
            f" | {fmt_us(lat['p50'])} | {fmt_us(lat['p99'])} | {fmt_us(lat['p999'])} |"
        )
    service = {(r["threads"], r["busy_neighbour"]): r["latency"] for r in blas if r["where"] == "service"}
    if service:
        better = 1 if service[(1, True)]["p99"] <= service[(2, True)]["p99"] else 2
        lines += [
            "",
            f"With a busy neighbour the service's p99 is {fmt_us(service[(1, True)]['p99'])} µs on one BLAS "
            f"thread and {fmt_us(service[(2, True)]['p99'])} µs on two: this run favours "
            f"**LRR_BLAS_THREADS={better}**.",
        ]
    return lines + _image(plots, "blas", out, "BLAS threads")


def console_table(rows: list[GridRow], target_list: list[Target]) -> str:
    """The short table printed at the end of `make bench`."""
    lines = [f"{'config':<22}{'echo p50':>10}{'engine':>9}{'svc p50':>10}{'svc p99':>10}{'overhead':>10}{'x RT':>7}"]
    for r in rows:
        lines.append(
            f"{f'{r.n_channels}x{r.n_samples} {r.dtype}':<22}{r.echo_paced.p50:>10.1f}{r.engine_us:>9.1f}"
            f"{r.service_paced.p50:>10.1f}{r.service_paced.p99:>10.1f}{r.overhead_p50_us:>10.1f}"
            f"{r.realtime_factor:>7.1f}"
        )
    lines.append("")
    for t in target_list:
        lines.append(f"{'MET ' if t.met else 'MISS'}  {t.name}: {t.measured} (goal {t.goal}; {t.gap})")
    return "\n".join(lines)


def _configuration(cost: dict[str, Any]) -> str:
    """The name of the default configuration in the quality cost results ("default", or "every" when it is 1)."""
    return "default" if "default" in cost["configurations"] else "every"


def quality_targets(cost: dict[str, Any] | None) -> list[Target]:
    """Issue 15's goal: the quality measurement at its default costs at most 3 % more CPU per 384 x 30 frame."""
    if not cost:
        return []
    name = _configuration(cost)
    goal = cost["goal_ratio"]
    ratios = [("in-process, the loop's CPU", cost[f"path_cpu_{name}_ratio"])]
    if "server_cpu_off_us" in cost:
        ratios.append(("server process, pipelined", cost[f"server_cpu_{name}_ratio"]))
    return [
        Target(
            f"quality measurement ({_every(cost['default_every'])}): CPU per 384 x 30 float32 frame, {where}",
            f"<= x{goal:.2f} of off",
            f"x{ratio:.3f}",
            ratio <= goal,
            _gap((ratio - goal) * 100, "%"),
        )
        for where, ratio in ratios
    ]


def _quality_section(cost: dict[str, Any] | None) -> list[str]:
    """The quality measurement's cost (bench/quality_cost.py): every frame, the default every-k, off."""
    if not cost:
        return []
    lines = [
        "",
        f"## Quality measurement ({cost['frame']}, dense weights)",
        "",
        "`GET /streams/{key}/quality` needs the power of each transform frame's input and output per channel "
        "(core/quality.py). Measured on every frame (`LRR_QUALITY_EVERY=1`), on every "
        f"{cost['default_every']}th (the default) and off (`0`), in alternating blocks of the same run. "
        "In-process: `StreamChannel.on_binary` on one BLAS thread, medians over the blocks (CPU: the loop's "
        "thread). Servers: one process per setting, paced p50 round trip and CPU per frame under pipelined "
        "load (noisier: the processes share the machine's cores).",
        "",
        "| setting | in-process µs/frame | in-process CPU µs/frame | ratio | server paced p50 µs "
        "| server CPU µs/frame | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    servers = "server_cpu_off_us" in cost
    for name, every in cost["configurations"].items():
        server = (
            f"{fmt_us(cost[f'server_p50_{name}_us'])} | {fmt_us(cost[f'server_cpu_{name}_us'])} | "
            f"x{cost[f'server_cpu_{name}_ratio']:.3f}"
            if servers
            else "- | - | -"
        )
        lines.append(
            f"| {_every(every)} | {fmt_us(cost[f'path_{name}_us'])} | "
            f"{fmt_us(cost[f'path_cpu_{name}_us'])} | x{cost[f'path_cpu_{name}_ratio']:.3f} | {server} |"
        )
    return lines


def _every(every: int) -> str:
    """LRR_QUALITY_EVERY in words."""
    return "off" if every == 0 else "every frame" if every == 1 else f"every {every}th frame"
