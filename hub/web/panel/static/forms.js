// Forms over the API: fields described once, values sent as JSON, and the API's problem+json
// ("material: String should have at least 1 character; density: ...") shown next to the field it names.
import { api, ApiError } from "./api.js";
import { esc, localInput } from "./format.js";

/**
 * A field: {name, label, type: "text"|"number"|"color"|"password"|"select"|"datetime-local"|"textarea"|"checkbox",
 * options: [[value, label]], required, step, min, value, help, parse: (text) => value (e.g. a comma-separated list)}.
 * `value` is what the form shows at first: an edit form sends only the fields that differ from it.
 */
function fieldHtml(formId, f) {
  const id = `${formId}-${f.name}`;
  const common = `id="${id}" name="${esc(f.name)}" aria-describedby="${id}-error"${f.required ? " required" : ""}`;
  let input;
  if (f.type === "select") {
    input = `<select ${common}>${(f.options || []).map(([v, l]) =>
      `<option value="${esc(v)}"${String(v) === String(f.value ?? "") ? " selected" : ""}>${esc(l ?? v)}</option>`).join("")}</select>`;
  } else if (f.type === "checkbox") {
    input = `<input type="checkbox" ${common}${f.value ? " checked" : ""}>`;
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

export function formHtml(id, title, fields, submit = "Save", { cancel = false } = {}) {
  return `<form class="stack resource-form" id="${id}" novalidate aria-label="${esc(title)}">
    <h2>${esc(title)}</h2>${fields.map((f) => `<div class="field${f.type === "checkbox" ? " check" : ""}">${fieldHtml(id, f)}</div>`).join("")}
    <span class="field-error form-error" data-for="" role="alert"></span>
    <div class="row"><button class="primary" type="submit">${esc(submit)}</button>
    ${cancel ? `<button type="button" data-cancel>Cancel</button>` : ""}</div></form>`;
}

// A field's value as the API takes it: numbers as numbers, times in UTC, an empty field as null.
function read(el, f) {
  if (f.type === "checkbox") return el.checked;
  const raw = el.value.trim();
  if (f.parse) return f.parse(raw);
  if (raw === "") return null;
  return f.type === "number" ? Number(raw) : f.type === "datetime-local" ? new Date(raw).toISOString() : raw;
}

// `fields` showing `record`'s values, as an edit form starts (colours and times as their inputs write them).
export function filled(fields, record) {
  return fields.map((f) => {
    const v = record[f.name];
    const value = f.type === "color" ? `#${String(v || "000000").replace("#", "").toLowerCase()}`
      : f.type === "datetime-local" ? localInput(v) : Array.isArray(v) ? v.join(", ") : v ?? "";
    return { ...f, value };
  });
}

// A new resource: every field filled in; empty ones left out, so the API's defaults apply.
export function values(form, fields) {
  const out = {};
  for (const f of fields) {
    const v = read(form.elements[f.name], f);
    if (v !== null) out[f.name] = v;
  }
  return out;
}

// A change: the fields that differ from what the form showed; one emptied is sent as null (cleared).
export function changes(form, fields) {
  const out = {};
  for (const f of fields) {
    const el = form.elements[f.name];
    const shown = f.type === "checkbox" ? Boolean(f.value) : String(f.value ?? "").trim();
    if ((f.type === "checkbox" ? el.checked : el.value.trim()) !== shown) out[f.name] = read(el, f);
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

/**
 * Wire `form`: on submit, `send(read(form, fields))` runs (`values`, or `changes` for an edit); an API error
 * lands next to its field, success calls `done`.
 */
export function bindForm(form, fields, send, done, read = values) {
  form.onsubmit = async (e) => {
    e.preventDefault();
    showErrors(form, "");
    try {
      const result = await send(read(form, fields));
      done?.(result);
    } catch (err) {
      if (err instanceof ApiError && err.status >= 400 && err.status < 500 && err.status !== 401) {
        showErrors(form, err.message);
      } else throw err;
    }
  };
}

export const post = (path) => (body) => api("POST", path, body);
export const patch = (path) => (body) => api("PATCH", path, body);

/**
 * An edit form for one resource in `slot`, filled with its values (`fields`' `value`): Save sends only what
 * changed, and the form closes on success or Cancel.
 */
export function openEditor(slot, { id, title, fields, send, done }) {
  slot.innerHTML = formHtml(id, title, fields, "Save", { cancel: true });
  const form = document.getElementById(id);
  form.querySelector("[data-cancel]").onclick = () => { slot.innerHTML = ""; };
  bindForm(form, fields, send, (result) => { slot.innerHTML = ""; done?.(result); }, changes);
  form.scrollIntoView({ block: "nearest" });
  form.elements[fields[0].name].focus();
}

// "a, b ,c" -> ["a", "b", "c"]
export const list = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);
