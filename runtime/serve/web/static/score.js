// Scores drawn with abcjs, folded when long, and played with plain Web Audio tones (works offline).
import { make } from "./api.js";

// Header fields abcjs would print around a score; the page shows the ones that matter beside it instead.
const PRINTED_HEADER_FIELD = /^[ABCDFGHNORSTWZ]:/;

/** The tune's ABC without the header fields abcjs would print as text around the staff. */
function musicOnly(abc) {
  const lines = abc.split("\n");
  const bodyStart = lines.findIndex((line) => /^K:/.test(line));
  return lines.filter((line, i) => i >= bodyStart || !PRINTED_HEADER_FIELD.test(line)).join("\n");
}

/** Tune `index` of an ABC text (its file header kept in front), as the server picks it; the text if it has
 *  no `X:` lines. */
export function tuneOf(abc, index) {
  const starts = [...abc.matchAll(/^X:/gm)].map((match) => match.index);
  if (!starts.length) return abc;
  const chosen = Math.min(Math.max(index, 0), starts.length - 1);
  return abc.slice(0, starts[0]) + abc.slice(starts[chosen], starts[chosen + 1]);
}

/** Draw `abc` as an SVG score into `element`, scaled to its width; return abcjs's tune object (to play it).

Lines break where the transcriber broke them: abcjs's re-wrapping fails on tunes with few bar lines. */
export function drawScore(element, abc) {
  const score = make("div"); // abcjs sizes this one by its width, so `element` can fold it
  element.replaceChildren(score);
  return ABCJS.renderAbc(score, musicOnly(abc), {
    responsive: "resize", add_classes: true, paddingtop: 4, paddingbottom: 4, paddingleft: 0, paddingright: 0,
  })[0];
}

/** Show the first lines of a long score, with a button that unfolds the rest. */
export function foldLongScore(sheet, button) {
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

/** Play a drawn tune, or stop it when this button is already playing. */
export function togglePlay(tune, button) {
  if (playing?.button === button) stopPlayback();
  else play(tune, button);
}

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

export function stopPlayback() {
  if (!playing) return;
  clearTimeout(playing.timer);
  playing.context.close();
  playing.button.textContent = "Play";
  playing.button.setAttribute("aria-pressed", "false");
  playing = null;
}
