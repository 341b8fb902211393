// The dashboard: /v1/stats (pre-aggregated counters) drawn as SVG charts; campaign control via /v1/pauses;
// calls bridged to agents per campaign over 30 days.
(() => {
  const $ = (sel) => document.querySelector(sel);
  const C = window.CadenciaCharts;
  const SERIES = ["requested", "dispatched", "delivered", "failed", "responded", "opted_out"];
  const key = () => sessionStorage.getItem("cadencia-api-key") || "";
  const headers = () => ({ Authorization: "Bearer " + key(), "Content-Type": "application/json" });
  const cell = (tag, text, cls) => { const n = document.createElement(tag); n.textContent = text ?? ""; if (cls) n.className = cls; return n; };
  const pct = (a, b) => b ? Math.round(100 * a / b) + "%" : "–";
  const hhmm = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const dayHour = (iso) => new Date(iso).toLocaleString([], { weekday: "short", hour: "2-digit" });
  const channelColor = (name, i) => C.color(name, i);

  $("#api-key").value = key();
  $("#key-form").addEventListener("submit", (e) => { e.preventDefault(); sessionStorage.setItem("cadencia-api-key", $("#api-key").value); refresh(); });

  function chartGrid(host, prefix) {
    if (host.childElementCount) return;
    for (const metric of SERIES) {
      const box = document.createElement("div");
      box.append(cell("h3", metric.replace("_", " ")));
      const chart = cell("div", "", "chart"); chart.id = `${prefix}-${metric}`;
      box.append(chart); host.append(box);
    }
  }

  function breakdown(dim, rows) {
    const entries = Object.entries(rows || {});
    C.bars($(`#b-${dim}`), entries.map(([k, m]) => [k, m.dispatched || 0, `${pct(m.delivered || 0, m.dispatched || 0)} delivered`]));
    const t = $(`#t-${dim}`); t.replaceChildren();
    const head = document.createElement("tr");
    // a variant is chosen at dispatch: it has no "requested"
    const counted = dim === "variant" ? ["dispatched", "delivered", "failed", "responded"] : ["requested", "dispatched", "delivered", "responded"];
    [dim, ...counted, "delivered %", "responded %"].forEach((h, i) => head.append(cell("th", h, i ? "n" : "")));
    t.append(head);
    entries.sort((a, b) => (b[1].dispatched || 0) - (a[1].dispatched || 0)).forEach(([k, m]) => {
      const tr = document.createElement("tr");
      tr.append(cell("td", k));
      for (const metric of counted) tr.append(cell("td", String(m[metric] || 0), "n"));
      tr.append(cell("td", pct(m.delivered || 0, m.dispatched || 0), "n"), cell("td", pct(m.responded || 0, m.dispatched || 0), "n"));
      t.append(tr);
    });
  }

  const talk = (seconds) => {
    const s = Math.round(seconds || 0), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return h ? `${h} h ${String(m).padStart(2, "0")} min` : `${m}:${String(s % 60).padStart(2, "0")}`;
  };
  const share = (x) => (100 * (x || 0)).toFixed(1) + "%";

  function agents(a) {
    if (!a) return;
    $("#agents-days").textContent = a.window_days;
    $("#a-cap").textContent = share(a.cap);
    $("#a-answered").textContent = a.totals.answered;
    $("#a-connected").textContent = a.totals.agent_connected;
    $("#a-abandoned").textContent = a.totals.abandoned;
    $("#a-rate").textContent = share(a.totals.abandoned_rate);
    $("#a-rate").classList.toggle("over", a.totals.over_cap);
    $("#a-talk").textContent = talk(a.totals.talk_time_s);
    const t = $("#t-agents"); t.replaceChildren();
    const head = document.createElement("tr");
    ["campaign", "answered", "connected", "abandoned", "abandoned %", "talk time", "per connection"].forEach((h, i) => head.append(cell("th", h, i ? "n" : "")));
    t.append(head);
    for (const c of a.campaigns) {
      const tr = document.createElement("tr");
      tr.dataset.campaign = c.campaign_id;
      tr.append(cell("td", c.campaign_id), cell("td", String(c.answered), "n"), cell("td", String(c.agent_connected), "n"),
                cell("td", String(c.abandoned), "n"), cell("td", share(c.abandoned_rate), c.over_cap ? "n over" : "n"),
                cell("td", talk(c.talk_time_s), "n"), cell("td", c.agent_connected ? talk(c.talk_time_s / c.agent_connected) : "–", "n"));
      t.append(tr);
    }
  }

  function pauses(s) {
    const list = $("#pauses"); list.replaceChildren();
    const all = s.pauses.find((p) => p.scope === "all");
    $("#pause-banner").hidden = !s.pauses.length;
    $("#pause-banner").textContent = all ? `Kill switch on: nothing is sent (${s.held} contacts held).`
      : `${s.pauses.length} pause(s) active; ${s.held} contacts held.`;
    for (const p of s.pauses) {
      const li = document.createElement("li");
      li.dataset.scope = p.scope; li.dataset.key = p.key;
      li.append(cell("strong", p.scope === "all" ? "everything" : `${p.scope} ${p.key}`),
                cell("span", `${p.reason || "no reason given"} · since ${new Date(p.at).toLocaleString()} · by ${p.by}`, "muted"));
      const b = cell("button", "Resume", "primary"); b.type = "button";
      b.addEventListener("click", async () => {
        const r = await fetch(`/v1/pauses/${p.scope}/${encodeURIComponent(p.key)}`, { method: "DELETE", headers: headers() });
        if (!r.ok) return problem(r);
        refresh();
      });
      li.append(b); list.append(li);
    }
  }

  $("#pause-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const scope = $("#pause-scope").value;
    const body = { scope, reason: $("#pause-reason").value || null };
    if (scope !== "all") body.key = $("#pause-key").value.trim();
    const r = await fetch("/v1/pauses", { method: "POST", headers: headers(), body: JSON.stringify(body) });
    if (!r.ok) return problem(r);
    $("#pause-key").value = ""; $("#pause-reason").value = "";
    refresh();
  });

  async function problem(res) {
    const p = await res.json().catch(() => ({}));
    $("#error").textContent = (p.title || res.status) + (p.detail ? ": " + p.detail : "");
  }

  async function refresh() {
    if (!key()) { $("#error").textContent = "Enter an API key (viewer role or above) to load the figures."; return; }
    let s;
    try {
      const res = await fetch("/v1/stats", { headers: headers() });
      if (!res.ok) return problem(res);
      s = await res.json();
    } catch (e) { $("#error").textContent = "Cannot reach the orchestrator: " + e; return; }
    $("#error").textContent = "";
    const t = s.totals || {};
    for (const k of ["requested", "dispatched", "delivered", "responded"]) $(`#k-${k}`).textContent = t[k] || 0;
    $("#k-deferred").textContent = s.deferred_pending;
    $("#k-held").textContent = s.held;
    $("#k-dlq").textContent = s.dead_letters;
    $("#k-outbox").textContent = s.outbox_backlog;
    $("#days").textContent = s.window.days;
    $("#next-release").textContent = s.next_release ? new Date(s.next_release).toLocaleString() : "none";
    $("#updated").textContent = new Date(s.generated_at).toLocaleTimeString();
    chartGrid($("#minute-charts"), "m"); chartGrid($("#hour-charts"), "h");
    for (const metric of SERIES) {
      C.lines($(`#m-${metric}`), s.axes.minute, s.series.minute[metric] || {}, hhmm);
      C.lines($(`#h-${metric}`), s.axes.hour, s.series.hour[metric] || {}, dayHour);
    }
    C.funnel($("#funnel"), s.funnel);
    C.bars($("#deferrals"), Object.entries(s.deferrals_by_rule));
    C.bars($("#rejections"), Object.entries(s.rejections_by_rule), () => "#b3261e");
    C.bars($("#failures"), Object.entries(s.failures_by_reason), () => "#c0710b");
    C.bars($("#responses"), Object.entries(s.responses), () => "#1f7a4d");
    C.bars($("#channels"), Object.entries(s.by_channel).map(([ch, m]) => [ch, m.dispatched || 0, `${pct(m.delivered || 0, m.dispatched || 0)} delivered`]), channelColor);
    for (const dim of ["campaign", "jurisdiction", "segment", "variant"]) breakdown(dim, s.breakdowns[dim]);
    pauses(s);
    agents(s.agents);
    const table = $("#recent"); table.replaceChildren();
    const h = document.createElement("tr");
    ["time", "debtor", "request", "status", "channel", "reason / until"].forEach((x) => h.append(cell("th", x)));
    table.append(h);
    for (const r of s.recent) {
      const row = document.createElement("tr");
      const link = cell("a", r.request_id.slice(0, 12), "request"); link.href = `/requests?id=${encodeURIComponent(r.request_id)}`;
      const req = cell("td"); req.append(link);
      row.append(cell("td", new Date(r.at).toLocaleTimeString()), cell("td", r.debtor_id), req,
                 cell("td", r.status, "status-" + r.status), cell("td", r.channel || "–"),
                 cell("td", r.not_before ? "until " + new Date(r.not_before).toLocaleString() : (r.reason || "")));
      table.append(row);
    }
    document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
  }
  refresh(); setInterval(refresh, 3000);
})();
