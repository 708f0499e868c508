// Tributary's dashboard: live states through server-sent events (/api/live), actions behind a
// confirmation, and followed logs. No framework, no build step.
"use strict";

const STATES = {
  pending: ["○", "pending"], queued: ["◷", "queued"], running: ["▶", "running"],
  success: ["✓", "success"], failed: ["✗", "failed"], up_for_retry: ["↻", "up for retry"],
  upstream_failed: ["⊘", "upstream failed"], timed_out: ["⧖", "timed out"],
  skipped: ["»", "skipped"], cancelled: ["■", "cancelled"],
};
const LAST_RUNS = 10;

function flash(text, ok) {
  const box = document.getElementById("flash");
  box.textContent = text;
  box.className = ok ? "flash-ok" : "flash-error";
  box.hidden = false;
}

function setState(element, state) {
  const [icon, word] = STATES[state] || ["?", state];
  for (const name of [...element.classList]) {
    if (name.startsWith("state-") && name !== "state-icon" && name !== "state-word") {
      element.classList.remove(name);
    }
  }
  element.classList.add("state-" + state);
  element.querySelectorAll(".state-icon").forEach((node) => { node.textContent = icon; });
  element.querySelectorAll(".state-word").forEach((node) => { node.textContent = word; });
  const label = element.getAttribute("aria-label");
  if (label && label.includes(": ")) {
    element.setAttribute("aria-label", label.slice(0, label.lastIndexOf(": ") + 2) + word);
  }
  const title = element.querySelector("title");
  if (title) title.textContent = title.textContent.split(":")[0] + ": " + word;
}

function square(change) {
  const link = document.createElement("a");
  link.className = "square";
  link.href = "/runs/" + encodeURIComponent(change.run_id);
  link.dataset.run = change.run_id;
  link.setAttribute("aria-label", "new run: " + change.state);
  const icon = document.createElement("span");
  icon.className = "state-icon";
  icon.setAttribute("aria-hidden", "true");
  link.append(icon);
  return link;
}

function apply(change) {
  const runSelector = `[data-run="${CSS.escape(change.run_id)}"]`;
  const selector = change.task_id
    ? `${runSelector}[data-task="${CSS.escape(change.task_id)}"]:not([data-cell])`
    : `${runSelector}:not([data-task])`;
  const found = document.querySelectorAll(selector);
  found.forEach((element) => setState(element, change.state));
  if (change.task_id || found.length) return;
  const row = document.querySelector(`[data-pipeline-runs="${CSS.escape(change.pipeline_id)}"]`);
  if (!row) return;
  const added = square(change);
  row.prepend(added);
  setState(added, change.state);
  while (row.children.length > LAST_RUNS) row.lastElementChild.remove();
}

function showMode(mode) {
  const live = document.getElementById("live");
  live.className = "live live-" + mode;
  live.textContent = {
    redis: "live",
    postgres: "live · polling PostgreSQL (Redis unavailable)",
    down: "reconnecting…",
  }[mode] || mode;
  live.dataset.mode = mode;
}

function follow() {
  const filter = document.body.dataset.live;
  const source = new EventSource("/api/live" + (filter ? "?" + filter : ""));
  source.addEventListener("mode", (event) => showMode(event.data));
  source.onmessage = (event) => apply(JSON.parse(event.data));
  source.onerror = () => showMode("down");
}

async function problemText(response) {
  try {
    const body = await response.json();
    return `${body.detail || body.error || response.statusText} (${response.status})`;
  } catch {
    return `${response.statusText} (${response.status})`;
  }
}

async function act(button, reason) {
  const body = { reason: reason || "from the dashboard" };
  if (button.dataset.extra) Object.assign(body, JSON.parse(button.dataset.extra));
  if (button.dataset.fromSelect) body.from = document.getElementById(button.dataset.fromSelect).value;
  let response;
  try {
    response = await fetch(button.dataset.action, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Tributary-Action": "1" },
      body: JSON.stringify(body),
    });
  } catch (error) {
    flash("The service did not answer: " + error.message, false);
    return;
  }
  if (!response.ok) {
    flash(await problemText(response), false);
    return;
  }
  const answer = await response.json();
  const now = answer.run ? ` — the run is ${answer.run.state}` : "";
  flash(`${button.textContent.trim()}: applied${now}`, true);
}

function confirmActions() {
  const dialog = document.getElementById("confirm");
  let pending = null;
  document.querySelectorAll("[data-action]").forEach((button) => {
    button.addEventListener("click", () => {
      pending = button;
      document.getElementById("confirm-title").textContent = button.textContent.trim() + "?";
      document.getElementById("confirm-text").textContent = button.dataset.confirm;
      document.getElementById("confirm-reason").value = "";
      dialog.showModal();
    });
  });
  dialog.addEventListener("close", () => {
    if (dialog.returnValue === "ok" && pending) {
      act(pending, document.getElementById("confirm-reason").value);
    }
    pending = null;
  });
}

async function showLog() {
  const log = document.getElementById("log");
  if (!log || !log.dataset.log) return;
  const status = document.getElementById("log-status");
  if (log.dataset.follow === "yes") {
    const source = new EventSource(log.dataset.log + "&follow=1");
    status.textContent = "following live…";
    source.onmessage = (event) => { log.textContent += event.data + "\n"; log.scrollTop = log.scrollHeight; };
    source.addEventListener("end", () => { source.close(); status.textContent = "the attempt ended"; });
    source.onerror = () => { status.textContent = "reconnecting…"; };
    return;
  }
  const response = await fetch(log.dataset.log + "&tail=2000", { credentials: "same-origin" });
  if (!response.ok) {
    status.textContent = await problemText(response);
    return;
  }
  log.textContent = await response.text();
  status.textContent = "the last 2,000 lines";
}

document.addEventListener("DOMContentLoaded", () => {
  follow();
  confirmActions();
  showLog();
});
