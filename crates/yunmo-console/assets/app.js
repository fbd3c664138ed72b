// The console's shell: sign-in state, navigation and a hash router (`#/models/iris`) over the pages.

import { api, session, ApiError } from "./api.js";
import { h, replace, failureBox } from "./ui.js";
import * as signin from "./pages/signin.js";
import * as overview from "./pages/overview.js";
import * as models from "./pages/models.js";
import * as model from "./pages/model.js";
import * as usage from "./pages/usage.js";
import * as keys from "./pages/keys.js";
import * as tenants from "./pages/tenants.js";
import * as audit from "./pages/audit.js";
import * as alerts from "./pages/alerts.js";
import * as apidoc from "./pages/apidoc.js";

/** Pages by their first path segment; `open` ones need no key; `show(ctx)` says whether the nav lists it. */
const PAGES = {
  signin: { page: signin, open: true },
  overview: { page: overview, title: "Overview", show: (ctx) => ctx.canRead },
  models: { page: models, title: "Models", show: (ctx) => ctx.canRead },
  model: { page: model },
  usage: { page: usage, title: "Usage & cost", show: () => true },
  keys: { page: keys, title: "Keys", show: () => true },
  alerts: { page: alerts, title: "Alerts", show: () => true },
  tenants: { page: tenants, title: "Tenants", show: (ctx) => ctx.isAdmin },
  audit: { page: audit, title: "Audit log", show: () => true },
  api: { page: apidoc, title: "API", open: true, show: () => true },
};

let context = null;
let cleanup = null;

/** Who the signed-in key is (or the local caller when the server runs without keys). */
async function whoami() {
  const who = await api("/api/v1/whoami");
  const scopes = who.scopes ?? [];
  const isAdmin = scopes.includes("admin");
  return {
    who,
    isAdmin,
    canRead: isAdmin || scopes.some((scope) => ["models:read", "models:write", "metrics"].includes(scope)),
    canWrite: isAdmin || scopes.includes("models:write"),
    go: (hash) => { location.hash = hash; },
  };
}

/** Whether the server wants a key (`/ui/session.json`, served to anyone). */
async function keysRequired() {
  try {
    const response = await fetch("session.json");
    return response.ok ? (await response.json()).keys_required : true;
  } catch (_) {
    return true;
  }
}

function parse() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  return { name: parts[0] ?? "overview", params: parts.slice(1) };
}

function renderNav(current) {
  const nav = document.getElementById("nav");
  const entries = Object.entries(PAGES).filter(([, entry]) => entry.title && (context ? entry.show(context) : entry.open));
  replace(nav, entries.map(([name, entry]) =>
    h("a", { href: `#/${name}`, class: name === current || (current === "model" && name === "models") ? "active" : null }, entry.title)));
  const signedIn = context !== null;
  document.getElementById("signout").hidden = !signedIn || !session.key;
  const who = context?.who;
  replace(document.getElementById("who"), who ? h("span", { "data-testid": "who" }, who.tenant ? `${who.tenant} · ${who.key_id ?? "no key"}` : (who.key_id ?? "local")) : "");
}

async function route() {
  const { name, params } = parse();
  const entry = PAGES[name] ?? PAGES.overview;
  if (context === null && !entry.open) {
    if (!session.key && (await keysRequired())) {
      location.hash = "#/signin";
      return;
    }
    try {
      context = await whoami();
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401) {
        replace(document.getElementById("page"), failureBox(error));
        return;
      }
      session.clear();
      location.hash = "#/signin";
      return;
    }
  }
  if (cleanup) { cleanup(); cleanup = null; }
  renderNav(name);
  const root = document.getElementById("page");
  replace(root);
  root.dataset.page = name;
  try {
    cleanup = (await entry.page.render(root, { ...(context ?? {}), params, signedIn: () => { context = null; } })) ?? null;
  } catch (error) {
    replace(root, failureBox(error));
  }
}

document.getElementById("signout").addEventListener("click", () => {
  session.clear();
  context = null;
  location.hash = "#/signin";
});
window.addEventListener("hashchange", route);
route();
