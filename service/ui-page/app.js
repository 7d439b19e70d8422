// lrr-service live view: sessions, their status, weights and quality, and the operator's actions.
// Plain JavaScript served by the service itself (no CDN, no build step). Server data is inserted with
// textContent only; stream keys go into URLs through encodeURIComponent. The API token, when the server
// needs one, is kept in this tab's sessionStorage and sent as `Authorization: Bearer <token>`, never in a URL.
"use strict";

(() => {
  const TOKEN_KEY = "lrr-service-token";
  const POLL_MS = 1000; // GET /streams when the event stream is not available
  const FEED_RETRY_MS = 15000; // while polling, try the event stream again this often
  const STALL_MS = 5000; // an event stream silent this long is given up (the server sends one a second)
  const DETAIL_MS = 1000; // the selected session's status and quality
  const WEIGHTS_MIN_MS = 3000; // weights CSV fetched at most this often (automatic solves change them often)
  const DASH = "—";

  const $ = (id) => document.getElementById(id);

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY),
    streams: [],
    selected: null,
    feed: null, // AbortController of the event stream in progress
    pollTimer: null,
    pollSince: 0,
    detailTimer: null,
    weights: null, // {key, version, n, matrix, order, boundaries}
    weightsAt: 0,
    weightsLoading: false,
    groups: null,
    lastQuality: null,
    running: false,
  };

  // -- the API ------------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
    toString() {
      return this.status ? `${this.code} (HTTP ${this.status}): ${this.message}` : `${this.code}: ${this.message}`;
    }
  }

  const streamPath = (key, rest) => "streams/" + encodeURIComponent(key) + (rest ? "/" + rest : "");

  async function errorOf(response) {
    let code = "http_" + response.status;
    let message = response.statusText || "the request failed";
    try {
      const detail = (await response.json()).detail;
      if (Array.isArray(detail)) {
        code = "invalid_request";
        message = detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
      } else if (detail && typeof detail === "object") {
        code = detail.code || code;
        message = detail.message || message;
      } else if (typeof detail === "string") {
        message = detail;
      }
    } catch (_) {
      // not JSON: keep the status line
    }
    return new ApiError(response.status, code, message);
  }

  // Every API call of the page: relative URLs (the page is at <root>/ui, the API at <root>/), the token as a
  // bearer header. A 401 sends the page back to its login.
  async function api(path, options = {}) {
    const headers = new Headers(options.headers || {});
    if (state.token) headers.set("Authorization", "Bearer " + state.token);
    let response;
    try {
      response = await fetch(path, { ...options, headers, cache: "no-store", credentials: "omit" });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError(0, "unreachable", "the server did not answer (" + err.message + ")");
    }
    if (response.ok) return response;
    const error = await errorOf(response);
    if (response.status === 401) showLogin(error.message);
    throw error;
  }

  const json = async (path, options) => (await api(path, options)).json();

  // -- login ----------------------------------------------------------------------------------------------

  function showLogin(message) {
    const hadToken = Boolean(state.token);
    stop();
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    // nothing but the login: the data shown so far goes too
    $("rows").replaceChildren();
    $("status").replaceChildren();
    clearCanvas($("heatmap"));
    clearCanvas($("bars"));
    $("main").hidden = true;
    $("detail").hidden = true;
    $("feed").hidden = true;
    $("logout").hidden = true;
    hideError();
    $("login").hidden = false;
    $("login-message").textContent = hadToken ? "Token refused: " + message : "";
    $("token").focus();
  }

  async function login(event) {
    event.preventDefault();
    const input = $("token");
    const token = input.value.trim();
    input.value = "";
    if (!token) return;
    state.token = token;
    $("login-message").textContent = "";
    try {
      const body = await json("streams");
      sessionStorage.setItem(TOKEN_KEY, token);
      open(body);
    } catch (err) {
      if (err.status !== 401) $("login-message").textContent = String(err);
    }
  }

  function logout() {
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("");
  }

  // -- start and stop -------------------------------------------------------------------------------------

  async function start() {
    try {
      open(await json("streams"));
    } catch (err) {
      if (err.status === 401) return; // the login is shown
      open({ streams: [], count: 0 });
      showError(err);
    }
  }

  function open(body) {
    $("login").hidden = true;
    $("main").hidden = false;
    $("feed").hidden = false;
    $("logout").hidden = !state.token;
    state.running = true;
    render(body);
    startFeed();
    const key = decodeURIComponent(location.hash.slice(1));
    if (key && !state.selected) select(key);
  }

  function stop() {
    state.running = false;
    stopFeed();
    clearTimeout(state.detailTimer);
    state.detailTimer = null;
    state.selected = null;
    state.weights = null;
    state.lastQuality = null;
  }

  // -- live updates: GET /events (server-sent events read with fetch), else polling GET /streams ----------

  function setFeed(mode, text) {
    const feed = $("feed");
    feed.className = "feed " + mode;
    feed.textContent = text;
  }

  function stopFeed() {
    const feed = state.feed;
    state.feed = null;
    if (feed) feed.abort();
    clearTimeout(state.pollTimer);
    state.pollTimer = null;
  }

  async function startFeed() {
    stopFeed();
    const controller = new AbortController();
    state.feed = controller;
    try {
      const response = await api("events", { signal: controller.signal, headers: { Accept: "text/event-stream" } });
      if (!response.body) throw new Error("no stream body");
      setFeed("live", "live");
      await readEvents(response.body, controller, (name, data) => {
        if (name === "streams") render(JSON.parse(data));
      });
    } catch (err) {
      if (err.status === 401) return;
    }
    if (state.feed === controller && state.running) startPolling(); // ended, stalled or refused: poll
  }

  // The lines of a text/event-stream: `event:` and `data:` fields, an empty line ends an event.
  async function readEvents(body, controller, onEvent) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let name = "message";
    let data = [];
    let watchdog = setTimeout(() => controller.abort(), STALL_MS);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        clearTimeout(watchdog);
        watchdog = setTimeout(() => controller.abort(), STALL_MS);
        buffer += decoder.decode(value, { stream: true });
        const lines = buffer.split(/\r\n|\r|\n/);
        buffer = lines.pop();
        for (const line of lines) {
          if (line === "") {
            if (data.length) onEvent(name, data.join("\n"));
            name = "message";
            data = [];
            continue;
          }
          if (line.startsWith(":")) continue; // a comment (keep-alive)
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? "" : line.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          if (field === "event") name = value;
          else if (field === "data") data.push(value);
        }
      }
    } finally {
      clearTimeout(watchdog);
      reader.cancel().catch(() => {});
    }
  }

  function startPolling() {
    state.feed = null;
    state.pollSince = Date.now();
    setFeed("polling", "polling every second");
    const poll = async () => {
      if (!state.running || state.feed) return;
      try {
        render(await json("streams"));
        setFeed("polling", "polling every second");
      } catch (err) {
        if (err.status === 401) return;
        setFeed("polling", "server unreachable, retrying");
      }
      if (!state.running || state.feed) return;
      if (Date.now() - state.pollSince > FEED_RETRY_MS) startFeed();
      else state.pollTimer = setTimeout(poll, POLL_MS);
    };
    state.pollTimer = setTimeout(poll, POLL_MS);
  }

  // -- formatting -------------------------------------------------------------------------------------------

  const isNumber = (x) => typeof x === "number" && Number.isFinite(x);

  function fixed(x, digits = 1) {
    if (!isNumber(x)) return DASH;
    return x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  function rate(x) {
    if (!isNumber(x)) return DASH;
    return Math.abs(x) >= 100 ? Math.round(x).toLocaleString("en-US") : fixed(x, 1);
  }

  function micros(x) {
    if (!isNumber(x)) return DASH;
    return x >= 1000 ? fixed(x / 1000, 2) + " ms" : Math.round(x) + " µs";
  }

  function seconds(x) {
    if (!isNumber(x)) return DASH;
    if (x < 1) return Math.round(x * 1000) + " ms";
    if (x < 120) return fixed(x, x < 10 ? 1 : 0) + " s";
    if (x < 7200) return Math.round(x / 60) + " min";
    return fixed(x / 3600, 1) + " h";
  }

  function db(x) {
    return isNumber(x) ? fixed(x, 1) + " dB" : DASH;
  }

  function when(at) {
    if (at === null || at === undefined) return DASH;
    const date = typeof at === "number" ? new Date(at * 1000) : new Date(at);
    return Number.isNaN(date.getTime()) ? String(at) : date.toLocaleTimeString();
  }

  function lastSolve(solve) {
    if (!solve || !isNumber(solve.seconds)) return DASH;
    return `${seconds(solve.seconds)} at ${when(solve.at)}`;
  }

  function connections(status) {
    const open = status && status.connections;
    if (!open) return DASH;
    const parts = Object.entries(open)
      .filter(([, n]) => n > 0)
      .map(([mode, n]) => `${mode} ${n}`);
    return parts.length ? parts.join(" · ") : "idle";
  }

  const get = (object, ...path) => path.reduce((o, name) => (o === null || o === undefined ? undefined : o[name]), object);

  // -- the table of sessions ------------------------------------------------------------------------------

  function medianOf(stream) {
    return get(stream, "status", "quality", "median_channel_db");
  }

  function render(body) {
    if (!state.running) return;
    state.streams = Array.isArray(body.streams) ? body.streams : [];
    const count = body.count ?? state.streams.length;
    $("count").textContent = `(${count}${body.max_sessions ? " of at most " + body.max_sessions : ""})`;
    $("empty").hidden = state.streams.length > 0;
    const rows = document.createDocumentFragment();
    for (const stream of state.streams) {
      const status = stream.status;
      const error = get(status, "last_error");
      const cells = [
        [stream.key],
        [stream.n_channels ?? DASH, "num"],
        [connections(status) + (error ? " · error " + error.code : ""), error ? "error-cell" : ""],
        [rate(get(status, "rates", "frames_in_per_s")), "num"],
        [rate(get(status, "rates", "samples_in_per_s")), "num"],
        [rate(get(status, "rates", "frames_out_per_s")), "num"],
        [rate(get(status, "rates", "samples_out_per_s")), "num"],
        ["v" + (get(status, "weights", "version") ?? stream.weights_version ?? DASH), "num"],
        [get(status, "weights", "source") ?? stream.weights_source ?? DASH],
        [seconds(get(status, "weights", "age_seconds")), "num"],
        [micros(get(status, "transform_latency_us", "p50")), "num"],
        [micros(get(status, "transform_latency_us", "p99")), "num"],
        [db(medianOf(stream)), "num"],
      ];
      const row = document.createElement("tr");
      row.dataset.key = stream.key;
      if (stream.key === state.selected) row.classList.add("selected");
      for (const [text, cls] of cells) {
        const cell = document.createElement("td");
        cell.textContent = String(text);
        if (cls) cell.className = cls;
        row.append(cell);
      }
      rows.append(row);
    }
    $("rows").replaceChildren(rows);
  }

  function onRowClick(event) {
    const row = event.target.closest("tr");
    if (row && row.dataset.key) select(row.dataset.key);
  }

  // -- the selected session ---------------------------------------------------------------------------------

  function select(key) {
    state.selected = key;
    state.weights = null;
    state.weightsAt = 0;
    state.groups = null;
    state.lastQuality = null;
    history.replaceState(null, "", "#" + encodeURIComponent(key));
    for (const row of $("rows").children) row.classList.toggle("selected", row.dataset.key === key);
    $("detail").hidden = false;
    $("detail-key").textContent = key;
    $("action-message").textContent = "";
    $("status").replaceChildren();
    $("heatmap-caption").textContent = "";
    $("bars-caption").textContent = "";
    $("bars-hover").textContent = "";
    clearCanvas($("heatmap"));
    clearCanvas($("bars"));
    clearTimeout(state.detailTimer);
    refreshDetail();
  }

  async function refreshDetail() {
    const key = state.selected;
    clearTimeout(state.detailTimer);
    if (!key || !state.running) return;
    try {
      const [info, quality] = await Promise.all([
        json(streamPath(key)),
        json(streamPath(key, "quality")).catch((err) => {
          if (err.status === 404 && err.code !== "unknown_session") return null; // not offered by this server
          throw err;
        }),
      ]);
      if (key !== state.selected) return;
      state.lastQuality = quality;
      await refreshWeights(key, info);
      renderStatus(info, quality);
      renderBars(quality);
    } catch (err) {
      if (err.status === 401 || key !== state.selected) return;
      if (err.code === "unknown_session") {
        $("action-message").textContent = "";
        showError(err);
        state.selected = null;
        $("detail").hidden = true;
        history.replaceState(null, "", location.pathname + location.search);
        return;
      }
      showError(err);
    }
    if (key === state.selected && state.running) state.detailTimer = setTimeout(refreshDetail, DETAIL_MS);
  }

  function renderStatus(info, quality) {
    const status = info.status || {};
    const error = status.last_error;
    const overall = (quality && quality.overall) || {};
    const worst = overall.worst_channel;
    const open = status.connections;
    const items = [
      ["channels", info.n_channels ?? DASH],
      ["connections", connections(status)],
      ["nominal rate (fs)", isNumber(status.fs) ? fixed(status.fs, 0) + " Hz" : DASH],
      ["frames/s in · out", `${rate(get(status, "rates", "frames_in_per_s"))} · ${rate(get(status, "rates", "frames_out_per_s"))}`],
      ["samples/s in · out", `${rate(get(status, "rates", "samples_in_per_s"))} · ${rate(get(status, "rates", "samples_out_per_s"))}`],
      [
        "transform latency p50 · p99",
        `${micros(get(status, "transform_latency_us", "p50"))} · ${micros(get(status, "transform_latency_us", "p99"))}`,
      ],
      ["weights version", get(status, "weights", "version") ?? info.weights_version ?? DASH],
      ["weights source", get(status, "weights", "source") ?? info.weights_source ?? DASH],
      ["weights age", seconds(get(status, "weights", "age_seconds"))],
      ["last solve", lastSolve(status.last_solve)],
      ["statistics samples", (status.n_samples ?? info.n_samples ?? DASH).toLocaleString("en-US")],
      ["solved on samples", (info.n_samples_solved ?? DASH).toLocaleString("en-US")],
      ["groups", state.groups ? String(state.groups.length) : DASH],
      ["reduction overall", db(overall.reduction_db)],
      ["median channel", db(overall.median_channel_db)],
      ["worst channel", worst ? `#${worst.index} ${db(worst.reduction_db)}` : DASH],
      ["quality window", quality && isNumber(quality.window_seconds) ? seconds(quality.window_seconds) : DASH],
      ["last error", error ? `${error.code} at ${when(error.at)}` : open ? "none" : DASH],
    ];
    const list = document.createDocumentFragment();
    for (const [name, value] of items) {
      const item = document.createElement("div");
      const term = document.createElement("dt");
      const text = document.createElement("dd");
      term.textContent = name;
      text.textContent = String(value);
      item.append(term, text);
      if (name === "last error" && error) item.title = error.message || "";
      list.append(item);
    }
    $("status").replaceChildren(list);
  }

  // -- weights heatmap -------------------------------------------------------------------------------------

  function parseCsv(text) {
    const rows = [];
    for (const raw of text.replace(/^\uFEFF/, "").split(/\r?\n/)) {
      const line = raw.trim();
      if (!line || line.startsWith("#")) continue;
      rows.push(line.split(",").map(Number));
    }
    const n = rows.length;
    const matrix = new Float64Array(n * n);
    rows.forEach((row, i) => matrix.set(row.slice(0, n), i * n));
    return { n, matrix };
  }

  // Channels in group order (each group's channels, then those in none), and where each group ends.
  function groupOrder(n, groups) {
    const order = [];
    const boundaries = [];
    const seen = new Uint8Array(n);
    for (const group of groups || []) {
      for (const index of group) {
        if (index >= 0 && index < n && !seen[index]) {
          seen[index] = 1;
          order.push(index);
        }
      }
      boundaries.push(order.length);
    }
    for (let i = 0; i < n; i++) if (!seen[i]) order.push(i);
    return { order, boundaries: boundaries.filter((b) => b > 0 && b < n) };
  }

  async function refreshWeights(key, info) {
    const version = get(info, "status", "weights", "version") ?? info.weights_version;
    const source = get(info, "status", "weights", "source") ?? info.weights_source;
    const shown = state.weights;
    if (shown && shown.key === key && shown.version === version) return;
    if (shown && shown.key === key && Date.now() - state.weightsAt < WEIGHTS_MIN_MS) return;
    if (state.weightsLoading) return;
    state.weightsLoading = true;
    state.weightsAt = Date.now();
    try {
      const channels = await json(streamPath(key, "channels"));
      state.groups = channels.groups;
      if (!version || source === "none") {
        state.weights = { key, version, n: 0 };
        clearCanvas($("heatmap"));
        $("heatmap-caption").textContent = "none yet: the output is the input (identity) until a solve";
        return;
      }
      const text = await (await api(streamPath(key, "weights"))).text();
      if (key !== state.selected) return;
      const { n, matrix } = parseCsv(text);
      const { order, boundaries } = groupOrder(n, state.groups);
      state.weights = { key, version, n, matrix, order, boundaries };
      drawHeatmap(state.weights);
      const reordered = order.some((c, i) => c !== i);
      $("heatmap-caption").textContent =
        `version ${version}, ${n} × ${n}` +
        (boundaries.length ? `, ${boundaries.length + 1} groups` : "") +
        (reordered ? " (channels in group order)" : "");
    } catch (err) {
      if (err.code === "no_weights") {
        state.weights = { key, version, n: 0 };
        clearCanvas($("heatmap"));
        $("heatmap-caption").textContent = "none yet";
      } else {
        throw err;
      }
    } finally {
      state.weightsLoading = false;
    }
  }

  // Diverging colour map (blue, white at 0, red), t in [-1, 1].
  const STOPS = [
    [-1, [5, 48, 97]],
    [-0.5, [67, 147, 195]],
    [0, [247, 247, 247]],
    [0.5, [214, 96, 77]],
    [1, [103, 0, 31]],
  ];

  function colour(t) {
    const x = Math.max(-1, Math.min(1, Number.isFinite(t) ? t : 0));
    for (let i = 1; i < STOPS.length; i++) {
      const [t1, c1] = STOPS[i];
      if (x <= t1) {
        const [t0, c0] = STOPS[i - 1];
        const f = (x - t0) / (t1 - t0);
        return [0, 1, 2].map((k) => Math.round(c0[k] + f * (c1[k] - c0[k])));
      }
    }
    return STOPS[STOPS.length - 1][1];
  }

  function clearCanvas(canvas) {
    canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  }

  function drawHeatmap({ n, matrix, order, boundaries }) {
    const canvas = $("heatmap");
    const ctx = canvas.getContext("2d");
    let scale = 0;
    for (const value of matrix) if (Math.abs(value) > scale) scale = Math.abs(value);
    scale = scale || 1;
    const image = new ImageData(n, n);
    for (let r = 0; r < n; r++) {
      const row = order[r] * n;
      for (let c = 0; c < n; c++) {
        const [red, green, blue] = colour(matrix[row + order[c]] / scale);
        const at = (r * n + c) * 4;
        image.data[at] = red;
        image.data[at + 1] = green;
        image.data[at + 2] = blue;
        image.data[at + 3] = 255;
      }
    }
    const cells = document.createElement("canvas");
    cells.width = n;
    cells.height = n;
    cells.getContext("2d").putImageData(image, 0, 0);
    const size = canvas.width;
    ctx.clearRect(0, 0, size, canvas.height);
    ctx.imageSmoothingEnabled = n > size; // enlarged: sharp cells; reduced: averaged
    ctx.drawImage(cells, 0, 0, size, size);
    ctx.strokeStyle = "rgba(20, 20, 20, 0.85)";
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (const b of boundaries) {
      const at = Math.round((b * size) / n) + 0.5;
      ctx.moveTo(at, 0);
      ctx.lineTo(at, size);
      ctx.moveTo(0, at);
      ctx.lineTo(size, at);
    }
    ctx.stroke();
    $("heatmap-min").textContent = fixed(-scale, 3);
    $("heatmap-max").textContent = "+" + fixed(scale, 3);
  }

  // -- reduction bars ----------------------------------------------------------------------------------------

  function barsOrder(count) {
    const w = state.weights;
    return w && w.n === count && w.order ? w : groupOrder(count, state.groups);
  }

  function renderBars(quality) {
    const canvas = $("bars");
    const ctx = canvas.getContext("2d");
    const channels = (quality && quality.channels) || [];
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!quality) {
      $("bars-caption").textContent = "not measured by this server";
      return;
    }
    const values = channels.map((c) => (isNumber(c.reduction_db) ? c.reduction_db : null));
    const measured = values.filter((v) => v !== null);
    if (!measured.length) {
      $("bars-caption").textContent = "not measured yet: transform traffic is measured";
      return;
    }
    const { order, boundaries } = barsOrder(values.length);
    const top = Math.max(1, ...measured);
    const bottom = Math.min(0, ...measured);
    const width = canvas.width;
    const height = canvas.height;
    const pad = 16;
    const y = (v) => pad + ((top - v) / (top - bottom)) * (height - 2 * pad);
    const step = width / values.length;
    const zero = y(0);
    order.forEach((index, position) => {
      const v = values[index];
      if (v === null) return;
      ctx.fillStyle = v >= 0 ? "#1f5fa8" : "#b3261e";
      const x = position * step;
      const barWidth = Math.max(1, step - (step > 3 ? 1 : 0));
      ctx.fillRect(x, Math.min(zero, y(v)), barWidth, Math.max(1, Math.abs(y(v) - zero)));
    });
    ctx.strokeStyle = "#444";
    ctx.beginPath();
    ctx.moveTo(0, Math.round(zero) + 0.5);
    ctx.lineTo(width, Math.round(zero) + 0.5);
    ctx.stroke();
    ctx.strokeStyle = "rgba(0, 0, 0, 0.35)";
    ctx.setLineDash([3, 3]);
    ctx.beginPath();
    for (const b of boundaries) {
      const at = Math.round(b * step) + 0.5;
      ctx.moveTo(at, 0);
      ctx.lineTo(at, height);
    }
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = "#6a6f75";
    ctx.font = "11px sans-serif";
    ctx.fillText(fixed(top, 1) + " dB", 4, pad - 4);
    if (bottom < 0) ctx.fillText(fixed(bottom, 1) + " dB", 4, height - 4);
    const median = get(quality, "overall", "median_channel_db");
    $("bars-caption").textContent =
      `${measured.length} of ${values.length} channels measured, median ${db(median)}` +
      (isNumber(quality.window_seconds) ? `, over the last ${seconds(quality.window_seconds)}` : "");
    canvas.dataset.bars = String(measured.length);
  }

  function onBarsHover(event) {
    const quality = state.lastQuality;
    const channels = (quality && quality.channels) || [];
    if (!channels.length) return;
    const canvas = $("bars");
    const box = canvas.getBoundingClientRect();
    const position = Math.floor(((event.clientX - box.left) / box.width) * channels.length);
    const { order } = barsOrder(channels.length);
    const channel = channels[order[position]];
    if (!channel) return;
    const label = channel.label ? ` (${channel.label})` : "";
    $("bars-hover").textContent =
      `channel ${channel.index}${label}: ${db(channel.reduction_db)}, ` +
      `power in ${fixed(channel.power_in, 3)}, out ${fixed(channel.power_out, 3)}`;
  }

  // -- actions -------------------------------------------------------------------------------------------

  function showError(err) {
    $("error-text").textContent = String(err);
    $("error").hidden = false;
  }

  function hideError() {
    $("error").hidden = true;
    $("error-text").textContent = "";
  }

  function say(text) {
    $("action-message").textContent = text;
  }

  async function action(button, work) {
    const key = state.selected;
    if (!key) return;
    button.classList.add("busy");
    hideError();
    try {
      await work(key);
      if (key === state.selected) {
        state.weightsAt = 0;
        await refreshDetail();
      }
    } catch (err) {
      if (err.status !== 401) showError(err);
    } finally {
      button.classList.remove("busy");
    }
  }

  function solve() {
    action($("solve"), async (key) => {
      say("solving…");
      const done = await json(streamPath(key, "solve"), { method: "POST" });
      say(`solved: weights version ${done.weights_version} in ${seconds(done.seconds)}`);
    });
  }

  function reset() {
    const key = state.selected;
    if (!key) return;
    const question =
      `Reset session "${key}"? Its statistics, weights and channel count are cleared ` +
      "(its settings are kept); transforms pass the input through until it is fitted again.";
    if (!window.confirm(question)) return;
    action($("reset"), async (k) => {
      await json(streamPath(k, "reset"), { method: "POST" });
      say("reset");
    });
  }

  function download() {
    action($("download"), async (key) => {
      const response = await api(streamPath(key, "weights"));
      const named = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
      const blob = await response.blob();
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = named ? named[1] : `${key}-weights.csv`;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
      say("downloaded " + link.download);
    });
  }

  function upload() {
    const input = $("upload");
    const file = input.files && input.files[0];
    input.value = "";
    if (!file) return;
    action($("upload-label"), async (key) => {
      say("uploading " + file.name + "…");
      const done = await json(streamPath(key, "weights"), {
        method: "PUT",
        headers: { "Content-Type": "text/csv" },
        body: file,
      });
      say(`uploaded ${file.name}: weights version ${done.weights_version} (pinned until a solve)`);
    });
  }

  // -- wiring ------------------------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", login);
    $("logout").addEventListener("click", logout);
    $("error-close").addEventListener("click", hideError);
    $("rows").addEventListener("click", onRowClick);
    $("solve").addEventListener("click", solve);
    $("reset").addEventListener("click", reset);
    $("download").addEventListener("click", download);
    $("upload").addEventListener("change", upload);
    $("bars").addEventListener("mousemove", onBarsHover);
    start();
  });
})();
