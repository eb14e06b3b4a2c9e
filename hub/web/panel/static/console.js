// The device page's G-code console: send lines, show what was sent and what the firmware answered.
import { api } from "./api.js";

const KEEP = 200;

export const consoleMarkup = `<h2>Console</h2>
  <div class="console" id="console" role="log" aria-label="Console output" tabindex="0"></div>
  <form class="row" id="gcode">
    <input name="line" aria-label="G-code to send" placeholder="M105" autocomplete="off" maxlength="96" required>
    <button type="submit" aria-label="Send G-code">Send</button>
  </form>`;

// Call after consoleMarkup is in the page; feed `append` from the live stream's console topic.
export function attachConsole(ref, guarded) {
  const out = document.getElementById("console");
  const form = document.getElementById("gcode");
  const input = form.elements.line;
  const sent = [];
  let last = 0, back = 0;

  const append = (entries) => {
    const follow = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
    for (const e of entries || []) {
      if (e.n <= last) continue;  // already shown: the page load and the live stream overlap
      last = e.n;
      const line = document.createElement("div");
      line.className = e.direction;
      line.textContent = e.direction === "sent" ? `> ${e.text}` : e.text;
      out.appendChild(line);
    }
    while (out.childElementCount > KEEP) out.firstElementChild.remove();
    if (follow) out.scrollTop = out.scrollHeight;
  };
  const load = async () => append((await api("GET", `/api/v1/devices/${ref}/console`)).lines);

  form.onsubmit = (e) => {
    e.preventDefault();
    const line = input.value.trim();
    if (!line) return;
    guarded(async () => {
      await api("POST", `/api/v1/devices/${ref}/gcode`, { lines: [line] });
      if (sent.at(-1) !== line) sent.push(line);
      back = 0;
      input.value = "";
      await load();  // shows the sent line even before the live stream does
    });
  };
  // Up and down walk through the lines sent from this page, as in a terminal.
  input.onkeydown = (e) => {
    if (e.key !== "ArrowUp" && e.key !== "ArrowDown") return;
    e.preventDefault();
    back = Math.max(0, Math.min(sent.length, back + (e.key === "ArrowUp" ? 1 : -1)));
    input.value = back ? sent[sent.length - back] : "";
  };
  return { append, load };
}
