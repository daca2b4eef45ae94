// A machine's CPU and memory over the last hour (machines.metrics), drawn with uPlot (vendored,
// see vendor/uplot/README.md) and brought up to date every few seconds while the page is open.
import { rpc } from "./api.js";
import { METHODS } from "./contract.js";
import { fmtBytes, h } from "./ui.js";
import uPlot from "./vendor/uplot/uPlot.js";

/** The samples shown: the last hour, as kept (one every 5 s). */
const WINDOW_S = 3600;
/** How often the charts ask for the samples again. */
const REFRESH_MS = 5000;
const HEIGHT = 160;

/** One chart of one of a sample's fields over time, `limit` (a field too) as a second line. */
function chart(title, field, limit, format) {
  const el = h("div.usage-chart", { testid: `usage-${field}` });
  const series = [
    {},
    {
      label: title,
      stroke: "#2563eb",
      fill: "rgba(37, 99, 235, 0.12)",
      value: (_, v) => format(v),
    },
  ];
  if (limit)
    series.push({ label: "limit", stroke: "#9ca3af", dash: [4, 4], value: (_, v) => format(v) });
  const opts = {
    width: 480,
    height: HEIGHT,
    series,
    axes: [{}, { values: (_, ticks) => ticks.map(format), size: 70 }],
    scales: { y: { range: (_, min, max) => [0, Math.max(max, min, 1e-9) * 1.1] } },
  };
  const plot = new uPlot(opts, [[], [], ...(limit ? [[]] : [])], el);
  const draw = (samples) => {
    const data = [samples.map((s) => s.at), samples.map((s) => s[field] ?? null)];
    if (limit) data.push(samples.map((s) => s[limit] ?? null));
    plot.setSize({ width: Math.max(240, el.clientWidth || 480), height: HEIGHT });
    plot.setData(data);
  };
  return { el, draw };
}

/** The machine's CPU and memory charts, kept up to date until `signal` aborts. */
export function usageCharts(machineId, signal) {
  const cpu = chart("CPU (cores)", "cpuCores", null, (v) => (v == null ? "-" : v.toFixed(2)));
  const memory = chart("memory", "memoryBytes", "memoryLimitBytes", (v) =>
    v == null ? "-" : fmtBytes(v),
  );
  const note = h("p.muted", { testid: "usage-note" }, "No samples yet.");
  const refresh = async () => {
    const since = Date.now() / 1000 - WINDOW_S;
    const got = await rpc(METHODS.MACHINES_METRICS, { machineId, since });
    note.textContent = got.samples.length
      ? `${got.samples.length} samples, one every ${got.stepS} s.`
      : "No samples in the last hour (the machine is not running, or not sampled yet).";
    cpu.draw(got.samples);
    memory.draw(got.samples);
  };
  const timer = setInterval(() => refresh().catch(() => undefined), REFRESH_MS);
  signal.addEventListener("abort", () => clearInterval(timer), { once: true });
  refresh().catch((err) => {
    note.textContent = `Cannot read its metrics: ${err.message}`;
  });
  return h("div.usage", {}, note, h("div.usage-charts", {}, cpu.el, memory.el));
}
