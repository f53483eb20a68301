// The function that runs one Vinted request inside the Vinted tab's own page (the MAIN world), with the
// page's cookies, its CSRF token and anon id: what Vinted's web app itself sends. It is injected with
// chrome.scripting.executeScript, which serialises it: it must not use anything from outside its body.

/**
 * @typedef {object} PageRequest
 * @property {string} method
 * @property {string} path
 * @property {unknown} json
 * @property {{fields: [string, string][], file_field: string, filename: string, content_type: string, base64: string} | null} file
 */

/**
 * @typedef {object} PageAnswer
 * @property {number} http_status
 * @property {string} text
 * @property {string} content_type
 * @property {Record<string, string>} headers  the few headers that tell a penalty (retry-after, cf-mitigated, x-datadome)
 * @property {string} origin  the page's origin, which the request was sent from
 * @property {string | null} error  why no answer arrived (http_status 0)
 */

/**
 * @param {PageRequest} request
 * @returns {Promise<PageAnswer>}
 */
export async function sendFromPage(request) {
  const write = ["POST", "PUT", "PATCH", "DELETE"].includes(request.method);
  /** @type {Record<string, string>} */
  const headers = { Accept: "application/json, text/plain, */*" };
  if (write) {
    const meta = document.querySelector('meta[name="csrf-token"]');
    const csrf = meta ? meta.getAttribute("content") : null;
    const anon = /(?:^|;\s*)anon_id=([^;]+)/.exec(document.cookie);
    if (csrf) headers["x-csrf-token"] = csrf;
    if (anon) headers["x-anon-id"] = decodeURIComponent(anon[1]);
  }
  /** @type {BodyInit | undefined} */
  let body;
  if (request.file) {
    const form = new FormData();
    for (const [name, value] of request.file.fields) form.append(name, value);
    const bytes = Uint8Array.from(atob(request.file.base64), (c) => c.charCodeAt(0));
    form.append(request.file.file_field, new Blob([bytes], { type: request.file.content_type }), request.file.filename);
    body = form;
  } else if (request.json !== null && request.json !== undefined && request.method !== "GET" && request.method !== "HEAD") {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(request.json);
  }
  const origin = location.origin;
  try {
    const response = await fetch(request.path, { method: request.method, headers, body, credentials: "include" });
    /** @type {Record<string, string>} */
    const kept = {};
    for (const name of ["retry-after", "cf-mitigated", "x-datadome"]) {
      const value = response.headers.get(name);
      if (value !== null) kept[name] = value;
    }
    return {
      http_status: response.status,
      text: await response.text(),
      content_type: response.headers.get("content-type") ?? "",
      headers: kept,
      origin,
      error: null,
    };
  } catch (error) {
    return { http_status: 0, text: "", content_type: "", headers: {}, origin, error: String(error).slice(0, 500) };
  }
}
