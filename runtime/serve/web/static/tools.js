// The two tools that take a tune (similar music, zero-shot labels): ABC pasted or read from a file.
import { copyAbc, downloadAbc } from "./abc-file.js";
import { $, api, make, run, showStatus } from "./api.js";
import { drawScore, tuneOf } from "./score.js";
import { showQuery } from "./results.js";

/** Wire a form's ABC box and file field: a chosen file is converted by the server (MusicXML and MIDI to ABC)
 *  and shown in the box, so the person sees and can edit what the model will read.
 *  Returns the form's tune: { abc, tune, name (the file's, while the box holds it unedited) }. */
function musicInput(form) {
  const box = form.elements.abc;
  const note = $(".file-note", form);
  let fromFile = null;
  let converting = Promise.resolve();

  form.elements.file.addEventListener("change", () => {
    const file = form.elements.file.files[0];
    if (!file) return;
    const upload = new FormData();
    upload.set("file", file);
    note.textContent = `Reading ${file.name}…`;
    converting = api("convert", { body: upload }).then(
      (answer) => {
        box.value = answer.abc;
        fromFile = file.name;
        form.elements.tune.value = "0";
        note.textContent = answer.titles.length > 1
          ? `${file.name} holds ${answer.titles.length} tunes (0 to ${answer.titles.length - 1}).`
          : `${file.name}, as ABC.`;
      },
      (err) => {
        note.textContent = "";
        form.elements.file.value = "";
        showStatus("error", `Reading ${file.name} failed: ${err.message}`);
      },
    );
  });
  box.addEventListener("input", () => {
    fromFile = null;
    note.textContent = "";
  });
  const title = () => box.value.match(/^T:\s*(.+)$/m)?.[1].trim() ?? fromFile ?? "the tune";
  $(".copy", form).addEventListener("click", () => copyAbc(box.value, title()));
  $(".download", form).addEventListener("click", () => downloadAbc(box.value, title()));

  return async () => {
    await converting; // a file chosen just before the submit is read first
    return { abc: box.value, tune: Number(form.elements.tune.value) || 0, name: fromFile };
  };
}

/** "Music like jigs.abc (tune 2)" or "Music like the tune given". */
function describe({ name, tune }, what) {
  return `${what} ${name ?? "the tune given"}${tune ? ` (tune ${tune})` : ""}`;
}

// ---- similar music ----

const similarForm = $("#similar-form");
const similarTune = musicInput(similarForm);

similarForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const given = await similarTune();
  if (!given.abc.trim()) {
    showStatus("error", "Finding similar music failed: paste a tune in ABC or choose a file.");
    return;
  }
  const perPage = Number(similarForm.elements.k.value) || 20;
  const shown = $("#similar-query");
  showQuery({
    heading: describe(given, "Music like"),
    doing: `Finding music like ${given.name ?? "this tune"}`,
    failed: `Finding ${describe(given, "music like")} failed`,
    perPage,
    stale: [shown],
    fetch: async (k, signal) => {
      const answer = await api("similar", { body: { abc: given.abc, tune: given.tune, k }, signal });
      shown.hidden = false;
      drawScore($(".sheet", shown), tuneOf(given.abc, given.tune));
      return answer;
    },
  });
});

// ---- zero-shot labels ----

const classifyForm = $("#classify-form");
const classifyTune = musicInput(classifyForm);
let labelSets = {};

/** The built-in label sets, for the select and the example queries; {} when the server has none to give. */
export async function loadLabelSets() {
  try {
    labelSets = await api("label-sets");
  } catch (err) {
    classifyForm.elements.source.value = "own";
    $("#label-set-hint").textContent = `Built-in label sets are unavailable: ${err.message}`;
    return {};
  }
  const select = $("#label-set");
  select.replaceChildren(...Object.keys(labelSets).map((name) => new Option(name, name)));
  showLabelSetHint();
  return labelSets;
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

async function rankLabels() {
  const given = await classifyTune();
  const choice = labelChoice();
  if (choice.labels && !choice.labels.length) {
    showStatus("error", "Ranking labels failed: write at least one label, separated by commas.");
    return;
  }
  const output = $("#classify-output");
  run("Ranking labels", "Ranking labels failed", async (signal) => {
    const body = { abc: given.abc, tune: given.tune, ...choice };
    const answer = await api("classify", { body, signal });
    output.hidden = false;
    const abc = tuneOf(given.abc, given.tune);
    const title = abc.match(/^T:\s*(.+)$/m);
    $("#classify-title").textContent = title ? `Labels for “${title[1].trim()}”` : "Labels for this tune";
    drawScore($("#classify-score"), abc);
    showBars(answer.results);
  }, { stale: [output] });
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

/** Rank the labels of a tune from elsewhere on the page (a result's "Zero-shot labels"). */
export function labelTune(abc) {
  classifyForm.elements.abc.value = abc;
  classifyForm.elements.abc.dispatchEvent(new Event("input"));
  classifyForm.elements.tune.value = "0";
  rankLabels();
}

classifyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  rankLabels();
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
