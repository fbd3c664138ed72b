// Tenants (admins): list, create, set limits, delete.

import { api } from "../api.js";
import { h, replace, table, num, when, attempt, toast, field, failureBox } from "../ui.js";

const LIMITS = ["requests_per_second", "requests_burst", "tokens_per_minute", "monthly_requests", "monthly_tokens", "monthly_compute_seconds"];

/** Limit inputs, filled from `limits`; `read()` returns the limits object (empty fields left out). */
function limitInputs(limits = {}) {
  const inputs = LIMITS.map((name) => h("input", { type: "number", min: 0, step: "any", name, value: limits[name] ?? "", placeholder: "unlimited", size: 10 }));
  return {
    fields: inputs.map((input) => field(input.name.replace(/_/g, " "), input)),
    read: () => Object.fromEntries(inputs.filter((input) => input.value !== "").map((input) => [input.name, Number(input.value)])),
  };
}

function limitsText(limits) {
  const set = Object.entries(limits ?? {}).filter(([, value]) => value !== null && value !== undefined);
  return set.length ? set.map(([name, value]) => `${name} ${num(value)}`).join(" · ") : "unlimited";
}

export async function render(root) {
  const list = h("div", {});
  const name = h("input", { name: "name", required: true, pattern: "[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", "data-testid": "tenant-name" });
  const limits = limitInputs();
  const form = h("form", { class: "card" }, h("h2", {}, "Create a tenant"), h("div", { class: "row" }, field("Name", name), limits.fields), h("button", { type: "submit" }, "Create tenant"));
  replace(root, h("h1", {}, "Tenants"), list, form);
  async function load() {
    let tenants;
    try {
      tenants = await api("/api/v1/tenants");
    } catch (error) {
      replace(list, failureBox(error));
      return;
    }
    replace(list, table([
      { title: "Tenant", value: (tenant) => tenant.name },
      { title: "Created", value: (tenant) => when(tenant.created_at) },
      { title: "Limits", value: (tenant) => limitsText(tenant.limits) },
      { title: "", value: (tenant) => h("span", { class: "actions" },
        h("button", { type: "button", class: "small", onclick: () => editLimits(tenant) }, "Limits…"),
        h("button", {
          type: "button", class: "danger small",
          onclick: async () => {
            if (!window.confirm(`Delete tenant ${tenant.name} and its keys?`)) return;
            const done = await attempt(() => api(`/api/v1/tenants/${encodeURIComponent(tenant.name)}`, { method: "DELETE" }));
            if (done !== undefined) { toast(`Deleted ${tenant.name}`); load(); }
          },
        }, "Delete")) },
    ], tenants, { testid: "tenants" }));
  }
  function editLimits(tenant) {
    const inputs = limitInputs(tenant.limits);
    const editor = h("form", { class: "card" }, h("h2", {}, `Limits of ${tenant.name}`), h("div", { class: "row" }, inputs.fields), h("button", { type: "submit" }, "Save limits"));
    editor.addEventListener("submit", async (event) => {
      event.preventDefault();
      const done = await attempt(() => api(`/api/v1/tenants/${encodeURIComponent(tenant.name)}/limits`, { method: "PUT", body: inputs.read() }));
      if (done !== undefined) { toast(`Saved ${tenant.name}'s limits`); editor.remove(); load(); }
    });
    list.append(editor);
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const created = await attempt(() => api("/api/v1/tenants", { method: "POST", body: { name: name.value.trim(), limits: limits.read() } }));
    if (created !== undefined) { toast(`Created ${created.name}`); form.reset(); load(); }
  });
  await load();
}
