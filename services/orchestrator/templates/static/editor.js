"use strict";
// Cadencia template editor: talks to /v1/templates with the API key kept in sessionStorage.
(() => {
  const $ = (sel) => document.querySelector(sel);
  const FIELDS = ["body", "content_sid", "content_variables", "subject", "text", "html", "voice_script", "voicemail_script", "ivr_prompts"];
  const MAPS = new Set(["content_variables", "ivr_prompts"]);
  const state = { current: null, rewrite: null };
  const MESSAGES = JSON.parse(document.getElementById("messages").textContent);
  const LANG = document.documentElement.lang;
  // tr("saved", {key, version}): the page language's message with its placeholders filled.
  const tr = (id, vars = {}) => (MESSAGES[id] || id).replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
  const number = (value, digits) => Number(value).toLocaleString(LANG === "es" ? "es-CO" : "en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

  const apiKey = () => sessionStorage.getItem("cadencia-api-key") || "dev-admin-key";
  const say = (text) => { $("#status").textContent = text; };

  async function api(method, path, body) {
    const response = await fetch(path, {
      method,
      headers: { "Authorization": `Bearer ${apiKey()}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) { const err = new Error(data.detail || data.title || response.statusText); err.data = data; err.status = response.status; throw err; }
    return data;
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) { if (k === "class") node.className = v; else node.setAttribute(k, v); }
    for (const child of children) node.append(child);
    return node;
  }

  function showFields() {
    const channel = $("#f-channel").value;
    document.querySelectorAll(".field[data-channels]").forEach((f) => { f.hidden = !f.dataset.channels.split(" ").includes(channel); });
  }

  function draft() {
    const channel = $("#f-channel").value;
    const content = {};
    for (const name of FIELDS) {
      const box = $(`#f-${name}`);
      if (box.closest(".field").hidden || box.value.trim() === "") continue;
      if (MAPS.has(name)) { try { content[name] = JSON.parse(box.value); } catch { throw new Error(tr("invalid_json", { field: name })); } }
      else content[name] = box.value;
    }
    let schema = {};
    try { schema = JSON.parse($("#f-schema").value || "{}"); } catch { throw new Error(tr("invalid_json", { field: "variables_schema" })); }
    return { channel, locale: $("#f-locale").value.trim(), variant: $("#f-variant").value.trim() || "A", content, variables_schema: schema };
  }

  function showFindings(findings) {
    const list = $("#findings");
    list.replaceChildren();
    if (!findings.length) { list.append(el("li", { class: "info" }, tr("no_problems"))); return; }
    for (const f of findings) {
      const where = [f.field, f.line ? `${tr("line")} ${f.line}` : null, f.column ? `${tr("col")} ${f.column}` : null].filter(Boolean).join(", ");
      list.append(el("li", { class: f.severity }, `${f.severity.toUpperCase()} ${f.code}${where ? ` (${where})` : ""}: ${f.message}`));
    }
  }

  function showPreview(result) {
    const pane = $("#preview");
    pane.replaceChildren();
    const rendered = result.rendered || {};
    for (const name of ["subject", "body", "text", "html", "voice_script", "voicemail_script"]) {
      if (rendered[name] != null) pane.append(el("div", { class: "part", "data-field": name }, el("h4", {}, name), rendered[name]));
    }
    for (const name of ["ivr_prompts", "content_variables"]) {
      if (rendered[name]) pane.append(el("div", { class: "part", "data-field": name }, el("h4", {}, name), JSON.stringify(rendered[name], null, 2)));
    }
    const sms = result.sms;
    $("#segments").textContent = sms ? `${sms.segments} ${tr(sms.segments === 1 ? "segment" : "segments")} · ${sms.encoding} · ${sms.units} ${tr("units")} (${sms.per_segment} ${tr("per_segment")})` : "";
    showCost(result.sms_cost);
    showFindings(result.findings || []);
  }

  const money = (price) => ({ currency: price.currency, segments: price.segments, per_segment: price.per_segment,
    per_send: number(price.per_send, 4), per_10k: number(price.per_10k, 2) });

  function showCost(cost) {
    $("#cost").hidden = !cost;
    state.rewrite = null;
    if (!cost) return;
    const line = $("#cost-line");
    line.textContent = cost.cost ? tr("cost_line", money(cost.cost)) : tr("no_price");
    if (cost.cost && cost.cost.segments > cost.budget) line.append(" ", el("span", { class: "over-budget" }, tr("over_budget", { budget: cost.budget })));
    const rewrite = cost.gsm7_rewrite;
    $("#rewrite").hidden = !rewrite;
    if (!rewrite) return;
    state.rewrite = rewrite;
    const price = rewrite.cost ? money(rewrite.cost) : { per_send: "–", per_10k: "–", currency: "" };
    $("#rewrite-line").textContent = tr("rewrite_line", { ...price, segments: rewrite.sms.segments, segments_word: tr(rewrite.sms.segments === 1 ? "segment" : "segments") });
    $("#rewrite-rendered").textContent = rewrite.rendered;
    $("#use-rewrite").textContent = tr("use_rewrite");
  }

  let timer = null;
  function schedulePreview() { clearTimeout(timer); timer = setTimeout(runPreview, 300); }
  async function runPreview() {
    const key = $("#f-key").value.trim() || "draft";
    try { showPreview(await api("POST", `/v1/templates/${encodeURIComponent(key)}/preview`, draft())); }
    catch (err) { say(err.message); if (err.data && err.data.findings) showFindings(err.data.findings); }
  }

  async function loadList() {
    const list = $("#template-list");
    try {
      const { items } = await api("GET", "/v1/templates");
      list.replaceChildren();
      for (const t of items) {
        const label = `${t.key} · ${t.channel} · ${t.locale} · ${t.variant}`;
        const button = el("button", { type: "button", "data-key": t.key, "data-channel": t.channel, "data-locale": t.locale, "data-variant": t.variant },
          label, el("br"), el("small", {}, `live v${t.published_version ?? "–"} · latest v${t.latest_version}`));
        button.addEventListener("click", () => openTemplate(t));
        list.append(el("li", {}, button));
      }
    } catch (err) { say(tr("could_not_load", { error: err.message })); }
  }

  async function openTemplate(t) {
    const detail = await api("GET", `/v1/templates/${encodeURIComponent(t.key)}`);
    const mine = detail.versions.filter((v) => v.channel === t.channel && v.locale === t.locale && v.variant === t.variant);
    const version = mine.find((v) => v.version === t.published_version) || mine[mine.length - 1];
    fill(version);
    state.current = t;
    document.querySelectorAll("#template-list button").forEach((b) => b.setAttribute("aria-current", String(b.dataset.key === t.key && b.dataset.channel === t.channel && b.dataset.locale === t.locale && b.dataset.variant === t.variant)));
    showHistory(detail, t);
    runPreview();
  }

  function fill(v) {
    $("#f-key").value = v.key; $("#f-channel").value = v.channel; $("#f-locale").value = v.locale; $("#f-variant").value = v.variant;
    showFields();
    for (const name of FIELDS) {
      const value = v.content[name];
      $(`#f-${name}`).value = value === undefined || value === null ? "" : (MAPS.has(name) ? JSON.stringify(value, null, 2) : value);
    }
    $("#f-schema").value = JSON.stringify(v.variables_schema || {}, null, 2);
    say(tr("editing", { key: v.key, version: v.version }));
  }

  function showHistory(detail, t) {
    const body = $("#history tbody");
    body.replaceChildren();
    for (const v of [...detail.versions].reverse()) {
      const combo = `${v.channel} · ${v.locale} · ${v.variant}`;
      const publish = el("button", { type: "button", "data-version": v.version }, v.live ? tr("live") : tr("publish"));
      publish.disabled = v.live;
      publish.setAttribute("aria-label", tr(v.live ? "live_aria" : "publish_aria", { version: v.version }));
      publish.addEventListener("click", () => publishVersion(v.key, v.version));
      const open = el("button", { type: "button" }, tr("open"));
      open.addEventListener("click", () => { fill(v); runPreview(); });
      const diff = el("button", { type: "button" }, tr("diff"));
      diff.addEventListener("click", () => showDiff(v.key, v.version));
      body.append(el("tr", {}, el("td", {}, `v${v.version}`), el("td", {}, combo), el("td", {}, new Date(v.created_at).toLocaleString(LANG)),
        el("td", { class: "by" }, v.created_by || "–"),
        el("td", {}, tr(v.live ? "state_published" : (v.published_at ? "state_rolled_back" : "state_draft"))), el("td", {}, open, " ", diff, " ", publish)));
    }
    const changes = $("#changes");
    changes.replaceChildren();
    for (const c of detail.history || []) {
      const approved = c.approved_by ? ` (${tr("approved_by", { who: c.approved_by })})` : "";
      changes.append(el("li", {}, `${new Date(c.at).toLocaleString(LANG)} · ${c.actor} ${tr(`action_${c.action}`)} v${c.version} · ${c.channel} · ${c.locale} · ${c.variant}${approved}`));
    }
    const approvals = $("#approvals");
    approvals.replaceChildren();
    for (const a of (detail.approvals || []).filter((x) => x.state === "pending")) {
      const approve = el("button", { type: "button", "data-approval": a.id }, tr("approve"));
      approve.addEventListener("click", () => decide(a, "approve"));
      const reject = el("button", { type: "button" }, tr("reject"));
      reject.addEventListener("click", () => decide(a, "reject"));
      approvals.append(el("li", {}, `${tr("requested_by", { version: a.version, who: a.requested_by })} `, approve, " ", reject));
    }
  }

  async function decide(approval, verdict) {
    try {
      await api("POST", `/v1/templates/${encodeURIComponent(approval.key)}/approvals/${approval.id}/${verdict}`, {});
      say(tr(verdict === "approve" ? "approved" : "rejected", { key: approval.key, version: approval.version }));
      await refresh(approval.key);
    } catch (err) { say(err.message); }
  }

  async function showDiff(key, version) {
    const live = state.current && state.current.published_version;
    const pre = $("#diff");
    if (!live || live === version) { pre.hidden = true; return; }
    const result = await api("GET", `/v1/templates/${encodeURIComponent(key)}/diff?from=${live}&to=${version}`);
    pre.textContent = Object.values(result.fields).join("\n") || tr("no_differences");
    pre.hidden = false;
  }

  async function publishVersion(key, version) {
    try {
      const result = await api("POST", `/v1/templates/${encodeURIComponent(key)}/versions/${version}/publish`, {});
      say(tr(result.status === "pending_approval" ? "pending" : "published", { key, version }));
      await refresh(key);
    } catch (err) { say(tr("not_published", { error: err.message })); if (err.data && err.data.findings) showFindings(err.data.findings); }
  }

  async function refresh(key) {
    await loadList();
    const d = draft();
    const t = { key, channel: d.channel, locale: d.locale, variant: d.variant };
    const { items } = await api("GET", "/v1/templates");
    const found = items.find((i) => i.key === key && i.channel === t.channel && i.locale === t.locale && i.variant === t.variant);
    if (found) { state.current = found; showHistory(await api("GET", `/v1/templates/${encodeURIComponent(key)}`), found); }
  }

  async function save(andPublish) {
    const key = $("#f-key").value.trim();
    if (!key) { say(tr("key_required")); return; }
    try {
      const saved = await api("POST", `/v1/templates/${encodeURIComponent(key)}/versions`, draft());
      showFindings(saved.findings);
      say(tr("saved", { key, version: saved.version }));
      if (andPublish) await publishVersion(key, saved.version); else await refresh(key);
    } catch (err) { say(tr("not_saved", { error: err.message })); if (err.data && err.data.findings) showFindings(err.data.findings); }
  }

  $("#login").addEventListener("submit", (ev) => { ev.preventDefault(); sessionStorage.setItem("cadencia-api-key", $("#api-key").value); say(tr("key_set")); loadList(); });
  // The language is chosen here and remembered (a cookie the server reads, so the page comes back in it).
  $("#lang").addEventListener("change", () => { $("#language").submit(); });
  $("#use-rewrite").addEventListener("click", () => { if (state.rewrite) { $("#f-body").value = state.rewrite.body; schedulePreview(); } });
  $("#f-channel").addEventListener("change", () => { showFields(); schedulePreview(); });
  $("#editor").addEventListener("input", schedulePreview);
  $("#save").addEventListener("click", () => save(false));
  $("#save-publish").addEventListener("click", () => save(true));
  $("#new-template").addEventListener("click", () => {
    state.current = null;
    fill({ key: "", channel: "sms", locale: "es-MX", variant: "A", version: "new", content: {}, variables_schema: {} });
    $("#history tbody").replaceChildren();
    $("#changes").replaceChildren();
    $("#approvals").replaceChildren();
    say(tr("new_template"));
  });
  if (sessionStorage.getItem("cadencia-api-key")) $("#api-key").value = sessionStorage.getItem("cadencia-api-key");
  showFields();
  loadList();
})();
