// The time-series chart (uPlot, a global from the vendored script) and the coverage strip under its plot area.

import { DAY } from "./query_plan.js";

const HEIGHT = 380;
const STATE_LABELS = {
  hot: "hot tier",
  cold: "cold tier (day objects)",
  compacted: "cold tier (compacted objects)",
  split: "hot and cold tiers",
  not_loaded: "not loaded (never synced, archived or backfilled)",
  before_start: "before BV_START_DATE (not loaded)",
  future: "in the future (not loaded)",
};

function numeric(values) {
  return values.map((v) => (typeof v === "number" && Number.isFinite(v) ? v : null));
}

export function unitOf(point) {
  return point.unit || "value";
}

export class TimeChart {
  /**
   * `onZoom(start, end)` runs when the person selects a range or scrolls; `onHome()` on double-click.
   * `strip` is the coverage element, moved under the plot area while a plot exists.
   */
  constructor(container, strip, stripHome, { onZoom, onHome }) {
    this.container = container;
    this.strip = strip;
    this.stripHome = stripHome;
    this.onZoom = onZoom;
    this.onHome = onHome;
    this.plot = null;
    this.key = "";
    this.range = null;
  }

  width() {
    return Math.max(300, this.container.clientWidth || 800);
  }

  destroy() {
    this.stripHome.before(this.strip);
    if (this.plot) this.plot.destroy();
    this.plot = null;
    this.key = "";
    this.alignStrip();
  }

  /**
   * Show an answer (columnar JSON) of `points` ({name, unit, color}) for [start, end]; returns x length.
   * Bucketed answers are drawn as the average with a band from the bucket minimum to maximum, so spikes that
   * an average hides stay visible.
   */
  show(points, body, start, end) {
    const bucketed = body.metadata.interval !== null && body.metadata.interval !== undefined;
    const tables = body.series.map((s) => {
      const xs = s.timestamps.map((t) => t / 1000);
      return bucketed ? [xs, numeric(s.values), numeric(s.min), numeric(s.max)] : [xs, numeric(s.values)];
    });
    const data = tables.length === 1 ? tables[0] : uPlot.join(tables);
    const key = `${bucketed}\n${points.map((p) => p.name).join("\n")}`;
    if (!this.plot || this.key !== key) this.build(points, data, bucketed);
    else this.plot.setData(data, false);
    this.key = key;
    this.setRange(start, end);
    return data[0].length;
  }

  setRange(start, end) {
    this.range = { start, end };
    if (this.plot) this.plot.setScale("x", { min: start / 1000, max: end / 1000 });
  }

  resize() {
    if (this.plot) this.plot.setSize({ width: this.width(), height: HEIGHT });
  }

  build(points, data, bucketed) {
    this.destroy();
    const units = [...new Set(points.map(unitOf))];
    const scales = { x: { time: true } };
    for (const u of units) scales[u] = { auto: true };
    const axes = [{}].concat(
      units.map((u, i) => ({ scale: u, label: u, side: i % 2 === 0 ? 3 : 1, grid: { show: i === 0 }, size: 60 })),
    );
    const series = [{}];
    const bands = [];
    for (const p of points) {
      series.push({ label: `${p.name} (${unitOf(p)})`, scale: unitOf(p), stroke: p.color, width: 1.5, points: { show: false } });
      if (!bucketed) continue;
      const envelope = { scale: unitOf(p), stroke: `${p.color}55`, width: 0.5, points: { show: false } };
      series.push({ ...envelope, label: "min" }, { ...envelope, label: "max" });
      const min = series.length - 2;
      bands.push({ series: [min + 1, min], fill: `${p.color}22` });
    }
    const opts = {
      width: this.width(),
      height: HEIGHT,
      // UTC on the axis and in the legend, like the custom range and the API's days.
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      scales,
      axes,
      series,
      bands,
      cursor: {
        drag: { x: true, y: false, setScale: false },
        bind: {
          dblclick: () => () => {
            this.onHome();
            return null;
          },
        },
      },
      hooks: {
        setSize: [() => this.alignStrip()],
        setSelect: [
          (u) => {
            if (u.select.width < 5) return;
            const min = u.posToVal(u.select.left, "x");
            const max = u.posToVal(u.select.left + u.select.width, "x");
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            this.onZoom(min * 1000, max * 1000);
          },
        ],
      },
    };
    const plot = new uPlot(opts, data, this.container);
    plot.root.querySelector(".u-wrap").after(this.strip);
    plot.over.addEventListener(
      "wheel",
      (e) => {
        e.preventDefault();
        const { start, end } = this.range;
        const at = plot.posToVal(e.offsetX, "x") * 1000;
        const factor = e.deltaY < 0 ? 0.75 : 1 / 0.75;
        this.onZoom(at - (at - start) * factor, at + (end - at) * factor);
      },
      { passive: false },
    );
    this.plot = plot;
    this.alignStrip();
  }

  /** Line the coverage strip up with the plot area (uPlot positions its overlay in CSS pixels). */
  alignStrip() {
    if (!this.plot) {
      this.strip.style.marginLeft = "0";
      this.strip.style.width = "";
      return;
    }
    this.strip.style.marginLeft = this.plot.over.style.left;
    this.strip.style.width = this.plot.over.style.width;
  }

  /** One segment per UTC day of `coverage` (ISO day -> state), clipped to [start, end]. */
  showCoverage(coverage, start, end) {
    this.strip.replaceChildren();
    if (!coverage) return;
    this.alignStrip();
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
      this.strip.append(el);
    }
  }
}
