// Webhooks (admins): each subscription, the events its receiver did not take after every retry, and replay.
import { api } from "./api.js";
import { clock, esc } from "./format.js";

// Deliveries happen in the background and the live stream does not carry them: look again this often.
const POLL_MS = 2000;

function letterRow(d) {
  return `<tr data-event="${d.event_id}"><td>${d.event_id}</td><td>${esc(d.type || "")}</td><td>${d.attempts}</td>
    <td class="error">${esc(d.error)}</td><td title="${esc(d.failed_at)}">${esc(clock(d.failed_at))}</td></tr>`;
}

function hookSection(hook, letters) {
  const from = letters[0]?.event_id ?? hook.last_id + 1;
  const types = hook.event_types.length ? hook.event_types.join(", ") : "every event";
  return `<section data-webhook="${hook.id}" aria-label="Webhook ${hook.id}">
    <h2>#${hook.id} ${esc(hook.url)}</h2>
    <p class="muted">${esc(types)} · delivered up to event ${hook.last_id} ·
      <span class="dead-count">${letters.length} dead letter${letters.length === 1 ? "" : "s"}</span></p>
    ${letters.length ? `<div class="scroll"><table><thead><tr><th>Event</th><th>Type</th><th>Attempts</th>
      <th>Last error</th><th>Failed</th></tr></thead><tbody>${letters.map(letterRow).join("")}</tbody></table></div>` : ""}
    <form class="row replay" data-webhook="${hook.id}">
      <label>From event <input type="number" name="from" min="1" required value="${from}"
        aria-label="Replay webhook ${hook.id} from event"></label>
      <button type="submit" aria-label="Replay webhook ${hook.id}">Replay</button>
    </form></section>`;
}

/** The page; returns what undoes it (its timer). */
export async function webhooksView({ view, guarded, toast, me }) {
  view.innerHTML = `<h1>Webhooks</h1><div id="webhooks"></div>`;
  const root = document.getElementById("webhooks");
  if (me?.role !== "admin") {
    root.innerHTML = `<p class="muted">Webhooks are for admins: they hold the receivers' secrets.</p>`;
    return () => {};
  }
  let shown = null;
  const load = async () => {
    const hooks = (await api("GET", "/api/v1/webhooks")).items;
    const letters = await Promise.all(hooks.map((h) => api("GET", `/api/v1/webhooks/${h.id}/dead-letters`)));
    const html = hooks.map((h, i) => hookSection(h, letters[i].items)).join("")
      || `<p class="muted">No webhooks yet: subscribe a URL with POST /api/v1/webhooks.</p>`;
    if (html !== shown) root.innerHTML = shown = html;  // unchanged: keep what the admin is typing
  };
  root.onsubmit = (e) => {
    e.preventDefault();
    const id = e.target.dataset.webhook, from = e.target.elements.from.value;
    // Every subscribed event from there on goes out again, those the receiver took included: it must
    // tell repeats apart by event id.
    if (!id || !confirm(`Deliver every event from ${from} on to webhook ${id} again?`)) return;
    guarded(async () => {
      await api("POST", `/api/v1/webhooks/${id}/replay?from=${encodeURIComponent(from)}`);
      toast(`webhook ${id}: replaying from event ${from}`);
      await load();
    });
  };
  await guarded(load);
  const timer = setInterval(() => guarded(load), POLL_MS);
  return () => clearInterval(timer);
}
