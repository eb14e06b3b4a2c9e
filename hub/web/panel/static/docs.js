// Renders /api/v1/openapi.json as a readable page: operations by tag, with parameters and schemas.
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const name = (s) => (s?.$ref ? s.$ref.split("/").pop() : s?.type || "");

const doc = await (await fetch("/api/v1/openapi.json")).json();
const byTag = {};
for (const [path, ops] of Object.entries(doc.paths)) {
  for (const [method, op] of Object.entries(ops)) (byTag[op.tags?.[0] || "other"] ||= []).push({ path, method, op });
}
const ops = Object.entries(byTag).sort().map(([tag, list]) => `<h2>${esc(tag)}</h2>` + list.map(({ path, method, op }) => {
  const params = (op.parameters || []).map((p) => `<li><code>${esc(p.name)}</code> (${esc(p.in)}) ${esc(name(p.schema))} ${esc(p.description || "")}</li>`).join("");
  const body = op.requestBody ? Object.entries(op.requestBody.content).map(([t, c]) => `${esc(t)}: <a href="#schema-${esc(name(c.schema))}">${esc(name(c.schema))}</a>`).join(", ") : "";
  const resp = Object.entries(op.responses).map(([code, r]) => `<li>${esc(code)} ${esc(r.description)} ${r.content ? Object.values(r.content).map((c) => `<a href="#schema-${esc(name(c.schema))}">${esc(name(c.schema))}</a>`).join("") : ""}</li>`).join("");
  return `<section id="${esc(op.operationId)}"><h3><code>${method.toUpperCase()} ${esc(path)}</code></h3>
    <p>${esc(op.summary || "")}</p><p class="muted">roles: ${esc((op["x-roles"] || ["public"]).join(", "))}</p>
    ${params ? `<ul>${params}</ul>` : ""}${body ? `<p>Body: ${body}</p>` : ""}<ul>${resp}</ul></section>`;
}).join("")).join("");
const schemas = Object.entries(doc.components.schemas).map(([n, s]) => `<section id="schema-${esc(n)}"><h3>${esc(n)}</h3>
  <table><tbody>${Object.entries(s.properties || {}).map(([p, d]) => `<tr><td><code>${esc(p)}</code></td><td>${esc(name(d) || (d.anyOf || []).map(name).join(" | "))}</td><td>${esc(d.description || "")}</td></tr>`).join("")}</tbody></table></section>`).join("");
document.getElementById("docs").innerHTML = `<h1>${esc(doc.info.title)} ${esc(doc.info.version)}</h1><p>${esc(doc.info.description)}</p>${ops}<h2>Schemas</h2>${schemas}`;
