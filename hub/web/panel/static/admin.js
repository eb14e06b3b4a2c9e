// Settings: the cost model, and for admins the users and API tokens.
import { api, all } from "./api.js";
import { clock, esc } from "./format.js";
import { bindForm, filled, formHtml, openEditor, patch, post } from "./forms.js";

const ROLES = [["viewer", "viewer"], ["operator", "operator"], ["admin", "admin"]];
const COST_FIELDS = [
  ["currency", "Currency", "text"], ["energy_price_per_kwh", "Energy price per kWh", "number"],
  ["labour_minutes_per_job", "Labour minutes per job", "number"], ["labour_rate_per_hour", "Labour rate per hour", "number"],
  ["failure_margin_pct", "Failure margin (%)", "number"], ["markup_pct", "Markup (%)", "number"],
];
const USER_FIELDS = [
  { name: "username", label: "User name", required: true, autocomplete: "off" },
  { name: "password", label: "Password", type: "password", required: true, help: "at least 10 characters",
    autocomplete: "new-password" },
  { name: "role", label: "Role", type: "select", options: ROLES, value: "operator" },
];
// A new password ends the user's sessions; left empty, theirs stays.
const USER_EDIT_FIELDS = USER_FIELDS.map((f) => (f.name === "password"
  ? { ...f, required: false, help: "empty: unchanged; a new one logs them out" } : f));
const TOKEN_FIELDS = [
  { name: "name", label: "Token name", required: true },
  { name: "role", label: "Role", type: "select", options: [...ROLES, ["agent", "agent"]], value: "operator" },
];

// What an admin does for an operator who leaves, or whose password leaked: every request of theirs fails at once.
const USER_ACTIONS = {
  disable: { ask: (n) => `Disable ${n}? Their sessions end now.`, done: (n) => `${n} disabled`,
    call: (id) => api("PATCH", `/api/v1/users/${id}`, { disabled: true }) },
  enable: { ask: (n) => `Let ${n} log in again?`, done: (n) => `${n} enabled`,
    call: (id) => api("PATCH", `/api/v1/users/${id}`, { disabled: false }) },
  logout: { ask: (n) => `End every session of ${n}?`, done: (n) => `${n} logged out everywhere`,
    call: (id) => api("DELETE", `/api/v1/users/${id}/sessions`) },
  delete: { ask: (n) => `Delete ${n}?`, done: (n) => `${n} deleted`,
    call: (id) => api("DELETE", `/api/v1/users/${id}`) },
};

function userRow(u) {
  const button = (action, label) => `<button data-action="${action}" data-user="${u.id}"
    aria-label="${label} ${esc(u.username)}">${label}</button>`;
  const state = u.disabled_at ? `disabled ${esc(clock(u.disabled_at))}` : "active";
  const toggle = u.disabled_at ? button("enable", "Enable") : button("disable", "Disable");
  return `<tr><td>${esc(u.username)}</td><td>${esc(u.role)}</td><td>${state}</td>
    <td class="actions">${button("edit", "Edit")} ${toggle} ${button("logout", "Log out")} ${button("delete", "Delete")}</td></tr>`;
}

export async function settingsView({ view, guarded, toast, me }) {
  view.innerHTML = `<h1>Settings</h1><div class="forms" id="cost-form"></div>
    <div id="admin"></div><div class="forms" id="user-edit"></div>`;
  const model = await api("GET", "/api/v1/cost-model");
  const fields = COST_FIELDS.map(([name, label, type]) => ({ name, label, type, step: "0.01", value: model[name] }));
  document.getElementById("cost-form").innerHTML = formHtml("cost-model", "Cost model", fields, "Save cost model");
  // PUT takes the whole model: the fields shown replace theirs, the rest (per-material prices) is kept.
  bindForm(document.getElementById("cost-model"), fields,
    async (v) => api("PUT", "/api/v1/cost-model", { ...(await api("GET", "/api/v1/cost-model")), ...v }),
    () => toast("cost model saved"));
  if (me?.role !== "admin") return;
  const admin = document.getElementById("admin");
  const load = async () => {
    const [users, tokens] = await Promise.all([all("/api/v1/users"), all("/api/v1/tokens")]);
    admin.innerHTML = `<h2>Users</h2><div class="scroll"><table><thead><tr><th>User</th><th>Role</th><th>State</th>
      <th></th></tr></thead><tbody id="users">${users.map(userRow).join("")}</tbody></table></div>
      <h2>Tokens</h2><div class="scroll"><table><thead><tr><th>#</th><th>Name</th><th>Role</th><th>Created</th><th></th></tr></thead>
      <tbody id="tokens">${tokens.map((t) => `<tr><td>${t.id}</td><td>${esc(t.name)}</td><td>${esc(t.role)}</td>
      <td>${esc(clock(t.created_at))}</td><td>${t.revoked_at ? "revoked" : `<button data-revoke="${t.id}"
      aria-label="Revoke token ${esc(t.name)}">Revoke</button>`}</td></tr>`).join("")}</tbody></table></div>
      <p id="new-token" class="muted" aria-live="polite"></p>
      <div class="forms">${formHtml("new-user", "New user", USER_FIELDS, "Add user")}
      ${formHtml("new-token-form", "New API token", TOKEN_FIELDS, "Create token")}</div>`;
    bindForm(document.getElementById("new-user"), USER_FIELDS, post("/api/v1/users"), () => guarded(async () => { await load(); toast("user added"); }));
    bindForm(document.getElementById("new-token-form"), TOKEN_FIELDS, post("/api/v1/tokens"), async (t) => {
      await load();
      document.getElementById("new-token").textContent = `token ${t.name}: ${t.token} (shown once: copy it now)`;
    });
    document.getElementById("users").onclick = (e) => {
      const action = USER_ACTIONS[e.target.dataset.action];
      const user = users.find((u) => String(u.id) === e.target.dataset.user);
      if (user && e.target.dataset.action === "edit") {
        openEditor(document.getElementById("user-edit"), { id: "edit-user", title: `Edit user ${user.username}`,
          fields: filled(USER_EDIT_FIELDS, { ...user, password: "" }), send: patch(`/api/v1/users/${user.id}`),
          done: (u) => guarded(async () => { await load(); toast(`${u.username} saved`); }) });
      }
      if (action && user && confirm(action.ask(user.username))) {
        // The toast comes once the page shows the change: what follows acts on the new page.
        guarded(async () => { await action.call(user.id); await load(); toast(action.done(user.username)); });
      }
    };
    document.getElementById("tokens").onclick = (e) => {
      const id = e.target.dataset.revoke;
      if (id && confirm(`Revoke token ${id}?`)) guarded(async () => { await api("DELETE", `/api/v1/tokens/${id}`); await load(); });
    };
  };
  await guarded(load);
}
