// Keys: list (admins: every tenant's; others: their tenant's), create (the secret shown once), revoke.
// Admins manage any tenant's keys; a key with `keys:write` manages its own tenant's, granting only scopes it holds.

import { api, withQuery } from "../api.js";
import { h, replace, table, when, attempt, toast, field, failureBox } from "../ui.js";

const SCOPES = ["admin", "models:write", "models:read", "infer", "metrics", "keys:write"];

function createForm(ctx, changed) {
  const held = ctx.isAdmin ? SCOPES : SCOPES.filter((scope) => scope !== "admin" && ctx.who.scopes.includes(scope));
  const name = h("input", { name: "name", required: true, placeholder: "ci-runner", "data-testid": "key-name" });
  const tenant = ctx.isAdmin ? h("input", { name: "tenant", placeholder: ctx.who.tenant, "data-testid": "key-tenant" }) : null;
  const boxes = held.map((scope) => h("input", { type: "checkbox", name: "scope", value: scope, "data-testid": `key-scope-${scope}` }));
  const models = h("input", { name: "models", size: 30, placeholder: "all the tenant can see" });
  const expires = h("input", { type: "date", name: "expires" });
  const secret = h("div", { class: "secret", hidden: true });
  const form = h("form", { class: "card", "data-testid": "create-key" },
    h("h2", {}, "Create a key"),
    h("div", { class: "row" }, field("Name", name), tenant ? field("Tenant", tenant) : "", field("Models (comma-separated)", models), field("Expires", expires)),
    h("div", { class: "row scopes" }, boxes.map((box) => h("label", { class: "check" }, box, box.value))),
    h("button", { type: "submit" }, "Create key"), secret);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const scopes = boxes.filter((box) => box.checked).map((box) => box.value);
    const body = { name: name.value.trim(), scopes };
    if (tenant?.value.trim()) body.tenant = tenant.value.trim();
    const names = models.value.split(",").map((model) => model.trim()).filter(Boolean);
    if (names.length) body.models = names;
    if (expires.value) body.expires_at = Math.floor(Date.parse(`${expires.value}T00:00:00Z`) / 1000);
    const created = await attempt(() => api("/api/v1/keys", { method: "POST", body }));
    if (created === undefined) return;
    replace(secret,
      h("strong", {}, "The new key, shown this once: copy it now."),
      h("code", { "data-testid": "new-key" }, created.key),
      h("button", { type: "button", class: "small", onclick: () => navigator.clipboard?.writeText(created.key).then(() => toast("Copied")) }, "Copy"));
    secret.hidden = false;
    changed();
  });
  return form;
}

export async function render(root, ctx) {
  const list = h("div", {});
  const canManage = ctx.isAdmin || ctx.who?.scopes?.includes("keys:write");
  const filter = ctx.isAdmin ? h("input", { name: "tenant", placeholder: "all tenants", "data-testid": "keys-tenant" }) : null;
  const controls = filter ? h("form", { class: "row" }, field("Tenant", filter), h("button", { type: "submit" }, "Show")) : "";
  replace(root, h("h1", {}, "API keys"), controls, list, canManage ? createForm(ctx, () => load()) : h("p", { class: "muted" }, "Creating and revoking keys needs the admin or keys:write scope."));
  async function load() {
    let keys;
    try {
      keys = await api(withQuery("/api/v1/keys", { tenant: filter?.value.trim() }));
    } catch (error) {
      replace(list, failureBox(error));
      return;
    }
    replace(list, table([
      { title: "Id", value: (key) => h("code", {}, key.id) },
      { title: "Name", value: (key) => key.name },
      { title: "Tenant", value: (key) => key.tenant },
      { title: "Scopes", value: (key) => key.scopes.join(", ") },
      { title: "Models", value: (key) => (key.models ? key.models.join(", ") : "all") },
      { title: "Created", value: (key) => when(key.created_at) },
      { title: "Expires", value: (key) => (key.expires_at ? when(key.expires_at) : "never") },
      { title: "State", value: (key) => h("span", { class: key.revoked_at ? "badge bad" : "badge ok", "data-testid": `key-state-${key.id}` }, key.revoked_at ? `revoked ${when(key.revoked_at)}` : "active") },
      { title: "", value: (key) => (canManage && !key.revoked_at ? h("button", {
        type: "button", class: "danger small", "data-testid": `revoke-${key.id}`,
        onclick: async () => {
          if (!window.confirm(`Revoke key ${key.id} (${key.name})? It is refused from the next request on.`)) return;
          const done = await attempt(() => api(`/api/v1/keys/${encodeURIComponent(key.id)}`, { method: "DELETE" }));
          if (done !== undefined) { toast(`Revoked ${key.id}`); load(); }
        },
      }, "Revoke") : "") },
    ], keys, { testid: "keys", empty: "No keys." }));
  }
  if (filter) controls.addEventListener("submit", (event) => { event.preventDefault(); load(); });
  await load();
}
