// The console's only way to the server: the public, documented API, with the signed-in key.

const KEY = "yunmo.key";

/** The key the user signed in with, kept for this tab only (sessionStorage). */
export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  set(key) { sessionStorage.setItem(KEY, key); },
  clear() { sessionStorage.removeItem(KEY); },
};

/** An answer other than 2xx, with the API's error code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function headers(extra = {}) {
  const out = { ...extra };
  if (session.key) out.Authorization = `Bearer ${session.key}`;
  return out;
}

async function failure(response) {
  let code = `http_${response.status}`;
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    const error = body.error ?? body;
    if (typeof error === "object" && error !== null) {
      code = error.code ?? error.type ?? code;
      message = error.message ?? message;
    } else if (typeof error === "string") {
      message = error;
    }
  } catch (_) { /* not JSON: keep the status line */ }
  return new ApiError(response.status, code, message);
}

/** Calls `path` (a JSON body when `body` is given) and returns the parsed JSON, or the text with `text: true`. */
export async function api(path, { method = "GET", body, text = false } = {}) {
  const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  if (!response.ok) throw await failure(response);
  if (text) return response.text();
  const type = response.headers.get("content-type") ?? "";
  return type.includes("json") ? response.json() : response.text();
}

/** Uploads `file` as the raw body of a POST to `path`, calling `progress(sent, total)` as it goes. */
export function upload(path, file, progress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", path);
    for (const [name, value] of Object.entries(headers({ "Content-Type": "application/octet-stream" }))) {
      request.setRequestHeader(name, value);
    }
    request.upload.onprogress = (event) => progress(event.loaded, event.lengthComputable ? event.total : file.size);
    request.onerror = () => reject(new ApiError(0, "network", "the upload could not reach the server"));
    request.onload = () => {
      let body = null;
      try { body = JSON.parse(request.responseText); } catch (_) { /* empty or not JSON */ }
      if (request.status >= 200 && request.status < 300) {
        resolve(body);
      } else {
        const error = body?.error ?? {};
        reject(new ApiError(request.status, error.code ?? `http_${request.status}`, error.message ?? request.statusText));
      }
    };
    request.send(file);
  });
}

/** A URL path with its query (`undefined`, `null` and empty values left out). */
export function withQuery(path, query) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(name, value);
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

/** A model name as a path segment (`tenant/name` keeps its slash escaped). */
export function modelPath(name) {
  return `/api/v1/models/${encodeURIComponent(name)}`;
}
