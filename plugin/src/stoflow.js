// The plugin's side of the Stoflow API: log in as `source=plugin`, refresh on 401, call the queue routes.
// Tokens live in chrome.storage.local (so a browser restart keeps the login); the password is never kept.

/** @typedef {{email: string, accessToken: string, refreshToken: string}} Auth */

/** Stoflow refused the login, or the login chain is spent: the user must log in again. */
export class LoggedOut extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "LoggedOut";
  }
}

/**
 * @param {Response} response
 * @returns {Promise<string>}
 */
async function problemCode(response) {
  try {
    const body = await response.json();
    return typeof body?.code === "string" ? body.code : "";
  } catch {
    return "";
  }
}

/**
 * Log in with `source=plugin`; the tokens are stored, the password is not.
 * @param {string} baseUrl
 * @param {string} email
 * @param {string} password
 * @returns {Promise<Auth>}
 */
export async function logIn(baseUrl, email, password) {
  /** @type {Response} */
  let response;
  try {
    response = await fetch(`${baseUrl}/api/auth/login?source=plugin`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ email, password }),
    });
  } catch {
    throw new LoggedOut(`Stoflow cannot be reached at ${baseUrl}.`);
  }
  if (response.status === 401) throw new LoggedOut("Wrong email or password.");
  if (response.status === 429) throw new LoggedOut("Too many attempts: wait a few minutes, then try again.");
  if (response.status !== 200) throw new LoggedOut(`Stoflow refused the login (${response.status} ${await problemCode(response)}).`);
  const tokens = await response.json();
  /** @type {Auth} */
  const auth = { email, accessToken: tokens.access_token, refreshToken: tokens.refresh_token };
  await chrome.storage.local.set({ auth });
  return auth;
}

/** Forget the tokens (and tell Stoflow, best effort). */
export async function logOut() {
  const { auth, settings } = await chrome.storage.local.get(["auth", "settings"]);
  await chrome.storage.local.remove("auth");
  if (auth && settings?.stoflowUrl) {
    fetch(`${settings.stoflowUrl}/api/auth/logout`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${auth.accessToken}` },
      body: JSON.stringify({ refresh_token: auth.refreshToken }),
    }).catch(() => undefined);
  }
}

/**
 * Trade the refresh token for a new pair; LoggedOut when the chain is spent or revoked.
 * @param {string} baseUrl
 * @param {Auth} auth
 * @returns {Promise<Auth>}
 */
async function refresh(baseUrl, auth) {
  const response = await fetch(`${baseUrl}/api/auth/refresh`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: auth.refreshToken }),
  });
  if (response.status !== 200) {
    await chrome.storage.local.remove("auth");
    throw new LoggedOut("Your Stoflow login expired: log in again.");
  }
  const tokens = await response.json();
  const renewed = { email: auth.email, accessToken: tokens.access_token, refreshToken: tokens.refresh_token };
  await chrome.storage.local.set({ auth: renewed });
  return renewed;
}

/** Only one refresh at a time: a refresh token is single use. */
/** @type {Promise<Auth> | null} */
let refreshing = null;

/**
 * One authenticated call; a 401 refreshes the tokens and sends it once more. Network failures throw TypeError.
 * @param {string} baseUrl
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @param {AbortSignal} [signal]
 * @returns {Promise<Response>}
 */
export async function call(baseUrl, method, path, body, signal) {
  const { auth } = await chrome.storage.local.get("auth");
  if (!auth) throw new LoggedOut("Not logged in to Stoflow.");
  /** @type {Auth} */
  let current = auth;
  for (let attempt = 0; attempt < 2; attempt += 1) {
    /** @type {Record<string, string>} */
    const headers = { Authorization: `Bearer ${current.accessToken}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(`${baseUrl}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
    if (response.status !== 401 || attempt === 1) return response;
    const stale = current.refreshToken;
    refreshing ??= refresh(baseUrl, current).finally(() => {
      refreshing = null;
    });
    const { auth: latest } = await chrome.storage.local.get("auth");
    current = latest && latest.refreshToken !== stale ? latest : await refreshing;
  }
  throw new Error("unreachable");
}
