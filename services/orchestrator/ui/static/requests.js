// Request search (GET /v1/contact-requests) with each request's timeline one click away; calls bridged to
// agents (GET /v1/contact-requests/{id}/agent-calls) join the timeline with their talk time.
(() => {
  const $ = (sel) => document.querySelector(sel);
  const key = () => sessionStorage.getItem("cadencia-api-key") || "";
  const cell = (tag, text, cls) => { const n = document.createElement(tag); n.textContent = text ?? ""; if (cls) n.className = cls; return n; };
  const when = (iso) => iso ? new Date(iso).toLocaleString() : "–";
  let cursor = null, shown = 0;

  $("#api-key").value = key();
  $("#key-form").addEventListener("submit", (e) => { e.preventDefault(); sessionStorage.setItem("cadencia-api-key", $("#api-key").value); search(); });

  async function get(url) {
    if (!key()) { $("#error").textContent = "Enter an API key (viewer role or above)."; return null; }
    const res = await fetch(url, { headers: { Authorization: "Bearer " + key() } });
    if (!res.ok) {
      const p = await res.json().catch(() => ({}));
      $("#error").textContent = (p.title || res.status) + (p.detail ? ": " + p.detail : "");
      return null;
    }
    $("#error").textContent = "";
    return res.json();
  }

  function query() {
    const q = new URLSearchParams();
    for (const [id, name] of [["#q-debtor", "debtor_id"], ["#q-campaign", "campaign_id"], ["#q-status", "status"]]) {
      if ($(id).value.trim()) q.set(name, $(id).value.trim());
    }
    for (const [id, name] of [["#q-since", "since"], ["#q-until", "until"]]) {
      if ($(id).value) q.set(name, new Date($(id).value).toISOString());
    }
    return q;
  }

  async function search(more) {
    const q = query();
    if (more && cursor) q.set("before", cursor);
    const page = await get("/v1/contact-requests?" + q);
    if (!page) return;
    const t = $("#results");
    if (!more) {
      t.replaceChildren(); shown = 0;
      const h = document.createElement("tr");
      ["created", "request", "debtor", "campaign", "status", "reason", "attempts"].forEach((x) => h.append(cell("th", x)));
      t.append(h);
    }
    for (const r of page.requests) {
      const tr = document.createElement("tr");
      tr.dataset.request = r.id;
      const open = cell("a", r.id.slice(0, 13), "request"); open.href = `?id=${encodeURIComponent(r.id)}`;
      open.addEventListener("click", (e) => { e.preventDefault(); timeline(r.id); });
      const idCell = cell("td"); idCell.append(open);
      tr.append(cell("td", when(r.created_at)), idCell, cell("td", r.debtor_id), cell("td", r.campaign_id || "–"),
                cell("td", r.status, "status-" + r.status), cell("td", r.reason || ""), cell("td", String(r.attempts), "n"));
      t.append(tr);
    }
    shown += page.requests.length;
    cursor = page.next;
    $("#more").hidden = !cursor;
    $("#count").textContent = shown ? `${shown} shown` : "no request matches";
  }

  const talk = (seconds) => { const s = Math.round(seconds || 0); return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`; };

  async function timeline(id) {
    const r = await get(`/v1/contact-requests/${encodeURIComponent(id)}`);
    if (!r) return;
    // calls bridged to agents (with the talk time) or abandoned, between the request's statuses
    const agentCalls = (await get(`/v1/contact-requests/${encodeURIComponent(id)}/agent-calls`) || { items: [] }).items;
    history.replaceState(null, "", `?id=${encodeURIComponent(id)}`);
    $("#timeline-panel").hidden = false;
    $("#tl-summary").textContent = `Request ${r.id} for debtor ${r.debtor_id} · ${r.template} · segment ${r.segment || "–"} · now ${r.status}`;
    const ol = $("#timeline"); ol.replaceChildren();
    const entries = r.history.map((h) => ({ at: h.at, h }))
      .concat(agentCalls.map((c) => ({ at: c.occurred_at, c })))
      .sort((a, b) => new Date(a.at) - new Date(b.at));
    for (const { h, c } of entries) {
      const li = document.createElement("li");
      if (c) {
        li.dataset.agentCall = c.status;
        li.append(cell("strong", c.status.replace("_", " "), "status-" + c.status), cell("span", ` ${when(c.occurred_at)} · voice`),
                  cell("div", c.status === "agent_connected" ? `talk time ${talk(c.talk_time_s)}` : "hung up before the script ended", "muted"));
      } else {
        li.append(cell("strong", h.status, "status-" + h.status), cell("span", ` ${when(h.at)}${h.channel ? " · " + h.channel : ""}`),
                  cell("div", [h.reason, h.not_before && !h.not_before.startsWith("9999") ? "until " + when(h.not_before) : "", (h.rules || []).join(", ")].filter(Boolean).join(" · "), "muted"));
      }
      ol.append(li);
    }
    const talked = Object.fromEntries(agentCalls.filter((c) => c.status === "agent_connected").map((c) => [c.dispatch_id, c.talk_time_s]));
    const t = $("#attempts"); t.replaceChildren();
    const head = document.createElement("tr");
    ["attempt", "channel", "template", "status", "error", "talk time", "at"].forEach((x) => head.append(cell("th", x)));
    t.append(head);
    for (const d of r.dispatches) {
      const tr = document.createElement("tr");
      tr.append(cell("td", String(d.attempt)), cell("td", d.channel), cell("td", `${d.template_key} v${d.template_version}`),
                cell("td", d.status, "status-" + d.status), cell("td", d.error_code || ""),
                cell("td", d.id in talked ? talk(talked[d.id]) : "", "n"), cell("td", when(d.at)));
      t.append(tr);
    }
    $("#timeline-panel").scrollIntoView({ block: "nearest" });
  }

  $("#search").addEventListener("submit", (e) => { e.preventDefault(); search(false); });
  $("#more").addEventListener("click", () => search(true));
  const params = new URLSearchParams(location.search);
  if (params.get("debtor_id")) $("#q-debtor").value = params.get("debtor_id");
  if (params.get("campaign_id")) $("#q-campaign").value = params.get("campaign_id");
  if (key()) search(false);
  if (params.get("id")) timeline(params.get("id"));
})();
