// What to ask the API for a visible window: enough points for the chart's width and no more.

export const HOUR = 3_600_000;
export const DAY = 24 * HOUR;
const INTERVALS = [["1min", 60_000], ["5min", 300_000], ["15min", 900_000], ["1h", HOUR], ["1d", DAY]];
const RAW_MAX_SPAN = 2 * DAY; // up to this span: raw samples, min-max downsampled to the chart width
const SUBHOUR_MAX_SPAN = 7 * DAY; // sub-hour buckets are computed from raw samples: keep them to a week

/**
 * Query parameters for [start, end] (epoch ms) of `points` ({name, cadenceMs}) on a chart `width` pixels wide.
 * Raw samples up to two days, else the finest bucket needing at most 4 buckets per output point (never finer
 * than the points' collect interval); `max_points` (2 per pixel, min-max) bounds every answer.
 */
export function queryParams(site, points, start, end, width) {
  const span = end - start;
  const maxPoints = Math.min(4000, Math.round(width * 2));
  const params = {
    site_name: site,
    point_names: points.map((p) => p.name).join(","),
    start_time: start,
    end_time: end - 1, // the API's end_time is inclusive: the window is [start, end)
    format: "columnar",
    max_points: maxPoints,
  };
  if (span > RAW_MAX_SPAN) {
    const cadence = Math.min(...points.map((p) => p.cadenceMs || 60_000));
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

/** The fallback when a raw or sub-hour request exceeds the sample budget (413): hourly buckets (rollups). */
export function budgetFallback(params) {
  if (params.interval === "1h" || params.interval === "1d") return null;
  return { ...params, interval: "1h" };
}
