// Sign-in: the key stays in this tab's sessionStorage and is sent as `Authorization: Bearer`.

import { api, session, ApiError } from "../api.js";
import { h, replace, field } from "../ui.js";

export async function render(root, ctx) {
  const input = h("input", { type: "password", name: "key", autocomplete: "off", placeholder: "ym_…", size: 48, "data-testid": "key" });
  const message = h("p", { class: "error", "data-testid": "signin-error" });
  const form = h("form", { class: "card narrow", "data-testid": "signin" },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "With an API key. It is kept in this tab only and sent with each request; what you see follows its scopes and tenant."),
    field("API key", input),
    h("button", { type: "submit" }, "Sign in"),
    message);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    session.set(input.value.trim());
    try {
      await api("/api/v1/whoami");
      ctx.signedIn();
      location.hash = "#/overview";
    } catch (error) {
      session.clear();
      message.textContent = error instanceof ApiError && error.status === 401 ? `Refused: ${error.message}` : error.message;
    }
  });
  replace(root, form);
  input.focus();
}
