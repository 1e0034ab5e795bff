// The job page: status and actions, the batch progress bar, a live chart of every logged metric,
// the epoch table and the checkpoints. Everything live comes from the job's event stream, which
// is followed from the start and, after a drop or a `reconnect` event, resumed with
// Last-Event-ID (the last epoch received).

import { ApiError, download, getJson, openEvents, postJson } from "./api.js";
import { MetricCharts } from "./charts.js";
import { bytes, el, fmt, shortId, statusBadge, table, when } from "./dom.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const RETRY_MS = 1000;
const MAX_RETRY_MS = 10000;
const TABLE_ROWS = 200;

export async function jobPage(view, jobId, { signal, onError }) {
  const job = await getJson(`jobs/${jobId}`, { signal });
  const parts = {
    header: el("div", { class: "job-header" }),
    error: el("div", { class: "error-box", hidden: true }),
    actions: el("div", { class: "actions" }),
    progress: el("progress", { id: "batch-progress", max: 1, value: 0 }),
    progressText: el("span", { id: "progress-text", class: "muted" }),
    charts: el("div", { id: "charts", class: "charts" }),
    epochs: el("div", { id: "epochs" }),
    checkpoints: el("div", { id: "checkpoints" }),
  };
  view.replaceChildren(
    parts.header,
    parts.error,
    parts.actions,
    el("section", { class: "panel" }, el("h2", {}, "Progress"),
      el("div", { class: "progress-row" }, parts.progress, parts.progressText)),
    el("section", { class: "panel" }, el("h2", {}, "Metrics"), parts.charts),
    el("section", { class: "panel" }, el("h2", {}, "Epochs"), parts.epochs),
    el("section", { class: "panel" }, el("h2", {}, "Checkpoints"), parts.checkpoints),
  );
  const charts = new MetricCharts(parts.charts);
  signal.addEventListener("abort", () => charts.destroy());
  const page = new JobView(jobId, parts, charts, { signal, onError });
  page.showJob(job);
  page.loadCheckpoints();
  page.follow();
}

class JobView {
  constructor(jobId, parts, charts, { signal, onError }) {
    this.jobId = jobId;
    this.parts = parts;
    this.charts = charts;
    this.signal = signal;
    this.onError = onError;
    this.rows = new Map();
    this.refreshTimer = null;
    this.job = null;
    this.buttons = null;
    this.drawTimer = null;
  }

  showJob(job) {
    this.job = job;
    const { header, error, actions } = this.parts;
    header.replaceChildren(
      el("h1", {}, `Job ${shortId(job.id)} `, statusBadge(job.status)),
      el("dl", { class: "facts" },
        fact("id", job.id),
        fact("kind", job.kind),
        fact("model", el("a", { href: `#/jobs?model=${job.model_id}` }, shortId(job.model_id))),
        fact("epochs", `${job.epochs_done} / ${job.epochs}`),
        fact("attempt", `${job.attempt} / ${job.max_attempts}`),
        job.parent_job_id &&
          fact("resumes",
            el("a", { href: `#/jobs/${job.parent_job_id}` }, shortId(job.parent_job_id))),
        fact("created", when(job.created_at)),
        fact("started", when(job.started_at)),
        fact("finished", when(job.finished_at)),
        job.cancel_requested && fact("cancel", "requested")),
    );
    header.dataset.status = job.status;
    if (job.error) {
      error.hidden = false;
      error.replaceChildren(el("strong", {}, job.error.type), ": ", job.error.message);
    } else {
      error.hidden = true;
    }
    if (!this.buttons) {
      // Made once and updated in place, so a refresh never swaps a button under a click.
      this.buttons = {
        cancel: el("button", { id: "cancel", type: "button", onclick: () => this.cancel() },
          "Cancel"),
        resume: el("button", { id: "resume", type: "button", onclick: () => this.resume() },
          "Resume"),
      };
      actions.replaceChildren(this.buttons.cancel, this.buttons.resume);
    }
    const running = !TERMINAL.has(job.status);
    this.buttons.cancel.disabled = !running || job.cancel_requested;
    this.buttons.resume.disabled = running || job.kind !== "fit";
    if (TERMINAL.has(job.status)) this.finishProgress();
  }

  async cancel() {
    this.buttons.cancel.disabled = true;
    try {
      this.showJob(await postJson(`jobs/${this.jobId}/cancel`, undefined));
    } catch (err) {
      this.buttons.cancel.disabled = false;
      this.onError(err);
    }
  }

  async resume() {
    this.buttons.resume.disabled = true;
    try {
      const created = await postJson(`jobs/${this.jobId}/resume`, {});
      window.location.hash = `#/jobs/${created.id}`;
    } catch (err) {
      this.buttons.resume.disabled = false;
      this.onError(err);
    }
  }

  // The job's row and checkpoints again, at most once a second while epochs land.
  refreshSoon() {
    if (this.refreshTimer) return;
    this.refreshTimer = setTimeout(async () => {
      this.refreshTimer = null;
      if (this.signal.aborted) return;
      try {
        this.showJob(await getJson(`jobs/${this.jobId}`, { signal: this.signal }));
        await this.loadCheckpoints();
      } catch (err) {
        if (!this.signal.aborted) this.onError(err);
      }
    }, 1000);
  }

  async loadCheckpoints() {
    const { items } = await getJson(`jobs/${this.jobId}/checkpoints`, { signal: this.signal });
    const rows = items.map((c) => el("tr", {},
      el("td", {}, c.epoch + 1),
      el("td", {}, c.trigger),
      el("td", {}, c.attempt),
      el("td", {}, fmt(c.logs.loss)),
      el("td", {}, bytes(c.size_bytes)),
      el("td", {}, when(c.created_at)),
      el("td", {},
        this.downloadButton(c, "model.keras"), " ", this.downloadButton(c, "model.safetensors")),
    ));
    this.parts.checkpoints.replaceChildren(items.length
      ? table(["epoch", "trigger", "attempt", "loss", "size", "written", "download"], rows)
      : el("p", { class: "muted" }, "No checkpoint yet."));
  }

  downloadButton(checkpoint, file) {
    const path = `jobs/${this.jobId}/checkpoints/${checkpoint.id}/${file}`;
    const name = `${shortId(this.jobId)}-epoch${checkpoint.epoch + 1}-${file}`;
    const save = () => download(path, name).catch((err) => this.onError(err));
    return el("button", { type: "button", class: "link", "data-download": file, onclick: save },
      file);
  }

  async follow() {
    let lastId = null;
    let wait = RETRY_MS;
    while (!this.signal.aborted) {
      try {
        const events = await openEvents(`jobs/${this.jobId}/events`,
                                        { lastEventId: lastId, signal: this.signal });
        if (events === null) return this.ended(); // 204: the job has ended, nothing after
        for await (const event of events) {
          wait = RETRY_MS;
          if (event.id !== undefined) lastId = event.id;
          if (event.event === "epoch") this.epoch(event.data);
          else if (event.event === "progress") this.progress(event.data);
          else if (event.event === "status") return this.ended();
          else if (event.event === "reconnect") break;
        }
      } catch (err) {
        if (this.signal.aborted) return;
        if (err instanceof ApiError && err.status < 500 && err.status !== 429) {
          return this.onError(err);
        }
        wait = Math.min(wait * 2, MAX_RETRY_MS); // the server is away: try again, less often
      }
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  epoch(row) {
    this.rows.set(row.epoch, row);
    this.charts.add(row.epoch, row.logs);
    this.drawSoon();
    const bar = this.parts.progress;
    bar.value = bar.max;
    this.refreshSoon();
  }

  // Charts and table drawn once for a burst of epochs (a replay sends hundreds at once).
  drawSoon() {
    if (this.drawTimer) return;
    this.drawTimer = setTimeout(() => {
      this.drawTimer = null;
      if (this.signal.aborted) return;
      this.charts.render();
      this.renderEpochs();
    }, 50);
  }

  progress(p) {
    const bar = this.parts.progress;
    bar.max = p.steps || 1;
    bar.value = Math.min(p.batch + 1, bar.max);
    const logs = Object.entries(p.logs || {}).map(([k, v]) => `${k} ${fmt(v)}`);
    const where = [`epoch ${p.epoch + 1}/${p.epochs}`, `batch ${p.batch + 1}/${p.steps}`];
    this.parts.progressText.textContent = [...where, ...logs].join(" · ");
  }

  finishProgress() {
    const done = this.job;
    this.parts.progressText.textContent =
      `${done.status}: ${done.epochs_done} of ${done.epochs} epochs`;
    if (done.status === "succeeded") this.parts.progress.value = this.parts.progress.max;
  }

  async ended() {
    try {
      this.showJob(await getJson(`jobs/${this.jobId}`, { signal: this.signal }));
      await this.loadCheckpoints();
    } catch (err) {
      if (!this.signal.aborted) this.onError(err);
    }
  }

  renderEpochs() {
    const keys = [...new Set([...this.rows.values()].flatMap((r) => Object.keys(r.logs)))].sort();
    const epochs = [...this.rows.keys()].sort((a, b) => b - a);
    const shown = epochs.slice(0, TABLE_ROWS).map((e) => {
      const row = this.rows.get(e);
      return el("tr", {}, el("td", {}, e + 1), el("td", {}, row.attempt),
        keys.map((k) => el("td", {}, fmt(row.logs[k]))));
    });
    this.parts.epochs.replaceChildren(
      table(["epoch", "attempt", ...keys], shown, { id: "epoch-table" }),
      epochs.length > TABLE_ROWS
        ? el("p", { class: "muted" }, `The last ${TABLE_ROWS} of ${epochs.length} epochs.`)
        : null,
    );
  }
}

function fact(name, value) {
  return [el("dt", {}, name), el("dd", {}, value)];
}
