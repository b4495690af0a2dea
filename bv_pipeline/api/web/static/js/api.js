// The read API as the page uses it: bearer-token requests and readable explanations of error answers.

export class ApiError extends Error {
  constructor(status, body) {
    super(`${status}`);
    this.status = status;
    this.body = body || {};
  }
}

export class Api {
  constructor() {
    this.token = null;
  }

  async get(path, params = {}) {
    const url = new URL(path, window.location.origin);
    for (const [k, v] of Object.entries(params)) {
      if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, String(v));
    }
    const resp = await fetch(url, { headers: { Authorization: `Bearer ${this.token}`, Accept: "application/json" } });
    let body = null;
    try {
      body = await resp.json();
    } catch (_) {
      body = null;
    }
    if (!resp.ok) throw new ApiError(resp.status, body);
    return body;
  }
}

export function isAuthError(err) {
  return err instanceof ApiError && (err.status === 401 || err.status === 403);
}

function detailText(detail) {
  if (Array.isArray(detail)) return detail.map((d) => `${d.parameter}: ${d.message}`).join("; ");
  return detail ? String(detail) : "";
}

/** A sentence for the person at the page: what the API said, with its suggestions. */
export function explain(err) {
  if (!(err instanceof ApiError)) return `The request failed: ${err.message}`;
  if (err.status === 401) return "Sign-in needed: the API answered 401 (no bearer token was accepted).";
  if (err.status === 403) return "Sign-in failed: the token is not valid for this API (403 forbidden).";
  const b = err.body;
  let text = `${err.status} ${b.error || "error"}: ${detailText(b.detail)}`;
  if (Array.isArray(b.suggestions)) text += ` (${b.suggestions.join("; ")})`;
  return text;
}
