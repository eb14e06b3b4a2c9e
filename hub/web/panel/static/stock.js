// Stock: materials (filaments), spools, and loading a spool on a printer.
import { api, all } from "./api.js";
import { esc, grams } from "./format.js";
import { bindForm, filled, formHtml, openEditor, patch, post } from "./forms.js";

const MATERIAL_FIELDS = [
  { name: "material", label: "Material", required: true, placeholder: "PLA", help: "type, e.g. PLA, PETG" },
  { name: "name", label: "Name", placeholder: "Signal Orange" },
  { name: "color_hex", label: "Colour", type: "color", value: "#ff6600" },
  { name: "density", label: "Density (g/cm³)", type: "number", step: "0.01", value: "1.24", required: true },
  { name: "diameter", label: "Diameter (mm)", type: "number", step: "0.01", value: "1.75" },
  { name: "weight", label: "Net weight of a spool (g)", type: "number", value: "1000" },
  { name: "price", label: "Price of a spool", type: "number", step: "0.01" },
];

function spoolFields(filaments) {
  return [
    { name: "filament_id", label: "Material", type: "select", required: true,
      options: filaments.map((f) => [f.id, `${f.material} ${f.name || ""}`.trim()]) },
    { name: "initial_weight", label: "Net weight (g)", type: "number", help: "default: the material's" },
    { name: "used_weight", label: "Already used (g)", type: "number", value: "0" },
    { name: "location", label: "Location", placeholder: "shelf A" },
  ];
}

// Editing a spool: weighed again, moved, or put away (archived: no longer offered for loading).
function spoolEditFields(filaments) {
  return [...spoolFields(filaments).map(({ help, ...f }) => f),
    { name: "archived", label: "Archived (used up or put away)", type: "checkbox" }];
}

const editButton = (what, id) => `<button data-edit="${what}" data-id="${id}" aria-label="Edit ${what} ${id}">Edit</button>`;

function loadFields(spools, devices) {
  return [
    { name: "spool_id", label: "Spool", type: "select", required: true,
      options: spools.map((s) => [s.id, `#${s.id} ${s.filament.material} ${s.filament.name || ""} · ${grams(s.remaining_weight)}`]) },
    { name: "device", label: "Printer", type: "select", required: true,
      options: devices.map((d) => [d.ref, d.ref]) },
  ];
}

function swatch(hex) { return `<i class="swatch" data-color="${esc(hex || "")}"></i>`; }

export function paintSwatches(root) {
  for (const s of root.querySelectorAll(".swatch[data-color]")) {
    const c = s.dataset.color;
    if (c) s.style.background = c.startsWith("#") ? c : `#${c}`;
  }
}

export async function stockView({ view, live, guarded, toast }) {
  view.innerHTML = `<h1>Stock</h1>
    <section><h2>Spools</h2><div class="scroll"><table><thead><tr><th>#</th><th>Material</th><th>Left</th>
      <th>Used</th><th>Location</th><th>On</th><th class="actions"></th></tr></thead><tbody id="spools"></tbody></table></div></section>
    <div class="forms" id="stock-edit"></div>
    <div class="forms" id="stock-forms"></div>
    <section><h2>Materials</h2><div class="scroll"><table><thead><tr><th>#</th><th>Material</th><th>Name</th>
      <th>Density</th><th>Diameter</th><th>Spool</th><th>Price</th><th class="actions"></th></tr></thead><tbody id="filaments"></tbody>
      </table></div></section>`;
  let filaments = [], spools = [];
  const again = (what) => () => guarded(async () => { await load(); toast(what); });
  const load = async () => {
    let devices;
    [filaments, spools, devices] = await Promise.all([all("/api/v1/filaments"), all("/api/v1/spools"),
      all("/api/v1/devices")]);
    const on = new Map(devices.filter((d) => d.material).map((d) => [d.material.spool_id, d.ref]));
    document.getElementById("spools").innerHTML = spools.map((s) => `<tr data-spool="${s.id}">
      <td>${s.id}</td><td>${swatch(s.filament.color_hex)} ${esc(s.filament.material)} ${esc(s.filament.name || "")}</td>
      <td class="left">${grams(s.remaining_weight)}</td><td>${grams(s.used_weight)}</td><td>${esc(s.location || "")}</td>
      <td>${s.archived ? "archived" : esc(on.get(s.id) || "")}</td><td class="actions">${editButton("spool", s.id)}</td></tr>`).join("")
      || `<tr><td colspan="7">no spools yet</td></tr>`;
    document.getElementById("filaments").innerHTML = filaments.map((f) => `<tr><td>${f.id}</td>
      <td>${swatch(f.color_hex)} ${esc(f.material)}</td><td>${esc(f.name || "")}</td><td>${f.density} g/cm³</td>
      <td>${f.diameter} mm</td><td>${grams(f.weight)}</td><td>${f.price ?? ""}</td><td class="actions">${editButton("material", f.id)}</td>
      </tr>`).join("") || `<tr><td colspan="8">no materials yet</td></tr>`;
    paintSwatches(view);
    const forms = document.getElementById("stock-forms");
    const sf = spoolFields(filaments);
    const lf = loadFields(spools.filter((s) => !s.archived), devices.filter((d) => d.kind !== "blender"));
    forms.innerHTML = formHtml("new-material", "New material", MATERIAL_FIELDS, "Add material")
      + formHtml("new-spool", "New spool", sf, "Add spool") + formHtml("load-spool", "Load a spool", lf, "Load");
    bindForm(document.getElementById("new-material"), MATERIAL_FIELDS, post("/api/v1/filaments"), again("material added"));
    bindForm(document.getElementById("new-spool"), sf, post("/api/v1/spools"), again("spool added"));
    bindForm(document.getElementById("load-spool"), lf,
      (v) => api("POST", `/api/v1/devices/${v.device}/spool`, { spool_id: Number(v.spool_id) }), again("spool loaded"));
  };
  // The editor lives outside what `load` redraws, so a live update does not wipe a change being typed.
  const slot = document.getElementById("stock-edit");
  const onEdit = (e) => {
    const { edit, id } = e.target.dataset;
    if (edit === "material") {
      const f = filaments.find((x) => String(x.id) === id);
      openEditor(slot, { id: "edit-material", title: `Edit material ${id}`, fields: filled(MATERIAL_FIELDS, f),
        send: patch(`/api/v1/filaments/${id}`), done: again(`material ${id} saved`) });
    } else if (edit === "spool") {
      const s = spools.find((x) => String(x.id) === id);
      openEditor(slot, { id: "edit-spool", title: `Edit spool ${id}`,
        fields: filled(spoolEditFields(filaments), { ...s, filament_id: s.filament.id }),
        send: patch(`/api/v1/spools/${id}`), done: again(`spool ${id} saved`) });
    }
  };
  document.getElementById("spools").onclick = onEdit;
  document.getElementById("filaments").onclick = onEdit;
  await guarded(load);
  live.watch({ spools: () => {}, stock: () => {} }, () => guarded(load));
}
