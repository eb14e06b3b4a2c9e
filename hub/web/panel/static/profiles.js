// Profiles: the slicing layers (printer, filament, quality) slice requests name, shipped and uploaded; and a
// printer's own profile (nozzle, tags, whether it clears its bed), edited on its device page.
import { all, api } from "./api.js";
import { clock, esc } from "./format.js";
import { bindForm, filled, formHtml, list, post } from "./forms.js";

const PRINTER_FIELDS = [
  { name: "nozzle_diameter", label: "Nozzle (mm)", type: "number", step: "0.05", help: "empty: the machine model's" },
  { name: "tags", label: "Tags", help: "comma-separated groups a job can ask for", parse: list },
  { name: "auto_eject", label: "Clears its own bed", type: "checkbox" },
];

/** The printer profile form of device `ref` in `slot`; with a "bed is clear" button while it waits for one. */
export async function printerProfile(ref, slot, { guarded, toast }) {
  const path = `/api/v1/devices/${ref}/profile`;
  const p = await api("GET", path);
  const fields = filled(PRINTER_FIELDS, p);
  slot.innerHTML = formHtml("printer-profile", "Printer profile", fields, "Save profile")
    + (p.awaiting_bed_clear ? `<button id="bed-cleared" class="primary">Bed is clear: take the next job</button>` : "");
  // PUT replaces the profile: every field goes, an empty nozzle as the model's.
  bindForm(document.getElementById("printer-profile"), fields, (v) => api("PUT", path, v),
    () => { toast("profile saved"); guarded(() => printerProfile(ref, slot, { guarded, toast })); });
  const cleared = document.getElementById("bed-cleared");
  if (cleared) {
    cleared.onclick = () => guarded(async () => {
      await api("POST", `/api/v1/devices/${ref}/bed-cleared`); toast("bed cleared"); await printerProfile(ref, slot, { guarded, toast });
    });
  }
}

const FIELDS = [
  { name: "kind", label: "Layer", type: "select", value: "printer",
    options: [["printer", "printer (a machine model)"], ["filament", "filament"], ["quality", "quality"]] },
  { name: "name", label: "Profile name", required: true, placeholder: "prusa-mk4", help: "lower case, digits, . _ -" },
  { name: "ini", label: "Settings", type: "textarea", required: true, placeholder: "bed_shape = 0x0,250x0,250x210,0x210" },
];

export async function profilesView({ view, live, guarded, toast }) {
  view.innerHTML = `<h1>Slicing profiles</h1><div class="scroll"><table><thead><tr><th>Profile</th><th>Layer</th>
    <th>Source</th><th>Settings</th><th>Added</th></tr></thead><tbody id="profiles"></tbody></table></div>
    <div class="forms">${formHtml("new-profile", "New profile", FIELDS, "Add profile")}</div>`;
  const load = async () => {
    document.getElementById("profiles").innerHTML = (await all("/api/v1/slicing-profiles")).map((p) =>
      `<tr data-profile="${esc(p.id)}"><td>${esc(p.name)}</td><td>${esc(p.kind)}</td><td>${esc(p.source)}</td>
      <td>${p.keys ?? ""}</td><td>${esc(clock(p.created_at))}</td></tr>`).join("");
  };
  bindForm(document.getElementById("new-profile"), FIELDS, post("/api/v1/slicing-profiles"),
    (p) => { toast(`profile ${p.id} added`); guarded(load); });
  await guarded(load);
  live.watch({ "slicing-profiles": () => guarded(load) }, () => guarded(load));
}
