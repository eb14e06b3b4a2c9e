// Slicing profiles: the printer, filament and quality layers slice requests name (shipped and uploaded).
import { all } from "./api.js";
import { clock, esc } from "./format.js";
import { bindForm, formHtml, post } from "./forms.js";

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
