// Small DOM helpers: elements are built with textContent, never from HTML strings.

/** An element: `h("a", { href: "#/", class: "x", onclick }, "text", child)`. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of `element`. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

/**
 * A table: `columns` are `{ title, value: (row) => text or Node, numeric }`; `testid` names it for tests.
 * An empty list shows `empty`.
 */
export function table(columns, rows, { testid, empty = "Nothing yet." } = {}) {
  if (rows.length === 0) return h("p", { class: "muted", "data-testid": testid && `${testid}-empty` }, empty);
  return h("table", { "data-testid": testid },
    h("thead", {}, h("tr", {}, columns.map((column) => h("th", { class: column.numeric ? "num" : null }, column.title)))),
    h("tbody", {}, rows.map((row) => h("tr", {},
      columns.map((column) => h("td", { class: column.numeric ? "num" : null }, column.value(row)))))));
}

let toastTimer = null;

/** Shows `message` for a few seconds (`error` in red). */
export function toast(message, { error = false } = {}) {
  const box = document.getElementById("toast");
  box.textContent = message;
  box.className = error ? "show error" : "show";
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.className = ""; }, error ? 8000 : 4000);
}

/** Runs `action`, showing its error (the API's message) instead of throwing. */
export async function attempt(action) {
  try {
    return await action();
  } catch (error) {
    toast(error.message ?? String(error), { error: true });
    return undefined;
  }
}

/** A boxed error message for a page that could not load. */
export function failureBox(error) {
  return h("div", { class: "failure", "data-testid": "failure" }, h("strong", {}, error.code ?? "error"), ": ", error.message ?? String(error));
}

const number = new Intl.NumberFormat("en", { maximumFractionDigits: 2 });

/** `1234.5` as `1,234.5`; `null` as `–`. */
export function num(value) {
  return value === null || value === undefined || Number.isNaN(value) ? "–" : number.format(value);
}

/** Bytes in binary units. */
export function bytes(value) {
  if (value === null || value === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let scaled = value;
  let unit = 0;
  while (scaled >= 1024 && unit < units.length - 1) { scaled /= 1024; unit += 1; }
  return `${number.format(scaled)} ${units[unit]}`;
}

/** Unix seconds (as the API writes times), or an ISO string, as `YYYY-MM-DD HH:MM:SS` UTC. */
export function when(value) {
  if (value === null || value === undefined) return "–";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toISOString().replace("T", " ").slice(0, 19);
}

/** A labelled form field. */
export function field(label, input) {
  return h("label", { class: "field" }, h("span", {}, label), input);
}

/** Saves `text` as a file named `name`. */
export function saveFile(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = h("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
