// Forms over the API: fields described once, values sent as JSON, and the API's problem+json
// ("material: String should have at least 1 character; density: ...") shown next to the field it names.
import { api, ApiError } from "./api.js";
import { esc } from "./format.js";

/**
 * A field: {name, label, type: "text"|"number"|"color"|"password"|"select"|"datetime-local"|"textarea",
 * options: [[value, label]], required, step, min, value, help}.
 */
function fieldHtml(formId, f) {
  const id = `${formId}-${f.name}`;
  const common = `id="${id}" name="${esc(f.name)}" aria-describedby="${id}-error"${f.required ? " required" : ""}`;
  let input;
  if (f.type === "select") {
    input = `<select ${common}>${(f.options || []).map(([v, l]) =>
      `<option value="${esc(v)}"${String(v) === String(f.value ?? "") ? " selected" : ""}>${esc(l ?? v)}</option>`).join("")}</select>`;
  } else if (f.type === "textarea") {
    input = `<textarea ${common}>${esc(f.value ?? "")}</textarea>`;
  } else {
    const extra = ["step", "min", "max", "placeholder", "autocomplete"].filter((k) => f[k] != null)
      .map((k) => ` ${k}="${esc(f[k])}"`).join("");
    input = `<input type="${f.type || "text"}" ${common} value="${esc(f.value ?? "")}"${extra}>`;
  }
  return `<label for="${id}">${esc(f.label)}${f.help ? ` <span class="muted">${esc(f.help)}</span>` : ""}</label>
    ${input}<span class="field-error" id="${id}-error" data-for="${esc(f.name)}" role="alert"></span>`;
}

export function formHtml(id, title, fields, submit = "Save") {
  return `<form class="stack resource-form" id="${id}" novalidate aria-label="${esc(title)}">
    <h2>${esc(title)}</h2>${fields.map((f) => `<div class="field">${fieldHtml(id, f)}</div>`).join("")}
    <span class="field-error form-error" data-for="" role="alert"></span>
    <button class="primary" type="submit">${esc(submit)}</button></form>`;
}

// The values as typed: numbers as numbers, empty fields left out (so the API's defaults apply).
export function values(form, fields) {
  const out = {};
  for (const f of fields) {
    const el = form.elements[f.name];
    const raw = el.value.trim();
    if (raw === "") continue;
    out[f.name] = f.type === "number" ? Number(raw) : f.type === "datetime-local" ? new Date(raw).toISOString() : raw;
  }
  return out;
}

// "items.0.copies: Input should be ... (got 0); name: Field required" -> {"items.0.copies": "...", name: "..."}
export function fieldErrors(detail) {
  const found = {};
  for (const part of String(detail || "").split("; ")) {
    const m = part.match(/^([A-Za-z_][\w.]*)(?: \([\w]+\))?: (.+)$/);
    if (m) found[m[1].replace(/^body\./, "")] = m[2]; else found[""] = [found[""], part].filter(Boolean).join("; ");
  }
  return found;
}

export function showErrors(form, detail) {
  const names = [...form.querySelectorAll(".field-error[data-for]")].map((e) => e.dataset.for).filter(Boolean);
  for (const e of form.querySelectorAll(".field-error")) e.textContent = "";
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  for (const [loc, msg] of Object.entries(fieldErrors(detail))) {
    // The field itself, or the nearest one the form has ("items.0.copies" -> "copies", "items").
    const name = [loc, loc.split(".").pop(), loc.split(".")[0]].find((n) => names.includes(n)) ?? "";
    const slot = form.querySelector(`.field-error[data-for="${CSS.escape(name)}"]`);
    slot.textContent = [slot.textContent, msg].filter(Boolean).join("; ");
    if (name) form.elements[name]?.setAttribute("aria-invalid", "true");
  }
}

/** Wire `form`: on submit, `send(values)` runs; an API error lands next to its field, success calls `done`. */
export function bindForm(form, fields, send, done) {
  form.onsubmit = async (e) => {
    e.preventDefault();
    showErrors(form, "");
    try {
      const result = await send(values(form, fields));
      done?.(result);
    } catch (err) {
      if (err instanceof ApiError && err.status >= 400 && err.status < 500 && err.status !== 401) {
        showErrors(form, err.message);
      } else throw err;
    }
  };
}

export const post = (path) => (body) => api("POST", path, body);
