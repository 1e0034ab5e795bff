// The dashboard's entry: hash routes (#/jobs, #/jobs?model=<id>, #/models, #/jobs/<id>), the
// lists, and the key panel. A 401 from any call opens the panel; the key entered is kept in
// sessionStorage, so it lasts as long as the tab.

import { ApiError, getJson, getKey, setKey } from "./api.js";
import { el, fmt, shortId, statusBadge, table, when } from "./dom.js";
import { jobPage } from "./job.js";

const LIST_REFRESH_MS = 3000;
const view = document.getElementById("view");
const keyPanel = document.getElementById("key-panel");
const keyInput = document.getElementById("key-input");
const keyMessage = document.getElementById("key-message");
let current = new AbortController();

function showKeyState() {
  const key = getKey();
  document.getElementById("key-state").textContent = key ? `key ${key.slice(0, 14)}…` : "no key";
}

function askForKey(message) {
  keyPanel.hidden = false;
  keyMessage.hidden = !message;
  keyMessage.textContent = message || "";
  keyInput.focus();
}

document.getElementById("key-open").addEventListener("click", () => {
  keyPanel.hidden ? askForKey("") : (keyPanel.hidden = true);
});
document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setKey(keyInput.value.trim());
  keyInput.value = "";
  keyPanel.hidden = true;
  showKeyState();
  route();
});
document.getElementById("key-forget").addEventListener("click", () => {
  setKey("");
  keyInput.value = "";
  showKeyState();
  route();
});

function showError(err) {
  if (err instanceof ApiError && err.status === 401) {
    askForKey(getKey() ? `This key was refused: ${err.message}` : "This server needs an API key.");
    view.replaceChildren(
      el("p", { class: "muted", id: "needs-key" }, "Enter an API key to continue."),
    );
    return;
  }
  if (err?.name === "AbortError") return;
  const text =
    err instanceof ApiError ? `${err.type}: ${err.message}` : String(err?.message || err);
  view.querySelector("[role=alert]")?.remove(); // one at a time: the newest
  view.prepend(el("div", { class: "error-box", role: "alert" }, text));
}

function every(ms, signal, fn) {
  const timer = setInterval(fn, ms);
  signal.addEventListener("abort", () => clearInterval(timer));
}

async function jobsPage(params, { signal }) {
  const modelId = params.get("model");
  const query = new URLSearchParams({ limit: "50" });
  if (modelId) query.set("model_id", modelId);
  const heading = el("h1", {}, modelId ? `Jobs of model ${shortId(modelId)}` : "Jobs");
  const holder = el("div", { id: "jobs" });
  view.replaceChildren(heading, holder);
  const load = async () => {
    const { items } = await getJson(`jobs?${query}`, { signal });
    const rows = items.map((job) => {
      const loss = job.history?.loss;
      return el("tr", { dataset: { job: job.id } },
        el("td", {}, el("a", { href: `#/jobs/${job.id}` }, shortId(job.id))),
        el("td", {}, job.kind),
        el("td", {}, statusBadge(job.status)),
        el("td", {}, `${job.epochs_done} / ${job.epochs}`),
        el("td", {}, fmt(loss?.length ? loss[loss.length - 1] : null)),
        el("td", {}, el("a", { href: `#/jobs?model=${job.model_id}` }, shortId(job.model_id))),
        el("td", {}, when(job.created_at)));
    });
    holder.replaceChildren(items.length
      ? table(["job", "kind", "status", "epochs", "loss", "model", "created"], rows)
      : el("p", { class: "muted" }, "No jobs yet."));
  };
  await load();
  every(LIST_REFRESH_MS, signal, () => load().catch(showError));
}

async function modelsPage(_params, { signal }) {
  const { items, total } = await getJson("models?limit=100", { signal });
  const rows = items.map((model) => el("tr", { dataset: { model: model.id } },
    el("td", {}, model.name),
    el("td", {}, el("a", { href: `#/jobs?model=${model.id}` }, shortId(model.id))),
    el("td", {}, model.summary.kind),
    el("td", {}, model.summary.total_params.toLocaleString()),
    el("td", {}, model.weights),
    el("td", {}, model.compile ? JSON.stringify(model.compile.loss ?? "") : "–"),
    el("td", {}, when(model.created_at))));
  view.replaceChildren(
    el("h1", {}, "Models"),
    items.length
      ? table(["name", "id (its jobs)", "kind", "parameters", "weights", "loss", "created"], rows,
              { id: "models" })
      : el("p", { class: "muted" }, "No models yet."),
    total > items.length
      ? el("p", { class: "muted" }, `The newest ${items.length} of ${total}.`)
      : null,
  );
}

async function route() {
  current.abort();
  current = new AbortController();
  const { signal } = current;
  const [path, search] = (window.location.hash.replace(/^#/, "") || "/jobs").split("?");
  const params = new URLSearchParams(search || "");
  const parts = path.split("/").filter(Boolean);
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", link.dataset.nav === parts[0]);
  }
  view.replaceChildren(el("p", { class: "muted" }, "Loading…"));
  try {
    if (parts[0] === "jobs" && parts[1]) {
      await jobPage(view, parts[1], { signal, onError: showError });
    } else if (parts[0] === "models") {
      await modelsPage(params, { signal });
    } else {
      await jobsPage(params, { signal });
    }
  } catch (err) {
    if (!signal.aborted) showError(err);
  }
}

window.addEventListener("hashchange", route);
showKeyState();
route();
