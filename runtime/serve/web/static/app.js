// The clamp-index page: text search with facets, similar music, zero-shot labels, over the JSON API.
// The last text search or "more like this" is in the URL, so the back button and bookmarks work.
import { $, api, cancel, make, showStatus } from "./api.js";
import { stopPlayback } from "./score.js";
import { clearResults, resultActions, showQuery } from "./results.js";
import { labelTune, loadLabelSets } from "./tools.js";

// Metadata fields offered as dropdowns when the server answers GET /v1/facets.
const FACETS = [["key", "Key"], ["meter", "Meter"], ["rhythm", "Rhythm"], ["origin", "Origin"],
  ["collection", "Collection"]];

const searchForm = $("#search-form");
const facetBox = $("#facets");

// ---- text search, its facets and examples ----

function perPage(form) {
  return Number(form.elements.k.value) || 20;
}

/** A filter value as the filter language quotes it. */
function quoted(value) {
  return `"${value.replace(/[\\"]/g, "\\$&")}"`;
}

/** The filter the search sends: the typed one and each chosen facet, joined by "and". */
function searchFilter() {
  const typed = searchForm.elements.filter.value.trim();
  const facets = [...facetBox.querySelectorAll("select")].filter((select) => select.value)
    .map((select) => `${select.dataset.field} = ${quoted(select.value)}`);
  if (!facets.length) return typed;
  return [typed && `(${typed})`, ...facets].filter(Boolean).join(" and "); // servers with /v1/facets parse parentheses
}

/** The URL of the search in the form (text, typed filter, facets, page size). */
function searchUrl() {
  const params = new URLSearchParams({ q: searchForm.elements.text.value.trim() });
  const typed = searchForm.elements.filter.value.trim();
  if (typed) params.set("filter", typed);
  for (const select of facetBox.querySelectorAll("select")) {
    if (select.value) params.set(select.dataset.field, select.value);
  }
  params.set("k", String(perPage(searchForm)));
  return `?${params}`;
}

function search({ push = true } = {}) {
  const text = searchForm.elements.text.value.trim();
  if (!text) return;
  const filter = searchFilter();
  if (push) remember(searchUrl());
  showQuery({
    heading: `Tunes matching “${text}”`,
    doing: "Searching",
    failed: "Search failed",
    perPage: perPage(searchForm),
    fetch: (k, signal) => api("search", { body: { text, k, ...(filter && { filter }) }, signal }),
  });
}

function moreLike({ id, title }, { push = true } = {}) {
  const name = title || "this tune";
  if (push) remember(`?${new URLSearchParams({ like: id, title: name })}`);
  showQuery({
    heading: `More like “${name}”`,
    doing: "Finding similar tunes",
    failed: "Finding similar tunes failed",
    perPage: perPage(searchForm),
    fetch: (k, signal) => api("similar", { body: { id, k }, signal }),
  }, { focus: true });
}

/** Dropdowns of the values the index holds, with counts; none when the server has no facets (404). */
async function loadFacets() {
  let answer;
  try {
    answer = await api(`v1/facets?fields=${FACETS.map(([field]) => field).join(",")}`);
  } catch (err) {
    if (err.status !== 404) showStatus("error", `The metadata dropdowns are unavailable: ${err.message}`);
    return;
  }
  for (const [field, name] of FACETS) {
    const values = answer.facets?.[field] ?? [];
    if (!values.length) continue;
    const select = make("select");
    select.dataset.field = field;
    select.append(new Option("any", ""),
      ...values.map(({ value, count }) => new Option(`${value} (${count.toLocaleString()})`, value)));
    select.addEventListener("change", () => search());
    const label = make("label", "facet", name);
    label.append(select);
    facetBox.append(label);
  }
  facetBox.hidden = !facetBox.children.length;
}

/** Example queries in the model's own words: each built-in label set's prompt with one of its labels. */
function showExamples(labelSets) {
  const examples = Object.values(labelSets).map(
    ({ template, labels }, i) => template.replace("{}", labels[i % labels.length]),
  );
  const box = $("#examples");
  for (const text of examples) {
    const chip = make("button", "example", text);
    chip.type = "button";
    chip.addEventListener("click", () => {
      searchForm.elements.text.value = text;
      search();
    });
    box.append(chip);
  }
  box.hidden = !examples.length;
}

searchForm.addEventListener("submit", (event) => {
  event.preventDefault();
  search();
});

// ---- the URL: what is shown, so that back, forward and bookmarks work ----

/** A new entry in the browser's history for a query (none when it repeats the one shown). */
function remember(search) {
  if (search !== location.search) history.pushState(null, "", search);
}

/** Show what the URL says: a search (q, filter, facets, k), more like a tune (like, title), or nothing. */
function followUrl() {
  const params = new URLSearchParams(location.search);
  const fields = searchForm.elements;
  fields.text.value = params.get("q") ?? "";
  fields.filter.value = params.get("filter") ?? "";
  fields.k.value = params.get("k") ?? fields.k.defaultValue;
  for (const select of facetBox.querySelectorAll("select")) {
    const value = params.get(select.dataset.field) ?? "";
    if (value && ![...select.options].some((option) => option.value === value)) select.append(new Option(value));
    select.value = value;
  }
  if (params.has("q") || params.has("like")) selectTab($("#tab-search"));
  if (params.has("q")) search({ push: false });
  else if (params.has("like")) moreLike({ id: params.get("like"), title: params.get("title") }, { push: false });
  else {
    cancel();
    clearResults();
  }
}

window.addEventListener("popstate", followUrl);
resultActions.moreLike = moreLike;
resultActions.labelTune = (abc) => {
  selectTab($("#tab-classify"));
  labelTune(abc);
};

// ---- tabs (arrow keys move between them) and shortcuts ----

const tabs = [...document.querySelectorAll('[role="tab"]')];

function selectTab(tab) {
  for (const other of tabs) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    other.tabIndex = selected ? 0 : -1;
    $(`#${other.getAttribute("aria-controls")}`).hidden = !selected;
  }
  $("#results").classList.toggle("off-tab", tab.id === "tab-classify");
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
    cancel();
    stopPlayback();
  }
});

// ---- what is served; then the query in the URL ----

api("health").then(
  (health) => {
    const model = health.model_name || health.model_hash.slice(0, 12);
    $("#served").textContent = `${health.count.toLocaleString()} tunes · model ${model}`;
  },
  (err) => showStatus("error", `The server's health check failed: ${err.message}`),
);
showExamples(await loadLabelSets()); // first: on a server with an API key it asks for the key
await loadFacets();
if (location.search) followUrl(); // a bookmark, or a reload after a query
