// Calls to the API beside the dashboard: the key held for this tab, JSON requests, errors in the
// API's shape, and the job event stream read with fetch (EventSource cannot send Authorization).

const KEY = "fitapi.key";
const BASE = new URL("../v1/", document.baseURI);

export function getKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

function headers(extra) {
  const h = new Headers(extra);
  const key = getKey();
  if (key) h.set("Authorization", `Bearer ${key}`);
  return h;
}

async function apiError(response) {
  let type = "http_error";
  let message = `${response.status} ${response.statusText}`;
  try {
    const first = (await response.json()).detail?.[0];
    if (first) {
      type = first.type;
      message = first.msg;
    }
  } catch {
    // not the API's JSON: keep the status line
  }
  return new ApiError(response.status, type, message);
}

export async function request(path, { method = "GET", body, signal } = {}) {
  const init = { method, headers: headers(), signal, cache: "no-store" };
  if (body !== undefined) {
    init.headers.set("Content-Type", "application/json");
    init.body = JSON.stringify(body);
  }
  const response = await fetch(new URL(path, BASE), init);
  if (!response.ok) throw await apiError(response);
  return response;
}

export async function getJson(path, options) {
  return (await request(path, options)).json();
}

export async function postJson(path, body, options = {}) {
  return (await request(path, { ...options, method: "POST", body })).json();
}

// Save what `path` answers as a file: fetched with the key, handed to the browser as a blob.
export async function download(path, filename) {
  const blob = await (await request(path)).blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// Open a Server-Sent Events stream; null when the server answers 204 (nothing more will come),
// else an async iterator of {id, event, data} with `data` parsed as JSON.
export async function openEvents(path, { lastEventId, signal } = {}) {
  const h = headers({ Accept: "text/event-stream" });
  if (lastEventId !== undefined && lastEventId !== null) {
    h.set("Last-Event-ID", String(lastEventId));
  }
  const response = await fetch(new URL(path, BASE), { headers: h, signal, cache: "no-store" });
  if (response.status === 204) return null;
  if (!response.ok) throw await apiError(response);
  return parseEvents(response.body.pipeThrough(new TextDecoderStream()));
}

async function* parseEvents(text) {
  const reader = text.getReader();
  let buffer = "";
  let event = {};
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, end).replace(/\r$/, "");
        buffer = buffer.slice(end + 1);
        if (line === "") {
          if (event.data !== undefined) {
            yield { id: event.id, event: event.event || "message", data: JSON.parse(event.data) };
          }
          event = {};
          continue;
        }
        if (line.startsWith(":")) continue; // a keep-alive comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let content = colon < 0 ? "" : line.slice(colon + 1);
        if (content.startsWith(" ")) content = content.slice(1);
        if (field === "data") {
          event.data = event.data === undefined ? content : `${event.data}\n${content}`;
        } else if (field === "id" || field === "event") {
          event[field] = content;
        }
      }
    }
  } finally {
    reader.cancel().catch(() => {}); // a stream left early (the page changed) is closed
  }
}
