// One model: its versions with signature and config, version policy, sharing, delete, and live charts.

import { api, modelPath } from "../api.js";
import { h, replace, table, bytes, when, attempt, toast, field } from "../ui.js";
import { policyText, sharingText, versionActions } from "./models.js";
import { livePanels } from "./overview.js";
import { driftPanel } from "./drift.js";
import { forecastPanel } from "./forecast.js";

const shape = (spec) => `${spec.name}: ${spec.datatype} [${spec.shape.join(", ")}]`;

function policyForm(model, changed) {
  const kind = h("select", { name: "kind" }, h("option", { value: "latest" }, "latest"), h("option", { value: "pinned" }, "pinned"));
  const version = h("input", { type: "number", min: 1, name: "version", size: 6 });
  kind.value = model.version_policy?.kind ?? "latest";
  version.value = model.version_policy?.version ?? "";
  const form = h("form", { class: "row" }, field("Serves", kind), field("Version", version), h("button", { type: "submit" }, "Save policy"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const policy = kind.value === "pinned" ? { kind: "pinned", version: Number(version.value) } : { kind: "latest" };
    const done = await attempt(() => api(modelPath(model.name), { method: "PATCH", body: { version_policy: policy } }));
    if (done !== undefined) { toast(`${model.name} serves ${policyText(done.version_policy)}`); changed(); }
  });
  return form;
}

function sharingForm(model, changed) {
  const everyone = h("input", { type: "checkbox", name: "public", checked: model.sharing?.public });
  const tenants = h("input", { name: "tenants", size: 40, value: (model.sharing?.tenants ?? []).join(", "), placeholder: "tenant-a, tenant-b" });
  const form = h("form", { class: "row" }, field("Every tenant", everyone), field("These tenants", tenants), h("button", { type: "submit" }, "Save sharing"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { public: everyone.checked, tenants: tenants.value.split(",").map((name) => name.trim()).filter(Boolean) };
    const done = await attempt(() => api(`${modelPath(model.name)}/sharing`, { method: "PUT", body }));
    if (done !== undefined) { toast(`${model.name}: shared ${sharingText(done.sharing)}`); changed(); }
  });
  return form;
}

function configForm(version, changed) {
  const text = h("textarea", { rows: 6, cols: 60, name: "config" }, JSON.stringify(version.config ?? {}, null, 2));
  const form = h("form", {}, field(`v${version.version} serving options (JSON)`, text), h("button", { type: "submit" }, "Save config"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let body;
    try { body = JSON.parse(text.value); } catch (error) { toast(`not JSON: ${error.message}`, { error: true }); return; }
    const done = await attempt(() => api(`${modelPath(version.model)}/versions/${version.version}/config`, { method: "PUT", body }));
    if (done !== undefined) { toast(`Saved v${version.version}'s config`); changed(); }
  });
  return form;
}

export async function render(root, ctx) {
  const name = ctx.params[0];
  const body = h("div", {});
  const live = h("div", { "data-testid": "model-live" });
  const drift = h("div", { "data-testid": "model-drift" });
  const forecast = h("div", { class: "card", "data-testid": "model-forecast" });
  replace(root, h("p", {}, h("a", { href: "#/models" }, "← Models")), body, h("h2", {}, "Drift"), drift,
    h("h2", {}, "Demand forecast"), forecast, h("h2", {}, "Live"), live);
  async function load() {
    const model = await api(modelPath(name));
    const versions = model.versions;
    replace(body,
      h("h1", {}, model.name, model.task ? h("span", { class: "badge" }, model.task) : ""),
      model.description ? h("p", {}, model.description) : "",
      h("p", { class: "muted" }, `Tenant ${model.tenant ?? "–"} · created ${when(model.created_at)} · serves ${policyText(model.version_policy)} · ${sharingText(model.sharing)}`),
      table([
        { title: "Version", value: (version) => `v${version.version}`, numeric: true },
        { title: "Format", value: (version) => version.format },
        { title: "Size", value: (version) => bytes(version.size_bytes), numeric: true },
        { title: "Inputs", value: (version) => h("code", {}, version.inputs.map(shape).join("\n")) },
        { title: "Outputs", value: (version) => h("code", {}, version.outputs.map(shape).join("\n")) },
        { title: "sha256", value: (version) => h("code", { title: version.sha256 }, version.sha256.slice(0, 12)) },
        { title: "State", value: (version) => (version.loaded ? "loaded" : "not loaded") },
        { title: "", value: (version) => versionActions(ctx, version, () => load().catch((error) => toast(error.message, { error: true }))) },
      ], versions, { testid: "versions", empty: "No versions: upload one on the Models page." }),
      ctx.canWrite ? h("div", { class: "card" }, h("h2", {}, "Settings"), policyForm(model, load), sharingForm(model, load), versions.map((version) => configForm(version, load)),
        h("button", {
          type: "button", class: "danger", "data-testid": "delete-model",
          onclick: async () => {
            if (!window.confirm(`Delete ${model.name}, all its versions and their files?`)) return;
            const done = await attempt(() => api(modelPath(model.name), { method: "DELETE" }));
            if (done !== undefined) { toast(`Deleted ${model.name}`); location.hash = "#/models"; }
          },
        }, "Delete model")) : "");
  }
  await load();
  const versions = (await api(modelPath(name))).versions;
  replace(drift, versions.map((version) => h("div", { class: "card", "data-testid": `drift-panel-${version.version}` })));
  await Promise.all(versions.map((version, i) => driftPanel(drift.children[i], name, version.version, ctx.canWrite)));
  const chart = await forecastPanel(forecast, name);
  const stopLive = livePanels(live, { model: name, idPrefix: "model:" });
  return () => { stopLive(); chart?.destroy(); };
}
