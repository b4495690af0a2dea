// The chart explorer: sign in with a token (kept in sessionStorage only), find points, chart any window.
// Data is fetched for the visible range at the chart's resolution (max_points / interval chosen from the span
// and the chart width) and fetched again after every zoom or pan. No build step and no CDN: plain JS + uPlot.
"use strict";

(() => {
  const TOKEN_KEY = "bv.token";
  const HOUR = 3_600_000;
  const DAY = 24 * HOUR;
  const PRESETS = { "1h": HOUR, "6h": 6 * HOUR, "1d": DAY, "7d": 7 * DAY, "30d": 30 * DAY, "90d": 90 * DAY, "1y": 365 * DAY };
  const INTERVALS = [["1min", 60_000], ["5min", 300_000], ["15min", 900_000], ["1h", HOUR], ["1d", DAY]];
  const RAW_MAX_SPAN = 2 * DAY; // up to this span: raw samples, min-max downsampled to the chart width
  const SUBHOUR_MAX_SPAN = 7 * DAY; // sub-hour buckets are computed from raw samples: keep them to a week
  const MAX_CHARTED = 8;
  const COLORS = ["#1f6feb", "#e8743b", "#19a0a0", "#d6336c", "#7b52d6", "#2f9e44", "#b08800", "#495057"];
  const STATE_LABELS = {
    hot: "hot tier",
    cold: "cold tier (day objects)",
    compacted: "cold tier (compacted objects)",
    split: "hot and cold tiers",
    not_loaded: "not loaded (never synced, archived or backfilled)",
    before_start: "before BV_START_DATE (not loaded)",
    future: "in the future (not loaded)",
  };
  const NOT_LOADED = new Set(["not_loaded", "before_start", "future"]);

  const $ = (id) => document.getElementById(id);
  const state = {
    token: null,
    site: null,
    points: [], // {name, unit, kind, cadenceMs, color}
    window: null, // {start, end} in epoch ms: what is visible
    home: null, // the window chosen by a preset or the custom range (double-click returns to it)
    seq: 0,
    plot: null,
    plotKey: "",
    last: null,
  };
  // For tests and debugging: the live plot, the parameters of every query sent, the last answer's summary.
  const requests = [];
  window.bvExplorer = {
    get plot() { return state.plot; },
    get last() { return state.last; },
    requests,
  };

  // ---- messages and API -------------------------------------------------------------------------------------

  function showMessage(text, kind = "error") {
    const el = $("message");
    el.textContent = text;
    el.className = kind;
    el.hidden = false;
  }

  function clearMessage() {
    $("message").hidden = true;
  }

  class ApiError extends Error {
    constructor(status, body) {
      super(`${status}`);
      this.status = status;
      this.body = body || {};
    }
  }

  async function api(path, params = {}) {
    const url = new URL(path, window.location.origin);
    for (const [k, v] of Object.entries(params)) {
      if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, String(v));
    }
    const resp = await fetch(url, { headers: { Authorization: `Bearer ${state.token}`, Accept: "application/json" } });
    let body = null;
    try {
      body = await resp.json();
    } catch (_) {
      body = null;
    }
    if (!resp.ok) throw new ApiError(resp.status, body);
    return body;
  }

  function detailText(detail) {
    if (Array.isArray(detail)) return detail.map((d) => `${d.parameter}: ${d.message}`).join("; ");
    return detail ? String(detail) : "";
  }

  function explain(err) {
    if (!(err instanceof ApiError)) return `The request failed: ${err.message}`;
    if (err.status === 401) return "Sign-in needed: the API answered 401 (no bearer token was accepted).";
    if (err.status === 403) return "Sign-in failed: the token is not valid for this API (403 forbidden).";
    const b = err.body;
    let text = `${err.status} ${b.error || "error"}: ${detailText(b.detail)}`;
    if (Array.isArray(b.suggestions)) text += ` (${b.suggestions.join("; ")})`;
    return text;
  }

  function handleError(err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) signOut();
    showMessage(explain(err));
  }

  // ---- sign-in ----------------------------------------------------------------------------------------------

  async function signIn(token) {
    clearMessage();
    state.token = token;
    let body;
    try {
      body = await api("/sites");
    } catch (err) {
      state.token = null;
      sessionStorage.removeItem(TOKEN_KEY);
      showMessage(explain(err));
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    $("signin").hidden = true;
    $("signed-in").hidden = false;
    $("explorer").hidden = false;
    const select = $("site");
    select.replaceChildren(...body.sites.map((s) => new Option(s, s)));
    if (!body.sites.length) {
      showMessage("Signed in, but the hot tier knows no site yet: wait for the first sync.", "info");
      return;
    }
    if (!state.window) setPreset("1d", false);
    selectSite(body.sites[0]);
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    state.points = [];
    $("signin").hidden = false;
    $("signed-in").hidden = true;
    $("explorer").hidden = true;
    destroyPlot();
  }

  // ---- sites and points -------------------------------------------------------------------------------------

  function selectSite(site) {
    state.site = site;
    $("site").value = site;
    state.points = [];
    renderSelected();
    destroyPlot();
    renderCoverage(null);
    $("status").textContent = "";
    $("search").value = "";
    search();
  }

  let searchTimer = 0;
  let searchSeq = 0;

  async function search() {
    const seq = ++searchSeq;
    const text = $("search").value.trim();
    let body;
    try {
      body = await api(`/sites/${encodeURIComponent(state.site)}/points`, { search: text, limit: 100 });
    } catch (err) {
      handleError(err);
      return;
    }
    if (seq !== searchSeq) return;
    $("search-total").textContent = `${body.total} point${body.total === 1 ? "" : "s"} match` +
      (body.total > body.returned ? `; showing ${body.returned}` : "");
    $("results").replaceChildren(...body.points.map(pointItem));
  }

  function pointMeta(p) {
    const parts = [p.unit || "no unit", p.kind || "unknown kind"];
    if (p.marker_tags && p.marker_tags.length) parts.push(p.marker_tags.join(" "));
    if (p.collect_interval_s) parts.push(`every ${p.collect_interval_s} s`);
    return parts.join(" · ");
  }

  function pointItem(p) {
    const li = document.createElement("li");
    li.dataset.point = p.name;
    const name = document.createElement("div");
    name.className = "name";
    name.textContent = p.name;
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = pointMeta(p);
    li.append(name, meta);
    if (state.points.some((c) => c.name === p.name)) li.classList.add("charted");
    li.addEventListener("click", () => addPoint(p));
    return li;
  }

  function addPoint(p) {
    if (state.points.some((c) => c.name === p.name)) return;
    if (state.points.length >= MAX_CHARTED) {
      showMessage(`At most ${MAX_CHARTED} points at once: remove one first.`, "info");
      return;
    }
    const used = new Set(state.points.map((c) => c.color));
    const color = COLORS.find((c) => !used.has(c)) || COLORS[0];
    const cadenceMs = (p.collect_interval_s || 0) * 1000;
    state.points.push({ name: p.name, unit: p.unit, kind: p.kind, marker_tags: p.marker_tags, cadenceMs, color });
    renderSelected();
    load();
  }

  function removePoint(name) {
    state.points = state.points.filter((c) => c.name !== name);
    renderSelected();
    load();
  }

  function renderSelected() {
    const items = state.points.map((p) => {
      const li = document.createElement("li");
      li.dataset.point = p.name;
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = p.color;
      const remove = document.createElement("span");
      remove.className = "remove";
      remove.textContent = "✕";
      remove.title = "Remove from the chart";
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = p.name;
      const meta = document.createElement("div");
      meta.className = "meta";
      meta.textContent = pointMeta(p);
      li.append(remove, swatch, name, meta);
      li.addEventListener("click", () => removePoint(p.name));
      return li;
    });
    $("selected").replaceChildren(...items);
    $("selected-hint").hidden = state.points.length > 0;
    for (const li of $("results").children) {
      li.classList.toggle("charted", state.points.some((c) => c.name === li.dataset.point));
    }
  }

  // ---- the window -------------------------------------------------------------------------------------------

  function toInput(ms) {
    return new Date(ms).toISOString().slice(0, 16);
  }

  function setWindow(start, end, { home = false, fetch = true } = {}) {
    start = Math.max(0, Math.round(start));
    end = Math.round(end);
    if (end - start < 60_000) end = start + 60_000; // a minute at least
    state.window = { start, end };
    if (home) state.home = { start, end };
    $("range-start").value = toInput(start);
    $("range-end").value = toInput(end);
    if (state.plot) {
      state.plot.setScale("x", { min: start / 1000, max: end / 1000 });
    }
    if (fetch) scheduleLoad(home ? 0 : 200);
  }

  function setPreset(name, fetch = true) {
    for (const b of document.querySelectorAll("#presets button")) b.classList.toggle("active", b.dataset.preset === name);
    const end = Date.now();
    setWindow(end - PRESETS[name], end, { home: true, fetch });
  }

  function clearPreset() {
    for (const b of document.querySelectorAll("#presets button")) b.classList.remove("active");
  }

  // ---- loading ----------------------------------------------------------------------------------------------

  function chartWidth() {
    return Math.max(300, $("chart").clientWidth || 800);
  }

  /** Query parameters for the visible window at the chart's resolution. */
  function queryParams(start, end) {
    const span = end - start;
    const maxPoints = Math.min(4000, Math.round(chartWidth() * 2)); // min-max keeps 2 values per pixel
    const params = {
      site_name: state.site,
      point_names: state.points.map((p) => p.name).join(","),
      start_time: start,
      end_time: end, // inclusive, as the API's contract says
      format: "columnar",
      max_points: maxPoints,
    };
    if (span > RAW_MAX_SPAN) {
      // The finest bucket that needs at most 4 buckets per output point (max_points thins the rest), no finer
      // than the points' collect interval.
      const cadence = Math.min(...state.points.map((p) => p.cadenceMs || 60_000));
      let chosen = "1d";
      for (const [name, ms] of INTERVALS) {
        if (ms < HOUR && span > SUBHOUR_MAX_SPAN) continue;
        if (ms < cadence && name !== "1d") continue;
        if (span / ms <= maxPoints * 4) {
          chosen = name;
          break;
        }
      }
      params.interval = chosen;
    }
    return params;
  }

  let loadTimer = 0;

  function scheduleLoad(delay) {
    clearTimeout(loadTimer);
    loadTimer = setTimeout(load, delay);
  }

  async function load() {
    clearTimeout(loadTimer);
    const seq = ++state.seq;
    if (!state.points.length || !state.window) {
      destroyPlot();
      renderCoverage(null);
      $("status").textContent = state.points.length ? "" : "No point charted yet.";
      return;
    }
    const { start, end } = state.window;
    let params = queryParams(start, end);
    $("status").textContent = "Loading…";
    let body;
    try {
      requests.push({ ...params });
      body = await api("/timeseries/query", params);
    } catch (err) {
      if (err instanceof ApiError && err.status === 413 && params.interval !== "1h" && params.interval !== "1d") {
        // Over the raw sample budget: hourly buckets come from the cold tier's rollups.
        params = { ...params, interval: "1h" };
        try {
          requests.push({ ...params });
          body = await api("/timeseries/query", params);
        } catch (err2) {
          if (seq === state.seq) handleError(err2);
          return;
        }
      } else {
        if (seq === state.seq) {
          handleError(err);
          $("status").textContent = "";
        }
        return;
      }
    }
    if (seq !== state.seq) return; // a newer window was asked for meanwhile
    clearMessage();
    render(body, start, end);
    renderCoverage(body.metadata.coverage, start, end);
    renderStatus(body, params);
  }

  // ---- chart ------------------------------------------------------------------------------------------------

  function numeric(values) {
    return values.map((v) => (typeof v === "number" && Number.isFinite(v) ? v : null));
  }

  function unitOf(p) {
    return p.unit || "value";
  }

  function destroyPlot() {
    // The coverage strip lives inside the plot while there is one (under the plotting area): keep it.
    $("coverage-legend").before($("coverage"));
    if (state.plot) state.plot.destroy();
    state.plot = null;
    state.plotKey = "";
  }

  function buildPlot(data) {
    destroyPlot();
    const units = [...new Set(state.points.map(unitOf))];
    const scales = { x: { time: true } };
    for (const u of units) scales[u] = { auto: true };
    const axes = [{}].concat(
      units.map((u, i) => ({
        scale: u,
        label: u,
        side: i % 2 === 0 ? 3 : 1, // alternate left and right
        grid: { show: i === 0 },
        size: 60,
      })),
    );
    const series = [{}].concat(
      state.points.map((p) => ({
        label: `${p.name} (${unitOf(p)})`,
        scale: unitOf(p),
        stroke: p.color,
        width: 1.5,
        points: { show: false },
      })),
    );
    const opts = {
      width: chartWidth(),
      height: 380,
      // UTC on the axis and in the legend, like the custom range and the API's days.
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      scales,
      axes,
      series,
      cursor: {
        drag: { x: true, y: false, setScale: false },
        bind: {
          // Double-click returns to the window chosen by the preset or custom range.
          dblclick: () => () => {
            if (state.home) setWindow(state.home.start, state.home.end);
            return null;
          },
        },
      },
      hooks: {
        setSize: [() => alignCoverage()],
        setSelect: [
          (u) => {
            if (u.select.width < 5) return;
            const min = u.posToVal(u.select.left, "x");
            const max = u.posToVal(u.select.left + u.select.width, "x");
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            clearPreset();
            setWindow(min * 1000, max * 1000);
          },
        ],
      },
    };
    const plot = new uPlot(opts, data, $("chart"));
    plot.root.querySelector(".u-wrap").after($("coverage"));
    plot.over.addEventListener("wheel", (e) => {
      e.preventDefault();
      const { start, end } = state.window;
      const at = plot.posToVal(e.offsetX, "x") * 1000;
      const factor = e.deltaY < 0 ? 0.75 : 1 / 0.75;
      clearPreset();
      setWindow(at - (at - start) * factor, at + (end - at) * factor);
    }, { passive: false });
    state.plot = plot;
    state.plotKey = state.points.map((p) => p.name).join("\n");
  }

  function render(body, start, end) {
    const tables = body.series.map((s) => [s.timestamps.map((t) => t / 1000), numeric(s.values)]);
    const data = tables.length === 1 ? tables[0] : uPlot.join(tables);
    const key = state.points.map((p) => p.name).join("\n");
    if (!state.plot || state.plotKey !== key) buildPlot(data);
    else state.plot.setData(data, false);
    state.plot.setScale("x", { min: start / 1000, max: end / 1000 });
    state.last = {
      params: requests[requests.length - 1],
      series: body.series.map((s) => ({ name: s.name, points: s.timestamps.length })),
      xLength: data[0].length,
      metadata: body.metadata,
    };
  }

  window.addEventListener("resize", () => {
    if (state.plot) {
      state.plot.setSize({ width: chartWidth(), height: 380 });
      if (state.last) renderCoverage(state.last.metadata.coverage, state.window.start, state.window.end);
      scheduleLoad(300); // the resolution follows the width
    }
  });

  // ---- coverage strip and status ----------------------------------------------------------------------------

  /** Line the coverage strip up with the plotting area (uPlot positions its overlay in CSS pixels). */
  function alignCoverage() {
    const strip = $("coverage");
    if (!state.plot) {
      strip.style.marginLeft = "0";
      strip.style.width = "";
      return;
    }
    strip.style.marginLeft = state.plot.over.style.left;
    strip.style.width = state.plot.over.style.width;
  }

  function renderCoverage(coverage, start, end) {
    const strip = $("coverage");
    strip.replaceChildren();
    if (!coverage) return;
    alignCoverage();
    const span = end - start;
    for (const [day, dayState] of Object.entries(coverage)) {
      const lo = Date.parse(`${day}T00:00:00Z`);
      const from = Math.max(lo, start);
      const to = Math.min(lo + DAY, end);
      if (to <= from) continue;
      const el = document.createElement("div");
      el.className = `day ${dayState}`;
      el.dataset.day = day;
      el.dataset.state = dayState;
      el.style.left = `${((from - start) / span) * 100}%`;
      el.style.width = `${((to - from) / span) * 100}%`;
      el.title = `${day}: ${STATE_LABELS[dayState] || dayState}`;
      strip.append(el);
    }
  }

  function renderStatus(body, params) {
    const m = body.metadata;
    const shown = body.series.reduce((n, s) => n + s.timestamps.length, 0);
    const parts = [`${shown.toLocaleString()} ${m.interval ? `buckets of ${m.interval}` : "samples"} shown`];
    if (m.downsampled) parts.push(`downsampled to at most ${params.max_points} per point`);
    parts.push(`source ${m.source}`);
    if (typeof m.query_time_ms === "number") parts.push(`${m.query_time_ms} ms`);
    const days = Object.values(m.coverage || {});
    const notLoaded = days.filter((s) => NOT_LOADED.has(s)).length;
    if (notLoaded) parts.push(`${notLoaded} of ${days.length} days not loaded`);
    if (!shown) parts.push(notLoaded === days.length ? "no data: the pipeline holds none of these days" : "no samples in this window");
    if (m.unknown_points && m.unknown_points.length) parts.push(`unknown: ${m.unknown_points.join(", ")}`);
    const text = body.series.filter((s) => s.values.some((v) => typeof v === "string")).map((s) => s.name);
    if (text.length) parts.push(`text values not plotted: ${text.join(", ")}`);
    $("status").textContent = parts.join(" · ");
  }

  // ---- wiring -----------------------------------------------------------------------------------------------

  $("signin").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token").value.trim();
    if (!token) {
      showMessage("Enter an API token (one of BV_API_TOKENS).");
      return;
    }
    signIn(token);
  });
  $("signout").addEventListener("click", () => {
    signOut();
    clearMessage();
  });
  $("site").addEventListener("change", (e) => selectSite(e.target.value));
  $("search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(search, 250);
  });
  for (const b of document.querySelectorAll("#presets button")) {
    b.addEventListener("click", () => setPreset(b.dataset.preset));
  }
  $("custom-range").addEventListener("submit", (e) => {
    e.preventDefault();
    const start = Date.parse(`${$("range-start").value}:00Z`);
    const end = Date.parse(`${$("range-end").value}:00Z`);
    if (!Number.isFinite(start) || !Number.isFinite(end) || end <= start) {
      showMessage("Choose a custom range whose end is after its start.");
      return;
    }
    clearPreset();
    setWindow(start, end, { home: true });
  });
  $("pan-left").addEventListener("click", () => {
    const { start, end } = state.window;
    clearPreset();
    setWindow(start - (end - start) / 2, end - (end - start) / 2);
  });
  $("pan-right").addEventListener("click", () => {
    const { start, end } = state.window;
    clearPreset();
    setWindow(start + (end - start) / 2, end + (end - start) / 2);
  });
  $("zoom-out").addEventListener("click", () => {
    const { start, end } = state.window;
    const mid = (start + end) / 2;
    clearPreset();
    setWindow(mid - (end - start), mid + (end - start));
  });

  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved);
})();
