// Orders: take one (customer, stages, items from uploaded files), follow its jobs, sign its stages off.
import { api, all } from "./api.js";
import { clock, esc } from "./format.js";
import { bindForm, filled, formHtml, list, openEditor, patch, post } from "./forms.js";

const ORDER_FIELDS = [
  { name: "customer", label: "Customer", required: true },
  { name: "reference", label: "Reference" },
  { name: "deadline", label: "Deadline", type: "datetime-local" },
  { name: "stages", label: "Stages after printing", value: "support_removal, qc, packed, shipped",
    help: "comma-separated", parse: list },
];
// What a taken order may still change: its items are jobs already.
const EDIT_FIELDS = [...ORDER_FIELDS,
  { name: "price", label: "Agreed price", type: "number", step: "0.01", min: "0", help: "empty: the sum of the quotes" },
  { name: "notes", label: "Notes", type: "textarea" }];

// One part of an order or a quote: an uploaded file, copies, material.
export function partFields(files) {
  return [
    { name: "file_sha256", label: "Part", type: "select", required: true,
      options: [["", "choose an uploaded file"], ...files.map((f) => [f.sha256, f.name])] },
    { name: "copies", label: "Copies", type: "number", value: "1", min: "1" },
    { name: "material", label: "Material", placeholder: "PLA" },
  ];
}

// The form is flat; the API takes a list of parts (an order's `items`, a quote's `lines`).
export function withOnePart(v, key) {
  const { file_sha256, copies, material, ...rest } = v;
  return { ...rest, [key]: [{ file_sha256: file_sha256 || "", copies: copies ?? 1, ...(material ? { material } : {}) }] };
}

const nextStage = (o) => o.stages[o.stages_done.length];

function row(o) {
  const jobs = Object.entries(o.jobs).map(([s, n]) => `${n} ${s}`).join(", ");
  const stages = o.stages.map((s, i) => {
    const done = o.stages_done[i];
    return `<span class="stage${done ? " done" : ""}" title="${done ? esc(`${done.by}, ${clock(done.at)}`) : ""}">${esc(s)}</span>`;
  }).join(" → ");
  const next = nextStage(o);
  const sign = next && ["printed", "post-processing"].includes(o.status) ? `<button data-order="${o.id}" data-stage="${esc(next)}"
    aria-label="Sign off ${esc(next)} for order ${o.id}">Sign off ${esc(next)}</button>` : "";
  return `<tr data-order="${o.id}" data-status="${esc(o.status)}"><td>${o.id}</td><td>${esc(o.customer)}
    <div class="muted">${esc(o.reference || "")}</div></td><td class="status">${esc(o.status)}</td><td>${esc(jobs)}</td>
    <td class="stages">${stages}</td><td>${o.cost.cost.toFixed(2)} ${esc(o.cost.currency)}</td>
    <td>${esc(clock(o.deadline))}</td><td class="actions">${sign}${o.status === "cancelled" ? "" : ` <button
    data-edit="${o.id}" aria-label="Edit order ${o.id}">Edit</button>`}</td></tr>`;
}

export async function ordersView({ view, live, guarded, toast }) {
  view.innerHTML = `<h1>Orders</h1><div class="scroll"><table><thead><tr><th>#</th><th>Customer</th><th>Status</th>
    <th>Jobs</th><th>Stages</th><th>Cost</th><th>Deadline</th><th class="actions"></th></tr></thead><tbody id="orders"></tbody></table></div>
    <div class="forms" id="order-edit"></div><div class="forms" id="order-forms"></div>`;
  const body = document.getElementById("orders");
  let orders = [];
  const load = async () => {
    orders = (await all("/api/v1/orders")).reverse();
    body.innerHTML = orders.map(row).join("") || `<tr><td colspan="8">no orders yet</td></tr>`;
  };
  const files = await all("/api/v1/files").catch(() => []);
  const fields = [...ORDER_FIELDS, ...partFields(files)];
  document.getElementById("order-forms").innerHTML = formHtml("new-order", "New order", fields, "Take order");
  bindForm(document.getElementById("new-order"), fields, (v) => post("/api/v1/orders")(withOnePart(v, "items")),
    (o) => guarded(async () => { await load(); toast(`order ${o.id} taken`); }));
  body.onclick = (e) => {
    const { order, stage, edit } = e.target.dataset;
    const o = orders.find((x) => String(x.id) === edit);
    if (o) {
      openEditor(document.getElementById("order-edit"), { id: "edit-order", title: `Edit order ${o.id}`,
        fields: filled(EDIT_FIELDS, { ...o, price: o.cost.price }), send: patch(`/api/v1/orders/${o.id}`),
        done: () => guarded(async () => { await load(); toast(`order ${o.id} saved`); }) });
    }
    if (!order || !stage) return;
    guarded(async () => { await api("POST", `/api/v1/orders/${order}/stages/${stage}`, {}); toast(`${stage} signed off`); await load(); });
  };
  await guarded(load);
  live.watch({ orders: () => guarded(load), jobs: () => {} }, () => guarded(load));
}
