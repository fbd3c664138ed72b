// Models: the registry the key can see; create, upload with a progress bar, load/unload, delete.

import { api, upload, modelPath, withQuery } from "../api.js";
import { h, replace, table, num, bytes, when, attempt, toast, field, failureBox } from "../ui.js";

/** Version policy as text. */
export function policyText(policy) {
  return policy?.kind === "pinned" ? `pinned to v${policy.version}` : "latest";
}

/** Sharing as text. */
export function sharingText(sharing) {
  if (!sharing) return "private";
  if (sharing.public) return "public";
  return sharing.tenants?.length ? `with ${sharing.tenants.join(", ")}` : "private";
}

/** Buttons acting on one version (load, unload, delete), calling `changed()` after each success. */
export function versionActions(ctx, version, changed) {
  if (!ctx.canWrite) return "";
  const base = `${modelPath(version.model)}/versions/${version.version}`;
  const act = (label, path, method, confirmText) => h("button", {
    type: "button",
    class: method === "DELETE" ? "danger small" : "small",
    "data-testid": `${label.toLowerCase()}-${version.model}-${version.version}`,
    onclick: async () => {
      if (confirmText && !window.confirm(confirmText)) return;
      const done = await attempt(() => api(path, { method }));
      if (done !== undefined) { toast(`${label}: ${version.model} v${version.version}`); changed(); }
    },
  }, label);
  return h("span", { class: "actions" },
    version.loaded ? act("Unload", `${base}/unload`, "POST") : act("Load", `${base}/load`, "POST"),
    act("Delete", base, "DELETE", `Delete ${version.model} version ${version.version} and its file?`));
}

/** The upload form; `models()` is the current list (the form stays while the list reloads). */
function uploadForm(models, names, changed) {
  const name = h("input", { name: "model", required: true, list: "model-names", placeholder: "iris", "data-testid": "upload-model" });
  const file = h("input", { type: "file", name: "file", required: true, accept: ".onnx,.gguf", "data-testid": "upload-file" });
  const bar = h("progress", { max: 100, value: 0, "data-testid": "upload-progress" });
  const status = h("span", { class: "muted", "data-testid": "upload-status" });
  const form = h("form", { class: "card", "data-testid": "upload" },
    h("h2", {}, "Upload a version"),
    h("p", { class: "muted" }, "An ONNX or GGUF file becomes the model's next version (the model is created if it does not exist)."),
    h("div", { class: "row" }, field("Model", name), names, field("File", file), h("button", { type: "submit" }, "Upload")),
    h("div", { class: "row" }, bar, status));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = file.files[0];
    const model = name.value.trim();
    if (!chosen || !model) return;
    if (!models().some((existing) => existing.name === model)) {
      const created = await attempt(() => api("/api/v1/models", { method: "POST", body: { name: model } }));
      if (created === undefined) return;
    }
    bar.value = 0;
    status.textContent = `0 / ${bytes(chosen.size)}`;
    try {
      const version = await upload(`${modelPath(model)}/versions`, chosen, (sent, total) => {
        bar.value = total ? (100 * sent) / total : 0;
        status.textContent = `${bytes(sent)} / ${bytes(total)}`;
      });
      bar.value = 100;
      status.textContent = `stored ${model} v${version.version} (${bytes(version.size_bytes)})`;
      toast(`Uploaded ${model} v${version.version}`);
      changed();
    } catch (error) {
      status.textContent = `refused: ${error.message}`;
      toast(error.message, { error: true });
    }
  });
  return form;
}

function createForm(changed) {
  const name = h("input", { name: "name", required: true, pattern: "[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", "data-testid": "create-model-name" });
  const task = h("input", { name: "task", placeholder: "classification" });
  const description = h("input", { name: "description", size: 40 });
  const form = h("form", { class: "card" }, h("h2", {}, "Create a model"),
    h("div", { class: "row" }, field("Name", name), field("Task", task), field("Description", description), h("button", { type: "submit" }, "Create")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { name: name.value.trim() };
    if (task.value.trim()) body.task = task.value.trim();
    if (description.value.trim()) body.description = description.value.trim();
    const created = await attempt(() => api("/api/v1/models", { method: "POST", body }));
    if (created !== undefined) { toast(`Created ${created.name}`); form.reset(); changed(); }
  });
  return form;
}

export async function render(root, ctx) {
  const list = h("div", {});
  const names = h("datalist", { id: "model-names" });
  let models = [];
  const forms = ctx.canWrite ? [uploadForm(() => models, names, () => load()), createForm(() => load())] : [];
  replace(root, h("h1", {}, "Models"), list, forms);
  async function load() {
    try {
      models = (await api(withQuery("/api/v1/models", {}))).models;
    } catch (error) {
      replace(list, failureBox(error));
      return;
    }
    const rows = models.flatMap((model) => (model.versions.length ? model.versions : [null]).map((version) => ({ model, version })));
    replace(list, table([
      { title: "Model", value: (row) => h("a", { href: `#/model/${encodeURIComponent(row.model.name)}`, "data-testid": `model-${row.model.name}` }, row.model.name) },
      { title: "Tenant", value: (row) => row.model.tenant ?? "" },
      { title: "Task", value: (row) => row.model.task ?? "" },
      { title: "Version", value: (row) => (row.version ? `v${row.version.version}` : "no versions"), numeric: true },
      { title: "Format", value: (row) => row.version?.format ?? "" },
      { title: "Size", value: (row) => (row.version ? bytes(row.version.size_bytes) : ""), numeric: true },
      { title: "State", value: (row) => (row.version ? h("span", { class: row.version.loaded ? "badge ok" : "badge" }, row.version.loaded ? "loaded" : "not loaded") : "") },
      { title: "Serves", value: (row) => policyText(row.model.version_policy) },
      { title: "Sharing", value: (row) => sharingText(row.model.sharing) },
      { title: "Uploaded", value: (row) => when(row.version?.created_at ?? row.model.created_at) },
      { title: "", value: (row) => (row.version ? versionActions(ctx, row.version, load) : "") },
    ], rows, { testid: "models", empty: "No models yet." }));
    replace(names, models.map((model) => h("option", { value: model.name })));
    list.dataset.count = String(models.length);
    list.append(h("p", { class: "muted" }, `${num(models.length)} models, ${num(rows.filter((row) => row.version).length)} versions.`));
  }
  await load();
}
