"use strict";
// Cadencia template editor: talks to /v1/templates with the API key kept in sessionStorage.
(() => {
  const $ = (sel) => document.querySelector(sel);
  const FIELDS = ["body", "content_sid", "content_variables", "subject", "text", "html", "voice_script", "voicemail_script", "ivr_prompts"];
  const MAPS = new Set(["content_variables", "ivr_prompts"]);
  const state = { current: null };

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
      if (MAPS.has(name)) { try { content[name] = JSON.parse(box.value); } catch { throw new Error(`${name} is not valid JSON`); } }
      else content[name] = box.value;
    }
    let schema = {};
    try { schema = JSON.parse($("#f-schema").value || "{}"); } catch { throw new Error("variables schema is not valid JSON"); }
    return { channel, locale: $("#f-locale").value.trim(), variant: $("#f-variant").value.trim() || "A", content, variables_schema: schema };
  }

  function showFindings(findings) {
    const list = $("#findings");
    list.replaceChildren();
    if (!findings.length) { list.append(el("li", { class: "info" }, "No problems found.")); return; }
    for (const f of findings) {
      const where = [f.field, f.line ? `line ${f.line}` : null, f.column ? `col ${f.column}` : null].filter(Boolean).join(", ");
      list.append(el("li", { class: f.severity }, `${f.severity.toUpperCase()} ${f.code}${where ? ` (${where})` : ""}: ${f.message}`));
    }
  }

  function showPreview(result) {
    const pane = $("#preview");
    pane.replaceChildren();
    const rendered = result.rendered || {};
    for (const name of ["subject", "body", "text", "html", "voice_script", "voicemail_script"]) {
      if (rendered[name] !== undefined) pane.append(el("div", { class: "part", "data-field": name }, el("h4", {}, name), rendered[name]));
    }
    for (const name of ["ivr_prompts", "content_variables"]) {
      if (rendered[name]) pane.append(el("div", { class: "part", "data-field": name }, el("h4", {}, name), JSON.stringify(rendered[name], null, 2)));
    }
    const sms = result.sms;
    $("#segments").textContent = sms ? `${sms.segments} segment${sms.segments === 1 ? "" : "s"} · ${sms.encoding} · ${sms.units} units (${sms.per_segment} per segment)` : "";
    showFindings(result.findings || []);
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
    } catch (err) { say(`Could not load templates: ${err.message}`); }
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
    say(`Editing ${v.key} v${v.version}`);
  }

  function showHistory(detail, t) {
    const body = $("#history tbody");
    body.replaceChildren();
    for (const v of [...detail.versions].reverse()) {
      const combo = `${v.channel} · ${v.locale} · ${v.variant}`;
      const publish = el("button", { type: "button", "data-version": v.version }, v.live ? "Live" : "Publish");
      publish.disabled = v.live;
      publish.setAttribute("aria-label", `${v.live ? "Live" : "Publish (rollback to)"} version ${v.version}`);
      publish.addEventListener("click", () => publishVersion(v.key, v.version));
      const open = el("button", { type: "button" }, "Open");
      open.addEventListener("click", () => { fill(v); runPreview(); });
      const diff = el("button", { type: "button" }, "Diff");
      diff.addEventListener("click", () => showDiff(v.key, v.version));
      body.append(el("tr", {}, el("td", {}, `v${v.version}`), el("td", {}, combo), el("td", {}, new Date(v.created_at).toLocaleString()),
        el("td", {}, v.live ? "published" : (v.published_at ? "rolled back" : "draft")), el("td", {}, open, " ", diff, " ", publish)));
    }
  }

  async function showDiff(key, version) {
    const live = state.current && state.current.published_version;
    const pre = $("#diff");
    if (!live || live === version) { pre.hidden = true; return; }
    const result = await api("GET", `/v1/templates/${encodeURIComponent(key)}/diff?from=${live}&to=${version}`);
    pre.textContent = Object.values(result.fields).join("\n") || "No differences.";
    pre.hidden = false;
  }

  async function publishVersion(key, version) {
    try {
      await api("POST", `/v1/templates/${encodeURIComponent(key)}/versions/${version}/publish`, {});
      say(`Published ${key} v${version}`);
      await refresh(key);
    } catch (err) { say(`Not published: ${err.message}`); if (err.data && err.data.findings) showFindings(err.data.findings); }
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
    if (!key) { say("A key is required."); return; }
    try {
      const saved = await api("POST", `/v1/templates/${encodeURIComponent(key)}/versions`, draft());
      showFindings(saved.findings);
      say(`Saved ${key} v${saved.version}`);
      if (andPublish) await publishVersion(key, saved.version); else await refresh(key);
    } catch (err) { say(`Not saved: ${err.message}`); if (err.data && err.data.findings) showFindings(err.data.findings); }
  }

  $("#login").addEventListener("submit", (ev) => { ev.preventDefault(); sessionStorage.setItem("cadencia-api-key", $("#api-key").value); say("Key set."); loadList(); });
  $("#f-channel").addEventListener("change", () => { showFields(); schedulePreview(); });
  $("#editor").addEventListener("input", schedulePreview);
  $("#save").addEventListener("click", () => save(false));
  $("#save-publish").addEventListener("click", () => save(true));
  $("#new-template").addEventListener("click", () => {
    state.current = null;
    fill({ key: "", channel: "sms", locale: "es-MX", variant: "A", version: "new", content: {}, variables_schema: {} });
    $("#history tbody").replaceChildren();
    say("New template");
  });
  if (sessionStorage.getItem("cadencia-api-key")) $("#api-key").value = sessionStorage.getItem("cadencia-api-key");
  showFields();
  loadList();
})();
