// The popup: log in to Stoflow, then see what the plugin does (state, tasks done today, the Vinted
// budget, the last problem in plain words) and pause it. It reads chrome.storage, which the service
// worker keeps up to date, and asks the service worker to log in or out.
import { loadSettings } from "./settings.js";

const byId = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

const LABELS = {
  logged_out: "Not connected",
  idle: "Connected · waiting for tasks",
  working: "Connected · publishing on Vinted",
  paused: "Paused by Vinted",
  stopped: "Paused by you",
};

/** @type {Record<string, string>} */
const REASONS = {
  challenge: "a check to solve",
  rate_limited: "too many requests",
  logged_out_of_vinted: "log in to Vinted",
};

/** @param {number} at */
const clock = (at) => new Date(at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

/** @param {string} message */
function showError(message) {
  byId("error").textContent = message;
  byId("error").hidden = !message;
}

async function render() {
  const settings = await loadSettings();
  const stored = await chrome.storage.local.get(["auth", "status", "budget", "switch"]);
  const status = stored.status ?? { state: "idle", doneToday: 0, lastError: null };
  const loggedIn = Boolean(stored.auth);
  byId("logged-out").hidden = loggedIn;
  byId("logged-in").hidden = !loggedIn;
  byId("server").textContent = settings.stoflowUrl;
  if (!loggedIn) {
    showError(lastError(status));
    return;
  }
  /** @type {keyof typeof LABELS} */
  const state = stored.switch?.paused ? "stopped" : status.state === "logged_out" ? "idle" : status.state;
  const label = byId("state");
  label.className = `state ${state}`;
  label.textContent =
    state === "paused" && status.pausedUntil && status.penalty === "window_full"
      ? `Waiting: the Vinted budget is used up until ${clock(status.pausedUntil)}`
      : state === "paused" && status.pausedUntil
      ? `${LABELS.paused} (${REASONS[status.penalty] ?? "too many requests"}) until ${clock(status.pausedUntil)}`
      : LABELS[state];
  byId("who").textContent = stored.auth.email;
  byId("done").textContent = String(status.day === new Date().toISOString().slice(0, 10) ? status.doneToday : 0);
  const budget = Array.isArray(stored.budget) ? stored.budget : [];
  byId("budget").textContent =
    budget.length === 0
      ? "—"
      : budget
          .map((b) => `${b.username}: ${b.used}/${b.limit}` + (b.resets_at ? `, frees up at ${clock(Date.parse(b.resets_at))}` : ""))
          .join("; ");
  const challenged = state === "paused" && status.penalty === "challenge";
  byId("challenge").hidden = !challenged;
  if (challenged && status.pausedUntil) byId("challenge-until").textContent = clock(status.pausedUntil);
  /** @type {HTMLInputElement} */ (byId("pause")).checked = Boolean(stored.switch?.paused);
  showError(lastError(status));
}

/**
 * The last problem, with when it happened.
 * @param {{lastError?: {message: string, at: number} | null}} status
 */
function lastError(status) {
  return status.lastError ? `${clock(status.lastError.at)} · ${status.lastError.message}` : "";
}

byId("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const email = /** @type {HTMLInputElement} */ (byId("email")).value;
  const password = /** @type {HTMLInputElement} */ (byId("password")).value;
  const answer = await chrome.runtime.sendMessage({ type: "login", email, password });
  /** @type {HTMLInputElement} */ (byId("password")).value = "";
  if (!answer?.ok) showError(answer?.error ?? "The login failed.");
  await render();
});

byId("logout").addEventListener("click", async () => {
  await chrome.runtime.sendMessage({ type: "logout" });
  await render();
});

byId("pause").addEventListener("change", async (event) => {
  const paused = /** @type {HTMLInputElement} */ (event.target).checked;
  await chrome.storage.local.set({ switch: { paused } });
});

byId("open-vinted").addEventListener("click", async () => {
  const settings = await loadSettings();
  await chrome.tabs.create({ url: `${settings.vintedHosts[0]}/`, active: true });
});

chrome.storage.onChanged.addListener(() => void render());
void render();
void chrome.runtime.sendMessage({ type: "refresh" }).catch(() => undefined);
