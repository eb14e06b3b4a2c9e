// Paper and alerts in the panel: quotes (view or download the PDF), a spool's page (what its QR
// label opens: load it on a printer, print its label), orders' and jobs' sheets, and alerts to acknowledge.
import { api, all } from "./api.js";
import { bindForm, formHtml, post } from "./forms.js";
import { partFields, withOnePart } from "./orders.js";

const SIZES = [["62mm", "62 mm tape"], ["50x30", "50×30 mm"], ["a4-3x8", "A4 3×8 sheet"]];

function labelLinks(esc, path, what) {
  return SIZES.map(([size, name]) => `<a href="${esc(path)}?size=${size}" target="_blank" rel="noopener"
      aria-label="${esc(what)} label ${esc(name)} PDF">${esc(name)} PDF</a> ·
    <a href="${esc(path)}?size=${size}&format=png" download aria-label="${esc(what)} label ${esc(name)} PNG">PNG</a>`).join(" · ");
}

function pdfLinks(esc, path, what) {
  return `<a href="${esc(path)}" target="_blank" rel="noopener" aria-label="Show ${esc(what)}">Show PDF</a> ·
    <a href="${esc(path)}?download=1" download aria-label="Download ${esc(what)}">Download</a>`;
}

const QUOTE_FIELDS = [
  { name: "customer", label: "Customer", required: true },
  { name: "reference", label: "Reference" },
];

export async function quotesView({ view, live, guarded, esc, toast }) {
  view.innerHTML = `<h1>Quotes</h1><div class="scroll"><table><thead><tr><th>Number</th><th>Customer</th><th>Status</th>
    <th>Total</th><th>Valid until</th><th>PDF</th></tr></thead><tbody id="quotes"></tbody></table></div>
    <div class="forms" id="quote-forms"></div>`;
  const load = async () => {
    const { items } = await api("GET", "/api/v1/quotes");
    document.getElementById("quotes").innerHTML = items.map((q) => `<tr data-quote="${q.id}">
      <td><a href="#/quote/${q.id}">${esc(q.number)}</a></td><td>${esc(q.customer)}</td><td>${esc(q.status)}</td>
      <td>${q.total.toFixed(2)} ${esc(q.currency)}</td><td>${esc(q.valid_until)}</td>
      <td>${pdfLinks(esc, `/api/v1/quotes/${q.id}/pdf`, `quote ${q.number}`)}</td></tr>`).join("") || "";
  };
  // A quote is a document once numbered: it is drafted here, then sent, accepted or rejected on its page.
  const fields = [...QUOTE_FIELDS, ...partFields(await all("/api/v1/files").catch(() => []))];
  document.getElementById("quote-forms").innerHTML = formHtml("new-quote", "New quote", fields, "Draft quote");
  bindForm(document.getElementById("new-quote"), fields, (v) => post("/api/v1/quotes/drafts")(withOnePart(v, "lines")),
    (q) => { toast(`quote ${q.number} drafted`); guarded(load); });
  await guarded(load);
  live.watch({}, () => guarded(load));
}

export async function quoteView(id, { view, guarded, esc, toast }) {
  const load = async () => {
    const q = await api("GET", `/api/v1/quotes/${encodeURIComponent(id)}`);
    view.innerHTML = `<h1>Quote ${esc(q.number)} <span class="muted" id="status" data-status="${esc(q.status)}">${esc(q.status)}</span></h1>
      <p>${esc(q.customer)} · ${q.total.toFixed(2)} ${esc(q.currency)} · valid until ${esc(q.valid_until)}
      ${q.order_id ? ` · <a href="#/order/${q.order_id}">order #${q.order_id}</a>` : ""}</p>
      <p>${pdfLinks(esc, `/api/v1/quotes/${q.id}/pdf`, `quote ${q.number}`)}</p>
      <div class="scroll"><table><thead><tr><th>Part</th><th>Copies</th><th>Unit price</th><th>Total</th></tr></thead><tbody>
      ${q.lines.map((l) => `<tr><td>${esc(l.description)}</td><td>${l.copies}</td><td>${l.unit_price.toFixed(2)}</td>
        <td>${l.total.toFixed(2)}</td></tr>`).join("")}</tbody></table></div>
      <div class="row"><button id="send">Mark sent</button><button id="accept" class="primary">Accepted: make the order</button>
      <button id="reject">Rejected</button></div>`;
    for (const action of ["send", "accept", "reject"]) {
      document.getElementById(action).onclick = () => guarded(async () => {
        await api("POST", `/api/v1/quotes/${q.id}/${action}`); toast(`quote ${q.number}: ${action}`); await load();
      });
    }
  };
  await guarded(load);
}

export async function spoolView(id, { view, guarded, esc, toast }) {
  const load = async () => {
    const [s, devices] = await Promise.all([api("GET", `/api/v1/spools/${encodeURIComponent(id)}`), all("/api/v1/devices")]);
    const f = s.filament;
    const hex = /^#?[0-9a-f]{6}$/i.test(f.color_hex || "") ? `#${f.color_hex.replace("#", "")}` : "";
    const printers = devices.filter((d) => d.kind !== "render");
    view.innerHTML = `<h1><i class="swatch" id="swatch"></i> Spool #${s.id}</h1>
      <p>${esc(f.material)} ${esc(hex)} ${esc(f.vendor?.name || "")} ${esc(f.name || "")} ·
        <span id="remaining">${Math.round(s.remaining_weight)} g</span> left of ${Math.round(s.initial_weight)} g
        ${s.lot_nr ? ` · lot ${esc(s.lot_nr)}` : ""}</p>
      <p>Loaded on: <span id="loaded-on">${esc(s.loaded_on || "nothing")}</span></p>
      <form class="row" id="load"><label>Printer <select name="device" aria-label="Printer to load">
        ${printers.map((d) => `<option value="${esc(d.ref)}"${d.ref === s.loaded_on ? " selected" : ""}>${esc(d.ref)}</option>`).join("")}
      </select></label><button class="primary" type="submit">Load this spool</button></form>
      <p>Label: ${labelLinks(esc, `/api/v1/labels/spools/${s.id}`, `spool ${s.id}`)}</p>`;
    if (hex) document.getElementById("swatch").style.background = hex;
    document.getElementById("load").onsubmit = (e) => {
      e.preventDefault();
      const ref = new FormData(e.target).get("device");
      guarded(async () => {
        await api("POST", `/api/v1/devices/${ref}/spool`, { spool_id: s.id });
        toast(`spool ${s.id} loaded on ${ref}`); await load();
      });
    };
  };
  await guarded(load);
}

export async function orderView(id, { view, guarded, esc }) {
  const o = await api("GET", `/api/v1/orders/${encodeURIComponent(id)}`);
  view.innerHTML = `<h1>Order #${o.id} <span class="muted">${esc(o.status)}</span></h1>
    <p>${esc(o.customer)}${o.reference ? ` · ${esc(o.reference)}` : ""}</p>
    <p>Production sheet: ${pdfLinks(esc, `/api/v1/orders/${o.id}/sheet`, `production sheet of order ${o.id}`)}</p>
    <p>Box labels: ${labelLinks(esc, `/api/v1/labels/orders/${o.id}`, `order ${o.id}`)}</p>
    <div class="scroll"><table><thead><tr><th>Item</th><th>Copies</th><th>Material</th><th>Jobs</th></tr></thead><tbody>
    ${o.items.map((i) => `<tr data-item="${i.id}"><td>${i.id}</td><td>${i.copies}</td><td>${esc(i.material || "")}</td>
      <td>${i.jobs.map((j) => `<a href="#/job/${j}">#${j}</a>`).join(" ")}</td></tr>`).join("")}</tbody></table></div>`;
}

export async function jobView(id, { view, esc }) {
  const j = await api("GET", `/api/v1/jobs/${encodeURIComponent(id)}`);
  view.innerHTML = `<h1>Job #${j.id} <span class="muted">${esc(j.state)}</span></h1><p>${esc(j.name)}</p>
    <p>Traveller: ${pdfLinks(esc, `/api/v1/jobs/${j.id}/traveller`, `traveller of job ${j.id}`)}</p>`;
}

export async function alertsView({ view, live, guarded, esc, toast }) {
  view.innerHTML = `<h1>Alerts</h1><div class="scroll"><table><thead><tr><th>#</th><th>Severity</th><th>Subject</th><th>Message</th>
    <th>Raised</th><th>Resolved</th><th>Acknowledged</th></tr></thead><tbody id="alerts"></tbody></table></div>`;
  const load = async () => {
    const { items } = await api("GET", "/api/v1/alerts/history");
    const body = document.getElementById("alerts");
    body.innerHTML = items.map((a) => `<tr data-alert="${a.id}" data-open="${a.resolved_at ? "no" : "yes"}">
      <td>${a.id}</td><td>${esc(a.severity)}</td><td>${esc(a.subject)}</td><td>${esc(a.message)}</td>
      <td>${esc(a.created_at.slice(0, 19))}</td><td>${esc((a.resolved_at || "").slice(0, 19))}</td>
      <td>${a.acknowledged_by ? `${esc(a.acknowledged_by)} ${esc(a.acknowledged_at.slice(0, 19))}`
        : `<button data-ack="${a.id}" aria-label="Acknowledge alert ${a.id}">Acknowledge</button>`}</td></tr>`).join("");
    for (const b of body.querySelectorAll("button[data-ack]")) {
      b.onclick = () => guarded(async () => { await api("POST", `/api/v1/alerts/${b.dataset.ack}/ack`); toast("acknowledged"); await load(); });
    }
  };
  await guarded(load);
  live.watch({}, () => guarded(load));
}
