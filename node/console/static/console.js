// The console's only script: copying an invite's token. Everything else is
// plain forms, so the pages work by keyboard and without script.
"use strict";
document.addEventListener("click", (ev) => {
  const b = ev.target.closest("button[data-copy]");
  if (!b) return;
  const el = document.getElementById(b.dataset.copy);
  if (el) navigator.clipboard.writeText(el.value || el.textContent);
});
