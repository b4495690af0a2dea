// The chart explorer: sign in with a token (kept in sessionStorage only), find points, chart any window.
// Data is fetched for the visible range at the chart's resolution and fetched again after every zoom or pan.
// No build step and no CDN: ES modules served by the read API, plus the vendored uPlot.

import { Api, ApiError, explain, isAuthError } from "./api.js";
import { TimeChart } from "./chart.js";
import { DAY, HOUR, budgetFallback, queryParams } from "./query_plan.js";

const TOKEN_KEY = "bv.token";
const PRESETS = { "1h": HOUR, "6h": 6 * HOUR, "1d": DAY, "7d": 7 * DAY, "30d": 30 * DAY, "90d": 90 * DAY, "1y": 365 * DAY };
const MAX_CHARTED = 8;
const COLORS = ["#1f6feb", "#e8743b", "#19a0a0", "#d6336c", "#7b52d6", "#2f9e44", "#b08800", "#495057"];
const NOT_LOADED = new Set(["not_loaded", "before_start", "future"]);

const $ = (id) => document.getElementById(id);
const api = new Api();
const state = {
  site: null,
  points: [], // {name, unit, kind, marker_tags, cadenceMs, color}
  window: null, // {start, end} in epoch ms: what is visible
  home: null, // the window chosen by a preset or the custom range (double-click returns to it)
  seq: 0,
  last: null,
};
const chart = new TimeChart($("chart"), $("coverage"), $("coverage-legend"), {
  onZoom: (start, end) => {
    clearPreset();
    setWindow(start, end);
  },
  onHome: () => {
    if (state.home) setWindow(state.home.start, state.home.end);
  },
});
// For tests and debugging: the live plot, the parameters of every query sent, the last answer's summary.
const requests = [];
window.bvExplorer = {
  get plot() {
    return chart.plot;
  },
  get last() {
    return state.last;
  },
  requests,
};

// ---- messages -----------------------------------------------------------------------------------------------

function showMessage(text, kind = "error") {
  const el = $("message");
  el.textContent = text;
  el.className = kind;
  el.hidden = false;
}

function clearMessage() {
  $("message").hidden = true;
}

function handleError(err) {
  if (isAuthError(err)) signOut();
  showMessage(explain(err));
}

// ---- sign-in ------------------------------------------------------------------------------------------------

async function signIn(token) {
  clearMessage();
  api.token = token;
  let body;
  try {
    body = await api.get("/sites");
  } catch (err) {
    api.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    showMessage(explain(err));
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  $("signin").hidden = true;
  $("signed-in").hidden = false;
  $("explorer").hidden = false;
  $("site").replaceChildren(...body.sites.map((s) => new Option(s, s)));
  if (!body.sites.length) {
    showMessage("Signed in, but the hot tier knows no site yet: wait for the first sync.", "info");
    return;
  }
  const link = parseLink(window.location.hash);
  if (link && body.sites.includes(link.site)) {
    await openLink(link);
    return;
  }
  if (!state.window) setPreset("1d", false);
  selectSite(body.sites[0]);
}

// ---- links: the address holds the site, points and window, so a chart can be shared or reloaded --------------

function parseLink(hash) {
  const q = new URLSearchParams(hash.replace(/^#/, ""));
  const start = Number(q.get("start"));
  const end = Number(q.get("end"));
  const points = (q.get("points") || "").split(",").filter(Boolean);
  if (!q.get("site") || !points.length || !Number.isFinite(start) || !Number.isFinite(end) || end <= start) return null;
  return { site: q.get("site"), points: points.slice(0, MAX_CHARTED), start, end };
}

function writeLink() {
  if (!state.points.length || !state.window) return;
  const q = new URLSearchParams({
    site: state.site,
    points: state.points.map((p) => p.name).join(","),
    start: String(state.window.start),
    end: String(state.window.end),
  });
  history.replaceState(null, "", `#${q}`);
}

async function openLink(link) {
  selectSite(link.site);
  clearPreset();
  setWindow(link.start, link.end, { home: true, fetch: false });
  // Each point's metadata (unit, kind, cadence) from the catalogue; names it no longer has are reported.
  const missing = [];
  for (const name of link.points) {
    try {
      const found = await api.get(`/sites/${encodeURIComponent(link.site)}/points`, { search: name, limit: 50 });
      const p = found.points.find((c) => c.name === name);
      if (p) addPoint(p, false);
      else missing.push(name);
    } catch (err) {
      handleError(err);
      return;
    }
  }
  renderSelected();
  await load();
  if (missing.length) showMessage(`Not in this site's catalogue: ${missing.join(", ")}`, "info");
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  api.token = null;
  state.points = [];
  $("signin").hidden = false;
  $("signed-in").hidden = true;
  $("explorer").hidden = true;
  chart.destroy();
}

// ---- sites and points ---------------------------------------------------------------------------------------

function selectSite(site) {
  state.site = site;
  $("site").value = site;
  state.points = [];
  renderSelected();
  chart.destroy();
  chart.showCoverage(null);
  $("status").textContent = "";
  $("search").value = "";
  search();
}

let searchTimer = 0;
let searchSeq = 0;

async function search() {
  const seq = ++searchSeq;
  let body;
  try {
    body = await api.get(`/sites/${encodeURIComponent(state.site)}/points`, { search: $("search").value.trim(), limit: 100 });
  } catch (err) {
    handleError(err);
    return;
  }
  if (seq !== searchSeq) return; // a newer search was typed meanwhile
  $("search-total").textContent =
    `${body.total} point${body.total === 1 ? "" : "s"} match` + (body.total > body.returned ? `; showing ${body.returned}` : "");
  $("results").replaceChildren(...body.points.map(pointItem));
}

/** A list item that acts like a button: click, Enter or Space. */
function actionItem(label, action) {
  const li = document.createElement("li");
  li.tabIndex = 0;
  li.setAttribute("role", "button");
  li.setAttribute("aria-label", label);
  li.addEventListener("click", action);
  li.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      action();
    }
  });
  return li;
}

function pointMeta(p) {
  const parts = [p.unit || "no unit", p.kind || "unknown kind"];
  if (p.marker_tags && p.marker_tags.length) parts.push(p.marker_tags.join(" "));
  if (p.collect_interval_s) parts.push(`every ${p.collect_interval_s} s`);
  return parts.join(" · ");
}

function pointItem(p) {
  const li = actionItem(`Chart ${p.name}`, () => addPoint(p));
  li.dataset.point = p.name;
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = p.name;
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = pointMeta(p);
  li.append(name, meta);
  if (state.points.some((c) => c.name === p.name)) li.classList.add("charted");
  return li;
}

function addPoint(p, fetch = true) {
  if (state.points.some((c) => c.name === p.name)) return;
  if (state.points.length >= MAX_CHARTED) {
    showMessage(`At most ${MAX_CHARTED} points at once: remove one first.`, "info");
    return;
  }
  const used = new Set(state.points.map((c) => c.color));
  const color = COLORS.find((c) => !used.has(c)) || COLORS[0];
  const cadenceMs = (p.collect_interval_s || 0) * 1000;
  state.points.push({ name: p.name, unit: p.unit, kind: p.kind, marker_tags: p.marker_tags, cadenceMs, color });
  if (!fetch) return;
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
    const li = actionItem(`Remove ${p.name} from the chart`, () => removePoint(p.name));
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
    return li;
  });
  $("selected").replaceChildren(...items);
  $("selected-hint").hidden = state.points.length > 0;
  for (const li of $("results").children) {
    li.classList.toggle("charted", state.points.some((c) => c.name === li.dataset.point));
  }
}

// ---- the window ---------------------------------------------------------------------------------------------

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
  chart.setRange(start, end); // immediate feedback; the data for the new range follows
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

// ---- loading ------------------------------------------------------------------------------------------------

let loadTimer = 0;

function scheduleLoad(delay) {
  clearTimeout(loadTimer);
  loadTimer = setTimeout(load, delay);
}

async function fetchQuery(params) {
  requests.push({ ...params });
  return api.get("/timeseries/query", params);
}

async function load() {
  clearTimeout(loadTimer);
  const seq = ++state.seq;
  if (!state.points.length || !state.window) {
    chart.destroy();
    chart.showCoverage(null);
    $("status").textContent = state.points.length ? "" : "No point charted yet.";
    return;
  }
  const { start, end } = state.window;
  let params = queryParams(state.site, state.points, start, end, chart.width());
  $("status").textContent = "Loading…";
  let body;
  try {
    try {
      body = await fetchQuery(params);
    } catch (err) {
      const fallback = err instanceof ApiError && err.status === 413 ? budgetFallback(params) : null;
      if (!fallback) throw err;
      params = fallback; // over the raw sample budget: hourly buckets come from the cold tier's rollups
      body = await fetchQuery(params);
    }
  } catch (err) {
    if (seq === state.seq) {
      handleError(err);
      $("status").textContent = "";
    }
    return;
  }
  if (seq !== state.seq) return; // a newer window was asked for meanwhile
  clearMessage();
  const xLength = chart.show(state.points, body, start, end);
  chart.showCoverage(body.metadata.coverage, start, end);
  renderStatus(body, params);
  writeLink();
  state.last = {
    params,
    series: body.series.map((s) => ({ name: s.name, points: s.timestamps.length })),
    xLength,
    metadata: body.metadata,
  };
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
  // Text (enum) samples, or buckets of them (count without an average), have nothing to draw.
  const unplottable = body.series.filter((s) => s.timestamps.length && !s.values.some((v) => typeof v === "number"));
  if (unplottable.length) parts.push(`no numeric values to plot: ${unplottable.map((s) => s.name).join(", ")}`);
  $("status").textContent = parts.join(" · ");
}

// ---- wiring -------------------------------------------------------------------------------------------------

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
function shift(fraction) {
  const { start, end } = state.window;
  clearPreset();
  setWindow(start + (end - start) * fraction, end + (end - start) * fraction);
}
$("pan-left").addEventListener("click", () => shift(-0.5));
$("pan-right").addEventListener("click", () => shift(0.5));
$("zoom-out").addEventListener("click", () => {
  const { start, end } = state.window;
  const mid = (start + end) / 2;
  clearPreset();
  setWindow(mid - (end - start), mid + (end - start));
});
window.addEventListener("resize", () => {
  if (!chart.plot) return;
  chart.resize();
  if (state.last) chart.showCoverage(state.last.metadata.coverage, state.window.start, state.window.end);
  scheduleLoad(300); // the resolution follows the width
});

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) signIn(saved);
