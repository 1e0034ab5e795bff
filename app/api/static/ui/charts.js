// One uPlot chart per metric the job logs, training beside validation (`loss` with `val_loss`,
// `accuracy` with `val_accuracy`), x = the epoch counted from 1 as Keras prints it. Rows are
// keyed by epoch, so an epoch a resumed attempt rewrites replaces the old point. The container's
// `data-points` attribute holds how many epochs are plotted.

const TRAIN = "#2563eb";
const VALIDATION = "#ea580c";
const HEIGHT = 220;
const EPOCH_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];

function baseName(key) {
  return key.startsWith("val_") ? key.slice(4) : key;
}

function value(logs, key) {
  const v = logs?.[key];
  return typeof v === "number" ? v : null;
}

export class MetricCharts {
  constructor(root) {
    this.root = root;
    this.rows = new Map();
    this.charts = new Map();
    this.root.dataset.points = "0";
    this.onResize = () => this.resize();
    window.addEventListener("resize", this.onResize);
  }

  add(epoch, logs) {
    this.rows.set(epoch, logs);
  }

  render() {
    const epochs = [...this.rows.keys()].sort((a, b) => a - b);
    const keys = new Set();
    for (const logs of this.rows.values()) Object.keys(logs).forEach((k) => keys.add(k));
    const bases = [...new Set([...keys].map(baseName))].sort((a, b) =>
      a === "loss" ? -1 : b === "loss" ? 1 : a.localeCompare(b),
    );
    const xs = epochs.map((e) => e + 1);
    for (const base of bases) {
      const series = [base, `val_${base}`].filter((k) => keys.has(k));
      const data = [xs, ...series.map((k) => epochs.map((e) => value(this.rows.get(e), k)))];
      let chart = this.charts.get(base);
      if (chart && chart.series.join() !== series.join()) {
        chart.plot.destroy();
        chart.box.remove();
        chart = undefined;
      }
      if (!chart) {
        chart = this.create(base, series);
        this.charts.set(base, chart);
      }
      chart.plot.setData(data);
      chart.box.dataset.points = String(xs.length);
    }
    this.root.dataset.points = String(epochs.length);
  }

  create(base, series) {
    const box = document.createElement("div");
    box.className = "chart";
    box.dataset.metric = base;
    this.root.append(box);
    const options = {
      title: base,
      width: this.width(box),
      height: HEIGHT,
      scales: { x: { time: false } },
      // Ticks at whole epochs only.
      axes: [{ label: "epoch", incrs: EPOCH_STEPS }, { size: 60 }],
      series: [
        { label: "epoch" },
        ...series.map((key) => ({
          label: key.startsWith("val_") ? `validation (${key})` : `training (${key})`,
          stroke: key.startsWith("val_") ? VALIDATION : TRAIN,
          width: 2,
          dash: key.startsWith("val_") ? [6, 4] : undefined,
          points: { show: true, size: 5 },
        })),
      ],
    };
    const plot = new window.uPlot(options, [[], ...series.map(() => [])], box);
    return { plot, box, series };
  }

  width(box) {
    return Math.max(280, Math.floor(box.clientWidth || this.root.clientWidth / 2) - 8);
  }

  resize() {
    for (const chart of this.charts.values()) {
      chart.plot.setSize({ width: this.width(chart.box), height: HEIGHT });
    }
  }

  destroy() {
    window.removeEventListener("resize", this.onResize);
    for (const chart of this.charts.values()) chart.plot.destroy();
    this.charts.clear();
  }
}
