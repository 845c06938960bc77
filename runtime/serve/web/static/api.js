// Talking to the JSON API, one request at a time, with a spinner and errors a person can act on.

export const $ = (selector, root = document) => root.querySelector(selector);

/** A new element, with a class and text when given. */
export function make(tag, className = "", text = "") {
  const element = document.createElement(tag);
  element.className = className;
  element.textContent = text;
  return element;
}

// A request slower than this shows the spinner (quick ones would only flicker).
const SPINNER_DELAY_MS = 250;

/** The JSON answer of an API route; throws an Error (with the HTTP `status`) whose message a person can act on.
 *  A server started with --api-key answers 401: ask for the key once, keep it for this tab, retry. */
export async function api(path, { body, signal } = {}, askedForKey = false) {
  const init = { method: body === undefined ? "GET" : "POST", signal, headers: {} };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["content-type"] = "application/json";
  }
  const key = sessionStorage.getItem("clamp-api-key");
  if (key) init.headers.authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new Error("the server could not be reached. Is `clamp serve` still running?");
  }
  if (response.status === 401 && !askedForKey) {
    const given = window.prompt("This server needs an API key (clamp serve --api-key):");
    if (given) {
      sessionStorage.setItem("clamp-api-key", given.trim());
      return api(path, { body, signal }, true);
    }
  }
  const payload = await response.json().catch(() => null);
  if (!response.ok) throw Object.assign(new Error(explain(response.status, payload)), { status: response.status });
  return payload;
}

/** An API error in plain words: FastAPI's `detail` as a sentence, validation errors field by field. */
function explain(status, payload) {
  const detail = payload && (payload.detail ?? payload.message);
  if (status === 429) return "the server is busy right now. Try again in a moment.";
  if (status === 401) return "this server needs an API key; reload the page to enter it.";
  if (status === 413) return `that is too large for this server (${detail}).`;
  if (Array.isArray(detail)) {
    return detail.map((d) => {
      const field = (d.loc || []).filter((part) => part !== "body").join(".");
      return field ? `${field}: ${d.msg}` : d.msg;
    }).join("; ");
  }
  if (typeof detail === "string" && detail) return detail;
  return `the server answered HTTP ${status} without saying why.`;
}

const statusBox = $("#status");
let inFlight = null;

/** Run `task(signal)` as the page's one request: cancels the previous one, spins if slow, shows errors.
 *  On an error the `stale` elements are hidden: an old heading must not sit above a failed query. */
export async function run(doing, failed, task, { stale = [] } = {}) {
  inFlight?.abort();
  const controller = new AbortController();
  inFlight = controller;
  clearStatus();
  const spinner = setTimeout(() => showStatus("busy", `${doing}…`), SPINNER_DELAY_MS);
  try {
    await task(controller.signal);
    if (inFlight === controller) clearStatus();
  } catch (err) {
    if (err.name === "AbortError") return;
    showStatus("error", `${failed}: ${err.message}`);
    for (const element of stale) element.hidden = true;
  } finally {
    clearTimeout(spinner);
    if (inFlight === controller) inFlight = null;
  }
}

/** Cancel the request in flight, if any (Esc). */
export function cancel() {
  inFlight?.abort();
  clearStatus();
}

export function clearStatus() {
  statusBox.className = "status";
  statusBox.replaceChildren();
}

/** Show a line under the panels: kind "busy" (spinner), "error" or "done". */
export function showStatus(kind, text) {
  statusBox.className = `status ${kind}`;
  statusBox.replaceChildren(make("span", "", text));
}
