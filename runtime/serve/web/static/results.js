// Ranked tunes (search and similar music) as a compact list: a line per tune, its score on demand, more pages.
import { copyAbc, downloadAbc } from "./abc-file.js";
import { $, api, make, run, showStatus } from "./api.js";
import { drawScore, foldLongScore, stopPlayback, togglePlay } from "./score.js";

// The server's most results for one query (server.py MAX_K): "Load more" stops there.
const MAX_RESULTS = 1000;
// Set by the hybrid search mode: the best hit is no closer than hits of unrelated queries.
const CHANCE_FLAG = "no_better_than_chance";
const LINE_FACTS = ["key", "meter", "rhythm", "origin"];
const DETAIL_FIELDS = [["key", "Key"], ["meter", "Meter"], ["rhythm", "Rhythm"],
  ["origin", "Origin"], ["composer", "Composer"], ["collection", "Collection"], ["source", "File"],
  ["tune_index", "Tune in file"]];

const resultsBox = $("#results");
const list = $("#result-list");
const loadMoreButton = $("#load-more");
let current = null;

/** What a result's buttons do beyond this list; app.js fills it in (it owns the URL and the tabs). */
export const resultActions = { moreLike: (hit) => {}, labelTune: (abc) => {} };

/** Run a ranked query and show its first page in place of the list.
 *  `query`: { heading, doing, failed, perPage, fetch(k, signal) -> the API's answer {results, ...},
 *  stale (more elements a failure hides) }. */
export function showQuery(query, { focus = false } = {}) {
  run(query.doing, query.failed, async (signal) => {
    const answer = await query.fetch(query.perPage, signal);
    stopPlayback();
    current = { ...query, asked: query.perPage, shown: new Set() };
    list.replaceChildren();
    $("#results-title").textContent = answer.results.length ? query.heading : `${query.heading}: nothing found`;
    $("#chance-note").hidden = answer[CHANCE_FLAG] !== true;
    resultsBox.hidden = false;
    append(answer.results);
    if (focus) $("#results-title").focus();
  }, { stale: [resultsBox, ...(query.stale ?? [])] });
}

/** Forget the shown results (the page went back to where no query had run). */
export function clearResults() {
  stopPlayback();
  current = null;
  list.replaceChildren();
  resultsBox.hidden = true;
}

function loadMore() {
  const query = current;
  const k = Math.min(query.asked + query.perPage, MAX_RESULTS);
  run("Loading more", "Loading more failed", async (signal) => {
    const answer = await query.fetch(k, signal);
    query.asked = k;
    const first = query.shown.size;
    append(answer.results.filter((hit) => !query.shown.has(hit.id)));
    list.children[first]?.querySelector(".line").focus(); // keyboard users go on where the new lines start
  });
}

/** Add lines for these hits; "Load more" shows while the server may hold more than were asked for. */
function append(hits) {
  const start = current.shown.size;
  list.append(...hits.map((hit, i) => resultLine(hit, start + i)));
  for (const hit of hits) current.shown.add(hit.id);
  loadMoreButton.hidden = current.shown.size < current.asked || current.asked >= MAX_RESULTS;
}

function resultLine(hit, rank) {
  const line = $("#result-template").content.firstElementChild.cloneNode(true);
  line.dataset.id = hit.id;
  $(".rank", line).textContent = `${rank + 1}`;
  $(".title", line).textContent = hit.title || "Untitled";
  $(".facts", line).textContent = LINE_FACTS.map((field) => hit[field]).filter(Boolean).join(" · ");
  if (Array.isArray(hit.found_by)) $(".found-by", line).textContent = `by ${hit.found_by.join(" + ")}`;
  const z = typeof hit.z === "number" ? ` · z ${hit.z.toFixed(1)}` : "";
  $(".similarity", line).textContent = `cosine ${hit.score.toFixed(3)}${z}`;
  const button = $(".line", line);
  button.addEventListener("click", () => toggleDetail(line, hit, button));
  return line;
}

/** Unfold a line into the tune's details, score and actions; the ABC is fetched the first time. */
async function toggleDetail(line, hit, button) {
  const detail = $(".detail", line);
  const open = button.getAttribute("aria-expanded") !== "true";
  button.setAttribute("aria-expanded", String(open));
  detail.hidden = !open;
  if (!open || line.dataset.filled) return;
  line.dataset.filled = "yes";
  try {
    const item = await api(`items/${encodeURIComponent(hit.id)}`);
    fillDetail(line, { ...item, ...hit, abc: item.abc });
  } catch (err) {
    delete line.dataset.filled;
    showStatus("error", `Fetching “${hit.title || hit.id}” failed: ${err.message}`);
  }
}

function fillDetail(line, hit) {
  const meta = $(".meta", line);
  for (const [field, name] of DETAIL_FIELDS) {
    if (hit[field] === undefined || hit[field] === null || hit[field] === "") continue;
    const item = make("div");
    item.append(make("dt", "", name), make("dd", "", String(hit[field])));
    meta.append(item);
  }
  const sheet = $(".sheet", line);
  const tune = drawScore(sheet, hit.abc);
  foldLongScore(sheet, $(".unfold", line));
  $(".play", line).addEventListener("click", (event) => togglePlay(tune, event.currentTarget));
  $(".more", line).addEventListener("click", () => resultActions.moreLike(hit));
  $(".labels", line).addEventListener("click", () => resultActions.labelTune(hit.abc));
  $(".copy", line).addEventListener("click", () => copyAbc(hit.abc, hit.title || hit.id));
  $(".download", line).addEventListener("click", () => downloadAbc(hit.abc, hit.title || hit.id));
}

$("#show-scores").addEventListener("change", (event) => {
  resultsBox.classList.toggle("with-scores", event.currentTarget.checked);
});
loadMoreButton.addEventListener("click", loadMore);
