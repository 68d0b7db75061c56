// Gatehouse's only script besides htmx. No inline script anywhere (the CSP forbids it):
// everything hangs off data- attributes and events, so it also works on swapped content.

// Copy buttons: <button data-copy="#input-id">.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.querySelector(button.dataset.copy);
  if (!source) return;
  const text = source.value ?? source.textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    source.select();
    document.execCommand("copy");
  }
  const label = button.textContent;
  button.textContent = "Copied";
  announce(`${label.replace(/^Copy /, "")} copied.`);
  setTimeout(() => { button.textContent = label; }, 1500);
});

// Announcements for screen readers: the server sends HX-Trigger {"gatehouse:announce": "..."}.
function announce(message) {
  const region = document.getElementById("announcer");
  if (!region) return;
  region.textContent = "";
  // A fresh text node in a later task, so that a repeated message is read again.
  setTimeout(() => { region.textContent = message; }, 50);
}
document.body.addEventListener("gatehouse:announce", (event) => announce(event.detail.value));

// Revoke: an in-page <dialog> naming the token; without JavaScript (or <dialog>) the
// button's form leads to a confirmation page instead.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-revoke]");
  if (!button || !window.htmx) return;
  const dialog = document.getElementById(button.dataset.dialog);
  if (!dialog || typeof dialog.showModal !== "function") return;
  event.preventDefault();
  const data = button.dataset;
  dialog.querySelectorAll("[data-field]").forEach((el) => { el.textContent = data[el.dataset.field] || ""; });
  dialog.querySelectorAll("[data-part]").forEach((el) => { el.hidden = !data[el.dataset.part]; });
  dialog.returnValue = "";
  dialog.onclose = () => {
    if (dialog.returnValue !== "confirm") { button.focus(); return; }
    const panel = button.closest("section[id]");
    htmx.ajax("POST", data.revoke, { source: button, target: `#${panel.id}`, swap: "outerHTML" });
  };
  dialog.showModal();
});

// A link to #deploy-tokens (or any section) opens it.
function openTarget() {
  const id = decodeURIComponent(location.hash.slice(1));
  const target = id && document.getElementById(id);
  if (!target) return;
  const details = target.matches("details") ? target : target.querySelector("details[data-section]");
  if (details) details.open = true;
  target.scrollIntoView();
}
window.addEventListener("hashchange", openTarget);
document.addEventListener("DOMContentLoaded", openTarget);

// htmx moves the focus to [autofocus] in swapped content; say what a list swap did.
document.body.addEventListener("htmx:afterSwap", (event) => {
  const heading = event.detail.target.querySelector?.(".list-heading");
  const pager = event.detail.target.querySelector?.(".pager span");
  if (heading && event.detail.requestConfig?.verb === "get") {
    announce(`${heading.textContent}${pager ? ", " + pager.textContent : ""}.`);
  }
});
