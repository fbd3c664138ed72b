// The audit log: management actions, newest first (admins: any tenant; others: their own).

import { api, withQuery } from "../api.js";
import { h, replace, table, field, failureBox } from "../ui.js";

export async function render(root, ctx) {
  const list = h("div", {});
  const tenant = ctx.isAdmin ? h("input", { name: "tenant", placeholder: "all tenants" }) : null;
  const limit = h("input", { type: "number", name: "limit", min: 1, max: 10000, value: 200, size: 6 });
  const form = h("form", { class: "row" }, tenant ? field("Tenant", tenant) : "", field("Entries", limit), h("button", { type: "submit" }, "Show"));
  replace(root, h("h1", {}, "Audit log"), form, list);
  async function load() {
    try {
      const entries = await api(withQuery("/api/v1/audit", { tenant: tenant?.value.trim(), limit: limit.value }));
      replace(list, table([
        { title: "At (UTC)", value: (entry) => entry.at },
        { title: "Tenant", value: (entry) => entry.tenant },
        { title: "Key", value: (entry) => h("code", {}, entry.key_id) },
        { title: "Action", value: (entry) => entry.action },
        { title: "Outcome", value: (entry) => entry.outcome },
        { title: "From", value: (entry) => entry.remote },
      ], entries, { testid: "audit", empty: "No management actions yet." }));
    } catch (error) {
      replace(list, failureBox(error));
    }
  }
  form.addEventListener("submit", (event) => { event.preventDefault(); load(); });
  await load();
}
