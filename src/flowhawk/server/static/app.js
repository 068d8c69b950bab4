/* flowhawk UI: live fragments, tabs, the flow editor, backfill preview, log tailing. */
"use strict";

const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

async function api(method, url, body, type) {
  const headers = { "X-CSRF-Token": csrf(), Accept: "application/json" };
  let payload = body;
  if (body !== undefined && type === undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  } else if (type) {
    headers["Content-Type"] = type;
  }
  const response = await fetch(url, { method, headers, body: payload, credentials: "same-origin" });
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  return { ok: response.ok, status: response.status, data };
}

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function detailText(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((p) => (p.line ? `line ${p.line}: ` : "") + (p.path ? `${p.path}: ` : "") + (p.message || p.msg || JSON.stringify(p))).join("\n");
  }
  return JSON.stringify(detail);
}

/* -- live fragments: [data-live] is re-fetched until the fragment says data-final -------------- */
function startLive(node) {
  const url = node.dataset.live;
  const every = parseInt(node.dataset.every || "2000", 10);
  let busy = false;
  const timer = setInterval(async () => {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (response.ok) {
        const html = await response.text();
        const open = Array.from(node.querySelectorAll("details[open]")).map((d) => d.textContent.slice(0, 40));
        node.innerHTML = html;
        node.querySelectorAll("details").forEach((d) => { if (open.includes(d.textContent.slice(0, 40))) d.open = true; });
        if (node.querySelector("[data-final]")) clearInterval(timer);
      }
    } finally {
      busy = false;
    }
  }, every);
}

/* -- tabs ------------------------------------------------------------------------------------- */
function setupTabs(nav) {
  const show = (name) => {
    const target = document.getElementById(`tab-${name}`);
    if (!target) return;
    document.querySelectorAll("section.tab").forEach((s) => { s.hidden = s !== target; });
    nav.querySelectorAll("a").forEach((a) => a.classList.toggle("on", a.dataset.tab === name));
    if (name === "editor") document.dispatchEvent(new Event("editor-shown"));
  };
  nav.querySelectorAll("a").forEach((a) => a.addEventListener("click", (ev) => {
    ev.preventDefault();
    history.replaceState(null, "", `#${a.dataset.tab}`);
    show(a.dataset.tab);
  }));
  show((location.hash || "#overview").slice(1));
}

/* -- the YAML editor: line numbers, validation as you type, save ------------------------------- */
function setupEditor(root) {
  const area = root.querySelector("textarea");
  const gutter = root.querySelector(".gutter");
  const validity = root.querySelector("#validity");
  const list = root.querySelector("#problems");
  const save = root.querySelector("#save");
  let errorLines = new Set();
  let timer = null;
  let sequence = 0;

  const paintGutter = () => {
    const count = area.value.split("\n").length;
    const lines = [];
    for (let i = 1; i <= count; i += 1) lines.push(errorLines.has(i) ? `<b class="err" title="problem here">${i}</b>` : `${i}`);
    gutter.innerHTML = lines.join("\n") + "\n";
    gutter.scrollTop = area.scrollTop;
  };

  const show = (problems) => {
    errorLines = new Set(problems.map((p) => p.line));
    list.innerHTML = "";
    problems.forEach((p) => {
      const item = el("li", { "data-line": p.line });
      item.append(el("a", { href: "#" }, `line ${p.line}`), document.createTextNode(` ${p.path ? p.path + ": " : ""}${p.message}`));
      item.querySelector("a").addEventListener("click", (ev) => { ev.preventDefault(); goToLine(p.line); });
      list.append(item);
    });
    validity.textContent = problems.length ? `${problems.length} problem${problems.length > 1 ? "s" : ""}` : "valid";
    validity.className = `validity ${problems.length ? "bad" : "good"}`;
    paintGutter();
  };

  const goToLine = (line) => {
    const lines = area.value.split("\n");
    const start = lines.slice(0, line - 1).join("\n").length + (line > 1 ? 1 : 0);
    area.focus();
    area.setSelectionRange(start, start + (lines[line - 1] || "").length);
    area.scrollTop = Math.max(0, (line - 5) * parseFloat(getComputedStyle(area).lineHeight));
  };

  const validate = async () => {
    const mine = ++sequence;
    validity.textContent = "checking…";
    validity.className = "validity";
    const result = await api("POST", root.dataset.validate, area.value, "application/x-yaml");
    if (mine !== sequence) return;
    if (result.ok && result.data) show(result.data.problems);
    else { validity.textContent = `could not check (${result.status})`; validity.className = "validity bad"; }
  };

  area.addEventListener("input", () => {
    paintGutter();
    clearTimeout(timer);
    timer = setTimeout(validate, 300);
  });
  area.addEventListener("scroll", () => { gutter.scrollTop = area.scrollTop; });
  area.addEventListener("keydown", (ev) => {
    if (ev.key === "Tab" && !ev.shiftKey) {
      ev.preventDefault();
      area.setRangeText("  ", area.selectionStart, area.selectionEnd, "end");
      area.dispatchEvent(new Event("input"));
    }
    if ((ev.ctrlKey || ev.metaKey) && ev.key === "s") { ev.preventDefault(); save.click(); }
  });
  save.addEventListener("click", async () => {
    const ref = save.dataset.flow;
    save.disabled = true;
    validity.textContent = "saving…";
    const result = ref
      ? await api("PUT", `/api/v1/flows/${ref}`, area.value, "application/x-yaml")
      : await api("POST", "/api/v1/flows", area.value, "application/x-yaml");
    save.disabled = false;
    if (result.ok) {
      validity.textContent = result.data.changed ? `saved revision ${result.data.revision}` : "no change";
      validity.className = "validity good";
      setTimeout(() => { location.href = `/ui/flows/${result.data.namespace}/${result.data.id}`; }, 400);
    } else if (Array.isArray(result.data && result.data.detail)) {
      show(result.data.detail);
      validity.textContent = "not saved: " + validity.textContent;
    } else {
      validity.textContent = `not saved: ${detailText(result.data ? result.data.detail : result.status)}`;
      validity.className = "validity bad";
    }
  });
  document.addEventListener("editor-shown", paintGutter);
  paintGutter();
  validate();
}

/* -- backfill: preview the ticks before the submit button is enabled -------------------------- */
function setupBackfill(form) {
  const submit = form.querySelector("#backfill-submit");
  const box = form.querySelector("#plan");
  const pairs = (text) => {
    const out = {};
    text.split(/[\n,]/).map((s) => s.trim()).filter(Boolean).forEach((chunk) => {
      const m = chunk.match(/^([^:=]+)[:=](.*)$/);
      if (m) out[m[1].trim()] = m[2].trim();
    });
    return out;
  };
  const body = () => {
    const data = new FormData(form);
    const inputs = {};
    for (const [key, value] of data.entries()) {
      if (key.startsWith("input.") && value !== "") {
        const id = key.slice(6);
        if (inputs[id] !== undefined) inputs[id] = [].concat(inputs[id], value); else inputs[id] = value;
      }
    }
    return {
      namespace: form.dataset.namespace,
      flowId: form.dataset.flow,
      triggerId: data.get("trigger") || null,
      start: data.get("start"),
      end: data.get("end"),
      labels: pairs(data.get("labels") || ""),
      inputs,
      parallelism: parseInt(data.get("parallelism") || "1", 10),
      onlyMissing: data.get("only_missing") === "on",
    };
  };
  form.addEventListener("input", () => { submit.disabled = true; box.hidden = true; });
  form.querySelector("#plan-button").addEventListener("click", async () => {
    box.hidden = false;
    box.textContent = "planning…";
    const result = await api("POST", form.dataset.plan, body());
    box.innerHTML = "";
    if (!result.ok) {
      box.append(el("p", { class: "bad" }, detailText(result.data ? result.data.detail : result.status)));
      return;
    }
    const plan = result.data;
    box.append(el("p", { class: "plan-summary" }, `${plan.summary} · ${plan.triggerId} in ${plan.timezone} · labels ${Object.entries(plan.labels).map(([k, v]) => `${k}:${v}`).join(", ")}`));
    plan.notes.forEach((n) => box.append(el("p", { class: "note" }, n)));
    const list = el("ol", { class: "ticks" });
    plan.ticks.slice(0, 500).forEach((t) => list.append(el("li", {}, t)));
    if (plan.ticks.length > 500) list.append(el("li", { class: "muted" }, `… ${plan.ticks.length - 500} more`));
    plan.skipped.slice(0, 200).forEach((s) => list.append(el("li", { class: "skipped" }, `${s.tick} — skipped (${s.state})`)));
    box.append(list);
    submit.disabled = plan.ticks.length === 0;
  });
}

/* -- logs: server-sent events, with a level filter -------------------------------------------- */
function setupLogs(box) {
  const levelSelect = document.getElementById("log-level");
  const badge = document.getElementById("log-live");
  const counter = document.getElementById("log-count");
  let source = null;
  let count = 0;
  const connect = () => {
    if (source) source.close();
    box.innerHTML = "";
    count = 0;
    const url = `${box.dataset.stream}?minLevel=${encodeURIComponent(levelSelect.value)}`;
    source = new EventSource(url);
    badge.hidden = false;
    source.addEventListener("log", (ev) => {
      const line = JSON.parse(ev.data);
      const stick = box.scrollTop + box.clientHeight >= box.scrollHeight - 30;
      const row = el("div", { class: `line lvl-${line.level}`, "data-level": line.level });
      row.append(
        el("span", { class: "ts" }, line.timestamp.slice(11, 23)),
        el("span", { class: "lvl" }, line.level),
        el("span", { class: "task" }, line.taskId || "—"),
        el("span", { class: "msg" }, line.message),
      );
      box.append(row);
      count += 1;
      counter.textContent = `${count} line${count === 1 ? "" : "s"}`;
      if (stick) box.scrollTop = box.scrollHeight;
    });
    source.addEventListener("end", () => {
      source.close();
      badge.hidden = true;
      if (!count) box.append(el("div", { class: "muted" }, "No log line at this level."));
    });
  };
  levelSelect.addEventListener("change", connect);
  connect();
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(startLive);
  document.querySelectorAll("[data-tabs]").forEach(setupTabs);
  const editor = document.getElementById("flow-editor");
  if (editor) setupEditor(editor);
  const backfill = document.getElementById("backfill-form");
  if (backfill) setupBackfill(backfill);
  const logs = document.getElementById("logs");
  if (logs) setupLogs(logs);
});
