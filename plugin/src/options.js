// The settings page: where Stoflow lives and which Vinted sites to use.
import { loadSettings, originOf } from "./settings.js";

const byId = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const urlInput = /** @type {HTMLInputElement} */ (byId("stoflow-url"));
const hostsInput = /** @type {HTMLTextAreaElement} */ (byId("vinted-hosts"));

/** @param {string} message */
function showError(message) {
  byId("error").textContent = message;
  byId("error").hidden = !message;
}

async function show() {
  const settings = await loadSettings();
  urlInput.value = settings.stoflowUrl;
  hostsInput.value = settings.vintedHosts.join("\n");
}

byId("settings").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  const stoflowUrl = originOf(urlInput.value);
  const lines = hostsInput.value.split("\n").filter((line) => line.trim());
  const vintedHosts = lines.map(originOf);
  if (stoflowUrl === null) return showError("The Stoflow server must be an http(s) address.");
  if (vintedHosts.length === 0 || vintedHosts.includes(null)) return showError("Each Vinted site must be an http(s) address.");
  // Match patterns name no port (Firefox refuses one; without it Chromium matches every port).
  const origins = [stoflowUrl, ...vintedHosts].map((origin) => {
    const url = new URL(/** @type {string} */ (origin));
    return `${url.protocol}//${url.hostname}/*`;
  });
  // Hosts beyond the ones the extension ships with need the user's consent. Firefox grants a request only
  // straight from the click, so it is the first thing awaited; hosts already granted answer true at once.
  if (!(await chrome.permissions.request({ origins }).catch(() => false))) {
    return showError("Stoflow needs access to these sites to work with them.");
  }
  const { settings } = await chrome.storage.local.get("settings");
  await chrome.storage.local.set({ settings: { ...(settings ?? {}), stoflowUrl, vintedHosts } });
  byId("saved").hidden = false;
});

void show();
