// The clamp-index page: text search, similar music from a file, zero-shot labels, over the JSON API.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);

/** A new element, with a class and text when given. */
function make(tag, className = "", text = "") {
  const element = document.createElement(tag);
  element.className = className;
  element.textContent = text;
  return element;
}

// A request slower than this shows the spinner (quick ones would only flicker).
const SPINNER_DELAY_MS = 250;
// Header fields abcjs would print around a score; each result card shows the ones that matter instead.
const PRINTED_HEADER_FIELD = /^[ABCDFGHNORSTWZ]:/;
const METADATA_SHOWN = [["key", "Key"], ["meter", "Meter"], ["rhythm", "Rhythm"], ["origin", "Origin"],
  ["composer", "Composer"]];

// ---- talking to the API ----

/** The JSON answer of an API route; throws an Error whose message a person can act on.
 *  A server started with --api-key answers 401: ask for the key once, keep it for this tab, retry. */
async function api(path, { body, signal } = {}, askedForKey = false) {
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
  if (!response.ok) throw new Error(explain(response.status, payload));
  return payload;
}

/** An API error in plain words: FastAPI's `detail` as a sentence, validation errors field by field. */
function explain(status, payload) {
  const detail = payload && payload.detail;
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

// ---- one request at a time, with a spinner and readable errors ----

const statusBox = $("#status");
let inFlight = null;

/** Run `task(signal)` as the page's one request: cancels the previous one, spins if slow, shows errors. */
async function run(doing, failed, task) {
  inFlight?.abort();
  const controller = new AbortController();
  inFlight = controller;
  clearStatus();
  const spinner = setTimeout(() => showStatus("busy", `${doing}…`), SPINNER_DELAY_MS);
  try {
    await task(controller.signal);
    if (inFlight === controller) clearStatus();
  } catch (err) {
    if (err.name !== "AbortError") showStatus("error", `${failed}: ${err.message}`);
  } finally {
    clearTimeout(spinner);
    if (inFlight === controller) inFlight = null;
  }
}

function clearStatus() {
  statusBox.className = "status";
  statusBox.replaceChildren();
}

function showStatus(kind, text) {
  statusBox.className = `status ${kind}`;
  statusBox.replaceChildren(make("span", "", text));
}

// ---- scores and playback ----

/** The tune's ABC without the header fields abcjs would print as text around the staff. */
function musicOnly(abc) {
  const lines = abc.split("\n");
  const bodyStart = lines.findIndex((line) => /^K:/.test(line));
  return lines.filter((line, i) => i >= bodyStart || !PRINTED_HEADER_FIELD.test(line)).join("\n");
}

/** Draw `abc` as an SVG score into `element`, scaled to its width; return abcjs's tune object (to play it).

Lines break where the transcriber broke them: abcjs's re-wrapping fails on tunes with few bar lines. */
function drawScore(element, abc) {
  const score = make("div"); // abcjs sizes this one by its width, so `element` can fold it
  element.replaceChildren(score);
  return ABCJS.renderAbc(score, musicOnly(abc), {
    responsive: "resize", add_classes: true, paddingtop: 4, paddingbottom: 4, paddingleft: 0, paddingright: 0,
  })[0];
}

/** Show the first lines of a long score, with a button that unfolds the rest. */
function foldLongScore(sheet, button) {
  sheet.classList.add("folded");
  if (sheet.scrollHeight <= sheet.clientHeight + 1) {
    sheet.classList.remove("folded");
    return;
  }
  button.hidden = false;
  button.addEventListener("click", () => {
    const folded = sheet.classList.toggle("folded");
    button.setAttribute("aria-expanded", String(!folded));
    button.textContent = folded ? "Whole score" : "Fold score";
  });
}

let playing = null;

/** Play a drawn tune with plain Web Audio tones: works offline, unlike abcjs's sound-font synth. */
function play(tune, button) {
  stopPlayback();
  const context = new AudioContext();
  const sequence = tune.setUpAudio();
  const secondsPerWholeNote = 240 / (sequence.tempo || 180);
  const startAt = context.currentTime + 0.05;
  let endAt = startAt;
  for (const event of sequence.tracks.flat()) {
    if (event.cmd !== "note" || !(event.duration > 0)) continue;
    const start = startAt + event.start * secondsPerWholeNote;
    const stop = start + event.duration * secondsPerWholeNote * 0.92;
    tone(context, event.pitch, event.volume ?? 80, start, stop);
    endAt = Math.max(endAt, stop);
  }
  button.textContent = "Stop";
  button.setAttribute("aria-pressed", "true");
  const timer = setTimeout(stopPlayback, (endAt - context.currentTime) * 1000 + 300);
  playing = { context, button, timer };
}

function tone(context, pitch, volume, start, stop) {
  const oscillator = context.createOscillator();
  const gain = context.createGain();
  oscillator.type = "triangle";
  oscillator.frequency.value = 440 * 2 ** ((pitch - 69) / 12);
  gain.gain.setValueAtTime(0, start);
  gain.gain.linearRampToValueAtTime((0.3 * volume) / 127, start + 0.01);
  gain.gain.setTargetAtTime(0, stop - 0.02, 0.02);
  oscillator.connect(gain).connect(context.destination);
  oscillator.start(start);
  oscillator.stop(stop + 0.1);
}

function stopPlayback() {
  if (!playing) return;
  clearTimeout(playing.timer);
  playing.context.close();
  playing.button.textContent = "Play";
  playing.button.setAttribute("aria-pressed", "false");
  playing = null;
}

// ---- results (search and similar) ----

const resultsBox = $("#results");
const searchForm = $("#search-form");

/** Show ranked hits as cards: title, cosine, metadata, score, and what to do next. */
function showResults(heading, hits, { focus = false } = {}) {
  stopPlayback();
  $("#results-title").textContent = hits.length ? heading : `${heading}: nothing found`;
  const list = $("#result-list");
  list.replaceChildren(...hits.map(resultCard));
  resultsBox.hidden = false;
  for (const [i, card] of [...list.children].entries()) {
    const tune = drawScore($(".sheet", card), hits[i].abc);
    foldLongScore($(".sheet", card), $(".unfold", card));
    $(".play", card).addEventListener("click", (event) => {
      if (playing?.button === event.currentTarget) stopPlayback();
      else play(tune, event.currentTarget);
    });
  }
  if (focus) $("#results-title").focus();
}

function resultCard(hit, rank) {
  const card = $("#result-template").content.firstElementChild.cloneNode(true);
  const title = hit.title || "Untitled";
  $(".rank", card).textContent = `${rank + 1}`;
  $(".title", card).textContent = title;
  $(".similarity", card).textContent = `cosine ${hit.score.toFixed(3)}`;
  const meta = $(".meta", card);
  for (const [field, name] of METADATA_SHOWN) {
    if (!hit[field]) continue;
    const item = make("div");
    item.append(make("dt", "", name), make("dd", "", hit[field]));
    meta.append(item);
  }
  const file = (hit.source || "").split(/[\\/]/).pop();
  $(".origin-file", card).textContent = `${file} · tune ${hit.tune_index}`;
  $(".more", card).addEventListener("click", () => moreLike(hit.id, title));
  $(".labels", card).addEventListener("click", () => labelTune(hit.abc));
  return card;
}

function resultCount(form) {
  return Number(form.elements.k.value) || 10;
}

searchForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = searchForm.elements.text.value.trim();
  const filter = searchForm.elements.filter.value.trim();
  const body = { text, k: resultCount(searchForm), with_abc: true, ...(filter && { filter }) };
  run("Searching", "Search failed", async (signal) => {
    const answer = await api("search", { body, signal });
    showResults(`Tunes matching “${text}”`, answer.results);
  });
});

function moreLike(id, title) {
  const body = { id, k: resultCount(searchForm), with_abc: true };
  run("Finding similar tunes", "Finding similar tunes failed", async (signal) => {
    const answer = await api("similar", { body, signal });
    showResults(`More like “${title}”`, answer.results, { focus: true });
  });
}

const similarForm = $("#similar-form");
similarForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const upload = new FormData(similarForm);
  upload.set("with_abc", "true");
  const name = upload.get("file").name;
  run(`Reading ${name} and finding similar music`, `Finding music like ${name} failed`, async (signal) => {
    const answer = await api("similar", { body: upload, signal });
    const tune = Number(upload.get("tune"));
    showResults(`Music like ${name}${tune ? ` (tune ${tune})` : ""}`, answer.results);
  });
});

// ---- zero-shot labels ----

const classifyForm = $("#classify-form");
let labelSets = {};

async function loadLabelSets() {
  try {
    labelSets = await api("label-sets");
  } catch (err) {
    classifyForm.elements.source.value = "own";
    $("#label-set-hint").textContent = `Built-in label sets are unavailable: ${err.message}`;
    return;
  }
  const select = $("#label-set");
  select.replaceChildren(...Object.keys(labelSets).map((name) => new Option(name, name)));
  showLabelSetHint();
}

function showLabelSetHint() {
  const chosen = labelSets[$("#label-set").value];
  const hint = chosen ? `“${chosen.template}” with ${chosen.labels.join(", ")}` : "";
  $("#label-set-hint").textContent = hint;
}

/** Which labels to rank, as /classify takes them: a built-in set, or the person's labels and template. */
function labelChoice() {
  const fields = classifyForm.elements;
  if (fields.source.value === "set") return { label_set: fields.label_set.value };
  const labels = fields.labels.value.split(",").map((label) => label.trim()).filter(Boolean);
  return { labels, template: fields.template.value };
}

function classifyTune() {
  const abc = classifyForm.elements.abc.value;
  const choice = labelChoice();
  if (choice.labels && !choice.labels.length) {
    showStatus("error", "Ranking labels failed: write at least one label, separated by commas.");
    return;
  }
  run("Ranking labels", "Ranking labels failed", async (signal) => {
    const answer = await api("classify", { body: { abc, ...choice }, signal });
    $("#classify-output").hidden = false;
    const title = abc.match(/^T:\s*(.+)$/m);
    $("#classify-title").textContent = title ? `Labels for “${title[1].trim()}”` : "Labels for this tune";
    drawScore($("#classify-score"), abc);
    showBars(answer.results);
  });
}

/** Ranked labels as bars, the longest for the most probable; widths relative to the best label. */
function showBars(hits) {
  const best = Math.max(...hits.map((hit) => hit.prob));
  $("#label-bars").replaceChildren(...hits.map((hit) => {
    const row = make("li", "bar");
    row.title = `cosine ${hit.score.toFixed(4)}`;
    const track = make("span", "bar-track");
    const fill = make("span", "bar-fill");
    fill.style.width = `${(100 * hit.prob) / best}%`;
    track.append(fill);
    const percent = make("span", "bar-value", `${(100 * hit.prob).toFixed(1)}%`);
    row.append(make("span", "bar-label", hit.id), track, percent);
    return row;
  }));
}

function labelTune(abc) {
  classifyForm.elements.abc.value = abc;
  selectTab($("#tab-classify"));
  classifyTune();
}

classifyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  classifyTune();
});
$("#label-set").addEventListener("change", () => {
  classifyForm.elements.source.value = "set";
  showLabelSetHint();
});
for (const field of ["labels", "template"]) {
  classifyForm.elements[field].addEventListener("input", () => {
    classifyForm.elements.source.value = "own";
  });
}

// ---- tabs (arrow keys move between them) and shortcuts ----

const tabs = [...document.querySelectorAll('[role="tab"]')];

function selectTab(tab) {
  for (const other of tabs) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    other.tabIndex = selected ? 0 : -1;
    $(`#${other.getAttribute("aria-controls")}`).hidden = !selected;
  }
  resultsBox.classList.toggle("off-tab", tab.id === "tab-classify");
}

for (const tab of tabs) {
  tab.addEventListener("click", () => selectTab(tab));
  tab.addEventListener("keydown", (event) => {
    const here = tabs.indexOf(tab);
    const target = { ArrowRight: here + 1, ArrowLeft: here - 1, Home: 0, End: tabs.length - 1 }[event.key];
    if (target === undefined) return;
    event.preventDefault();
    const next = tabs[(target + tabs.length) % tabs.length];
    selectTab(next);
    next.focus();
  });
}

document.addEventListener("keydown", (event) => {
  const typing = event.target.closest("input, textarea, select");
  if (event.key === "/" && !typing) {
    event.preventDefault();
    selectTab($("#tab-search"));
    $("#search-text").focus();
  } else if (event.key === "Escape") {
    inFlight?.abort();
    clearStatus();
    stopPlayback();
  }
});

// ---- what is served ----

api("health").then(
  (health) => {
    const model = health.model_name || health.model_hash.slice(0, 12);
    $("#served").textContent = `${health.count.toLocaleString()} tunes · model ${model}`;
  },
  (err) => showStatus("error", `The server's health check failed: ${err.message}`),
);
loadLabelSets();
