// Alerts: those raised (acknowledge them), and the threshold rules that raise them, which operators edit
// here as one list (PUT /api/v1/alert-rules takes the whole list; a refusal names "rules.<index>.<field>").
import { api } from "./api.js";
import { clock, esc } from "./format.js";
import { bindForm, fieldHtml, filled, values } from "./forms.js";

// Each kind's threshold, in words and units; heater and metric belong to one kind each.
const KINDS = {
  heater_off_target: "°C between a heater and its target",
  silence: "s without news from a device",
  print_overrun: "% a print runs past its estimate",
  host_metric: "the node's reading, in its unit",
  render_stalled: "s a render task delivers no frame",
};
const METRICS = ["cpu_temp_c", "cpu_pct", "mem_pct", "disk_pct", "load1", "outbox_depth"];
const NEW_RULE = { kind: "silence", threshold: "", for_s: 0, severity: "warning", subjects: "*" };

// Rule `i`'s fields, named by where the API's errors point ("rules.2.threshold").
function ruleFields(i, rule) {
  const fields = [
    { name: "name", label: "Name", required: true, placeholder: "nozzle-hot", autocomplete: "off" },
    { name: "kind", label: "Kind", type: "select", options: Object.keys(KINDS).map((k) => [k, k.replaceAll("_", " ")]) },
    ...(rule.kind === "heater_off_target" ? [{ name: "heater", label: "Heater", placeholder: "any", help: "T0, B…" }] : []),
    ...(rule.kind === "host_metric" ? [{ name: "metric", label: "Metric", type: "select",
      options: METRICS.map((m) => [m, m]) }] : []),
    { name: "threshold", label: "Threshold", type: "number", step: "any", required: true, help: KINDS[rule.kind] },
    { name: "for_s", label: "For (s)", type: "number", step: "any", min: "0", help: "held this long first" },
    { name: "severity", label: "Severity", type: "select", options: ["info", "warning", "critical"].map((s) => [s, s]) },
    { name: "subjects", label: "Subjects", placeholder: "*", help: "pattern on node/device" },
  ];
  return filled(fields, rule).map((f) => ({ ...f, name: `rules.${i}.${f.name}` }));
}

function ruleHtml(i, rule) {
  const n = i + 1;
  return `<fieldset class="rule" aria-label="Rule ${n}"><legend>Rule ${n}</legend>
    ${ruleFields(i, rule).map((f) => `<div class="field">${fieldHtml("alert-rules", f)}</div>`).join("")}
    <span class="field-error" data-for="rules.${i}" role="alert"></span>
    <button type="button" data-remove="${i}" aria-label="Remove rule ${n}">Remove</button></fieldset>`;
}

function rulesEditor(slot, { guarded, toast, editable }) {
  let rules = [];
  const form = () => document.getElementById("alert-rules");
  // What the rows show now, as the API takes it (a field left empty: the API's default).
  const typed = () => rules.map((rule, i) => Object.fromEntries(Object.entries(values(form(), ruleFields(i, rule)))
    .map(([name, v]) => [name.split(".").pop(), v])));
  const draw = () => {
    slot.innerHTML = `<form class="resource-form rules" id="alert-rules" novalidate aria-label="Alert rules">
      <h2>Rules</h2>${editable ? "" : `<p class="muted">Operators change the rules.</p>`}
      <fieldset class="plain"${editable ? "" : " disabled"}>
      ${rules.map((r, i) => ruleHtml(i, r)).join("") || `<p class="muted">No rules: nothing is raised but low stock.</p>`}
      <span class="field-error form-error" data-for="rules" role="alert"></span>
      <span class="field-error form-error" data-for="" role="alert"></span>
      <div class="row"><button type="button" id="add-rule">Add rule</button>
        <button class="primary" type="submit">Save rules</button></div></fieldset></form>`;
    const f = form();
    f.querySelector("#add-rule").onclick = () => { rules = [...typed(), { ...NEW_RULE }]; draw(); };
    f.onclick = (e) => {
      const i = e.target.dataset.remove;
      if (i !== undefined) { rules = typed().filter((_, j) => j !== Number(i)); draw(); }
    };
    // Another kind has other fields (a heater, a metric) and another threshold unit.
    f.onchange = (e) => { if (e.target.name?.endsWith(".kind")) { rules = typed(); draw(); } };
    bindForm(f, null, () => api("PUT", "/api/v1/alert-rules", { rules: typed() }),
      (saved) => { rules = saved.rules; draw(); toast("alert rules saved"); }, () => null);
  };
  return guarded(async () => { rules = (await api("GET", "/api/v1/alert-rules")).rules; draw(); });
}

export async function alertsView({ view, live, guarded, toast, me }) {
  view.innerHTML = `<h1>Alerts</h1><div class="scroll"><table><thead><tr><th>#</th><th>Severity</th><th>Subject</th><th>Message</th>
    <th>Raised</th><th>Resolved</th><th>Acknowledged</th></tr></thead><tbody id="alerts"></tbody></table></div>
    <div id="rules-slot"></div>`;
  const load = async () => {
    const { items } = await api("GET", "/api/v1/alerts/history");
    const body = document.getElementById("alerts");
    body.innerHTML = items.map((a) => `<tr data-alert="${a.id}" data-open="${a.resolved_at ? "no" : "yes"}">
      <td>${a.id}</td><td>${esc(a.severity)}</td><td>${esc(a.subject)}</td><td>${esc(a.message)}</td>
      <td>${esc(clock(a.created_at))}</td><td>${esc(clock(a.resolved_at))}</td>
      <td>${a.acknowledged_by ? `${esc(a.acknowledged_by)} ${esc(clock(a.acknowledged_at))}`
        : `<button data-ack="${a.id}" aria-label="Acknowledge alert ${a.id}">Acknowledge</button>`}</td></tr>`).join("")
      || `<tr><td colspan="7">no alerts yet</td></tr>`;
    for (const b of body.querySelectorAll("button[data-ack]")) {
      b.onclick = () => guarded(async () => { await api("POST", `/api/v1/alerts/${b.dataset.ack}/ack`); toast("acknowledged"); await load(); });
    }
  };
  await guarded(load);
  // The API lets operators and admins replace the rules; viewers see them.
  await rulesEditor(document.getElementById("rules-slot"), { guarded, toast, editable: me?.role !== "viewer" });
  live.watch({}, () => guarded(load));
}
