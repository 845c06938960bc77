// A tune's ABC copied to the clipboard or saved as a .abc file.
import { make, showStatus } from "./api.js";

/** Put a tune's ABC on the clipboard; pages served over plain http from another host have no Clipboard API. */
export async function copyAbc(abc, title) {
  const what = `the ABC of “${title}”`;
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(abc);
    } else {
      const scratch = make("textarea");
      scratch.value = abc;
      document.body.append(scratch);
      scratch.select();
      const copied = document.execCommand("copy");
      scratch.remove();
      if (!copied) throw new Error("the browser refused");
    }
    showStatus("done", `Copied ${what}.`);
  } catch (err) {
    showStatus("error", `Copying ${what} failed: ${err.message}. Use Download ABC instead.`);
  }
}

/** Save a tune's ABC as TITLE.abc (the title's letters and digits joined by hyphens). */
export function downloadAbc(abc, title) {
  const link = make("a");
  link.href = URL.createObjectURL(new Blob([abc], { type: "text/vnd.abc;charset=utf-8" }));
  link.download = `${title.normalize("NFKD").replace(/[^\p{L}\p{N}]+/gu, "-").replace(/^-|-$/g, "").slice(0, 80)
    || "tune"}.abc`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000); // after the browser has read it
}
