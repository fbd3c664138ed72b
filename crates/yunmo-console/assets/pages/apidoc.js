// The API page: every operation of the OpenAPI document the server serves (no key needed), with its
// parameters and request and response shapes.

import { h, replace, failureBox } from "../ui.js";

const METHODS = ["get", "post", "put", "patch", "delete"];

/** A schema as a short type: `string`, `ModelDto`, `array of KeySchema`, `{ name, limits? }`. */
function typeOf(schema, depth = 0) {
  if (!schema) return "any";
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.oneOf || schema.anyOf) return (schema.oneOf ?? schema.anyOf).map((item) => typeOf(item, depth)).join(" | ");
  if (schema.allOf) return schema.allOf.map((item) => typeOf(item, depth)).join(" & ");
  const types = [].concat(schema.type ?? "object");
  const main = types.filter((type) => type !== "null");
  const nullable = types.includes("null") ? " | null" : "";
  if (main[0] === "array") return `array of ${typeOf(schema.items, depth)}${nullable}`;
  if (main[0] === "object" && schema.properties && depth < 1) {
    const required = new Set(schema.required ?? []);
    return `{ ${Object.entries(schema.properties).map(([name, value]) => `${name}${required.has(name) ? "" : "?"}: ${typeOf(value, depth + 1)}`).join(", ")} }${nullable}`;
  }
  return `${main.join(" | ") || "object"}${schema.format ? ` (${schema.format})` : ""}${nullable}`;
}

/** A component schema's properties as a table, in a disclosure. */
function schemaDetails(name, schema) {
  const required = new Set(schema.required ?? []);
  const properties = Object.entries(schema.properties ?? {});
  const allOf = schema.allOf ? h("p", {}, `All of: ${schema.allOf.map((item) => typeOf(item)).join(", ")}`) : "";
  return h("details", { id: `schema-${name}` },
    h("summary", {}, h("code", {}, name), schema.description ? ` — ${schema.description.split("\n")[0]}` : ""),
    allOf,
    properties.length ? h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Field"), h("th", {}, "Type"), h("th", {}, "Description"))),
      h("tbody", {}, properties.map(([field, value]) => h("tr", {},
        h("td", {}, h("code", {}, field), required.has(field) ? " *" : ""),
        h("td", {}, h("code", {}, typeOf(value))),
        h("td", {}, value.description ?? ""))))) : (schema.oneOf ? h("p", {}, `One of: ${typeOf(schema)}`) : ""));
}

function bodyText(content) {
  if (!content) return "";
  return Object.entries(content).map(([type, value]) => `${type}: ${typeOf(value.schema)}`).join("; ");
}

function operation(path, method, op) {
  const parameters = op.parameters ?? [];
  return h("section", { class: "card op", "data-testid": "operation", id: op.operationId },
    h("h3", {}, h("span", { class: `method ${method}` }, method.toUpperCase()), " ", h("code", {}, path)),
    h("p", {}, op.summary ?? op.description ?? ""),
    parameters.length ? h("p", {}, h("strong", {}, "Parameters: "), parameters.map((parameter, i) => [i ? ", " : "",
      h("code", { title: parameter.description ?? "" }, `${parameter.name}${parameter.required ? "" : "?"}`), ` (${parameter.in}, ${typeOf(parameter.schema)})`])) : "",
    op.requestBody ? h("p", {}, h("strong", {}, "Request: "), h("code", {}, bodyText(op.requestBody.content))) : "",
    h("ul", { class: "responses" }, Object.entries(op.responses ?? {}).map(([status, response]) =>
      h("li", {}, h("code", {}, status), " ", response.description ?? "", response.content ? [" — ", h("code", {}, bodyText(response.content))] : ""))));
}

export async function render(root) {
  const response = await fetch("/api/v1/openapi.json");
  if (!response.ok) {
    replace(root, failureBox({ code: `http_${response.status}`, message: "the OpenAPI document could not be read" }));
    return;
  }
  const doc = await response.json();
  const filter = h("input", { type: "search", placeholder: "filter by path or text", size: 40, "data-testid": "api-filter" });
  const operations = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const method of METHODS) if (item[method]) operations.push({ path, method, element: operation(path, method, item[method]) });
  }
  const list = h("div", {}, operations.map((entry) => entry.element));
  filter.addEventListener("input", () => {
    const text = filter.value.toLowerCase();
    for (const entry of operations) entry.element.hidden = text !== "" && !entry.element.textContent.toLowerCase().includes(text);
  });
  const schemas = Object.entries(doc.components?.schemas ?? {});
  replace(root,
    h("h1", {}, doc.info?.title ?? "API"),
    h("p", { class: "muted" }, `${doc.info?.description?.split("\n")[0] ?? ""} Version ${doc.info?.version ?? ""}. `,
      h("a", { href: "/api/v1/openapi.json" }, "openapi.json"), ` · ${operations.length} operations, ${schemas.length} schemas.`),
    filter, list,
    h("h2", {}, "Schemas"), schemas.map(([name, schema]) => schemaDetails(name, schema)));
}
