// nst studio: the form is built from GET /api/plugins (methods, plugins' typed options, core settings),
// jobs go to POST /api/jobs, progress comes as server-sent events, the gallery from GET /api/jobs.
"use strict";

const LABELS = { "weights": "encoder weights", "tv-weight": "TV weight", "preserve-colors": "preserve colours" };
const MAIN_SETTINGS = ["size", "steps", "content-weight", "style-weight", "tv-weight", "preserve-colors", "weights", "seed"];
const ALWAYS_SENT = ["size", "steps"];
const COLOURS = ["#3056d3", "#d92d20", "#12b76a", "#f79009", "#7a5af8", "#0ba5ec", "#ee46bc", "#667085"];
const $ = (id) => document.getElementById(id);

const state = { catalog: null, content: null, contentSize: null, exampleSize: null, styles: [], job: null, events: null,
  plot: {}, lastStep: 0, previews: 0, estimates: 0, estimateTimer: null };

// --- token and requests ----------------------------------------------------------------------------

const token = (() => {
  const params = new URLSearchParams(location.search);
  const given = params.get("token");
  if (given) {
    sessionStorage.setItem("nst-token", given);
    params.delete("token");
    history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : ""));
  }
  return given || sessionStorage.getItem("nst-token");
})();

function withToken(url, extra = {}) {
  const u = new URL(url, location.origin);
  for (const [k, v] of Object.entries(extra)) u.searchParams.set(k, v);
  if (token) u.searchParams.set("token", token);
  return u.pathname + u.search;
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {}, token ? { "X-NST-Token": token } : {});
  const response = await fetch(path, Object.assign({}, options, { headers }));
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  return body;
}

function showError(message) {
  const line = $("error");
  line.textContent = message ? "error: " + message : "";
  line.hidden = !message;
}

// --- inputs: drop zones, examples, thumbnails ------------------------------------------------------

function thumb(src, title) {
  const img = document.createElement("img");
  img.src = src;
  img.title = img.alt = title;
  return img;
}

function inputSource(item) {
  return item.file ? URL.createObjectURL(item.file) : withToken(`/api/jobs/${item.job}/inputs/${item.index}`);
}

function renderInputs() {
  const content = state.content ? thumb(inputSource(state.content), state.content.name) : null;
  state.contentSize = null;
  if (content) content.addEventListener("load", () => { state.contentSize = [content.naturalWidth, content.naturalHeight]; estimateSoon(); });
  $("content-thumbs").replaceChildren(...(content ? [content] : []));
  $("styles-thumbs").replaceChildren(...state.styles.map((s) => thumb(inputSource(s), s.name)));
  estimateSoon();
}

function setFiles(which, files) {
  const items = Array.from(files).map((file) => ({ file, name: file.name }));
  if (which === "content") state.content = items[0] || null;
  else state.styles = items;
  renderInputs();
}

function wireDrop(zoneId, inputId, which) {
  const zone = $(zoneId), input = $(inputId);
  input.addEventListener("change", () => setFiles(which, input.files));
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    setFiles(which, e.dataTransfer.files);
  });
}

async function useExamples() {
  const load = async (name) => {
    const blob = await (await fetch(`/static/examples/${name}.jpg`)).blob();
    return new File([blob], `${name}.jpg`, { type: "image/jpeg" });
  };
  setFiles("content", [await load("content")]);
  setFiles("styles", [await load("style")]);
}

// --- the form, built from the catalog --------------------------------------------------------------

function text(value) {
  if (value === null || value === undefined) return "";
  return Array.isArray(value) ? value.join(",") : String(value);
}

// one input for a typed value (a plugin option or a core setting); data-default holds the value as text
function field(spec, name, label, help) {
  const wrap = document.createElement("label");
  wrap.className = "option";
  wrap.append(label + " ");
  let input;
  if (spec.kind === "bool") {
    input = document.createElement("input");
    input.type = "checkbox";
    input.checked = spec.default === true;
    wrap.prepend(input);
  } else if (spec.kind === "choice" || (name === "weights" && state.catalog)) {
    input = document.createElement("select");
    const values = name === "weights" && !spec.choices
      ? state.catalog.weights.filter((w) => w.encoder).map((w) => w.name) : spec.choices;
    for (const value of values) input.append(new Option(text(value), text(value)));
    if (spec.optional) input.prepend(new Option("(not set)", ""));
    input.value = text(spec.default);
  } else {
    input = document.createElement("input");
    input.type = spec.kind === "int" || spec.kind === "float" ? "number" : "text";
    if (input.type === "number") {
      input.step = spec.kind === "int" ? "1" : "any";
      if (spec.min !== null && spec.min !== undefined) input.min = spec.min;
      if (spec.max !== null && spec.max !== undefined) input.max = spec.max;
    }
    if (spec.kind === "list") input.placeholder = "comma-separated";
    if (spec.kind === "path") {
      input.disabled = true;
      input.placeholder = "a server file: set it with nst run";
    }
    input.value = text(spec.default);
  }
  input.dataset.name = name;
  input.dataset.default = spec.kind === "bool" ? String(spec.default === true) : text(spec.default);
  input.dataset.kind = spec.kind;
  if (spec.kind !== "bool") wrap.append(input);
  if (help) {
    const h = document.createElement("span");
    h.className = "help";
    h.textContent = help;
    wrap.append(h);
  }
  return wrap;
}

function valueOf(input) {
  return input.dataset.kind === "bool" ? String(input.checked) : input.value.trim();
}

function optionFields(plugin) {
  return plugin.options.map((o) => {
    const w = field(o, `${plugin.name}.${o.key}`, o.key, `${o.type}${o.help ? ": " + o.help : ""}`);
    w.querySelector("[data-name]").dataset.set = "1";
    return w;
  });
}

function renderMethodOptions() {
  const method = state.catalog.methods.find((m) => m.name === $("method").value);
  $("method-help").textContent = method ? method.help : "";
  const plugin = method && state.catalog.plugins.find((p) => p.name === method.plugin);
  const box = $("method-options");
  box.replaceChildren();
  if (plugin && plugin.options.length) {
    const set = document.createElement("fieldset");
    set.innerHTML = `<legend></legend>`;
    set.querySelector("legend").textContent = `${plugin.name} options`;
    set.append(...optionFields(plugin));
    box.append(set);
  }
}

function renderForm() {
  const c = state.catalog;
  $("device").textContent = `device ${c.device} · uploads up to ${(c.limits.upload_bytes / 1e6).toFixed(0)} MB, ${(c.limits.pixels / 1e6).toFixed(0)} Mpx`;
  const method = $("method");
  for (const m of c.methods) method.append(new Option(`${m.name} (${m.plugin})`, m.name));
  const defaultMethod = c.settings.find((s) => s.name === "method");
  method.value = defaultMethod ? defaultMethod.default : c.methods[0].name;
  method.addEventListener("change", renderMethodOptions);
  renderMethodOptions();
  for (const s of c.settings) {
    if (s.name === "method" || s.kind === "path") continue;
    const box = MAIN_SETTINGS.includes(s.name) ? $("main-settings") : $("more-settings");
    box.append(field(s, s.name, LABELS[s.name] || s.name.replace(/-/g, " "), s.help || s.type));
  }
  const plugins = $("plugins");
  for (const p of c.plugins.filter((p) => p.selectable)) {
    const set = document.createElement("fieldset");
    const head = document.createElement("label");
    head.className = "plugin-head";
    const box = document.createElement("input");
    box.type = "checkbox";
    box.dataset.plugin = p.name;
    head.append(box, `${p.name} `);
    const about = document.createElement("span");
    about.className = "help";
    about.textContent = `${p.package} ${p.version}`;
    head.append(about);
    const options = document.createElement("div");
    options.hidden = true;
    options.append(...optionFields(p));
    box.addEventListener("change", () => { options.hidden = !box.checked; });
    set.append(head, options);
    plugins.append(set);
  }
  if (!plugins.children.length) plugins.textContent = "No plugins that take part in runs are installed.";
}

// the job's settings, plugins and options (what both a job and its estimate send)
function settingsData() {
  const data = new FormData();
  data.append("method", $("method").value);
  for (const input of document.querySelectorAll("#main-settings [data-name], #more-settings [data-name]")) {
    const value = valueOf(input);
    if (ALWAYS_SENT.includes(input.dataset.name) || value !== input.dataset.default) data.append(input.dataset.name, value);
  }
  const active = new Set([$("method").value && (state.catalog.methods.find((m) => m.name === $("method").value) || {}).plugin]);
  for (const box of document.querySelectorAll("#plugins input[data-plugin]")) {
    if (box.checked) { data.append("plugins", box.dataset.plugin); active.add(box.dataset.plugin); }
  }
  for (const input of document.querySelectorAll("[data-set]")) {
    const plugin = input.dataset.name.split(".")[0];
    const value = valueOf(input);
    if (active.has(plugin) && !input.disabled && value !== input.dataset.default) data.append("set", `${input.dataset.name}=${value}`);
  }
  return data;
}

function formData() {
  const data = settingsData();
  const fromJob = [state.content, ...state.styles].find((i) => i && i.job);
  if (fromJob) data.append("inputs_from", fromJob.job);
  if (state.content && state.content.file) data.append("content", state.content.file, state.content.name);
  for (const s of state.styles) if (s.file) data.append("style", s.file, s.name);
  return data;
}

// --- the estimate shown before Run: POST /api/estimate whenever the form changes (the latest answer wins) -----

function estimateSoon() {
  if (!state.catalog) return;
  clearTimeout(state.estimateTimer);
  state.estimateTimer = setTimeout(estimate, 400);
}

async function estimate() {
  const line = $("estimate"), asked = ++state.estimates;
  const data = settingsData();
  const [width, height] = state.contentSize || state.exampleSize || [640, 480];
  data.append("width", String(width));
  data.append("height", String(height));
  data.append("styles", String(Math.max(1, state.styles.length)));
  line.textContent = "estimating the time on this device…";
  line.dataset.state = "pending";
  try {
    const answer = await api("/api/estimate", { method: "POST", body: data });
    if (asked !== state.estimates) return;
    line.textContent = `estimate: ${answer.text}`;
    line.title = answer.plan || "";
    line.dataset.state = answer.seconds === null ? "none" : "ready";
    line.dataset.seconds = answer.seconds === null ? "" : String(answer.seconds);
  } catch (e) {
    if (asked !== state.estimates) return;
    line.textContent = `no estimate: ${e.message}`;
    line.dataset.state = "error";
  }
}

// the default job for this device (GET /api/defaults): the form's starting values
async function applyDefaults() {
  const job = await api("/api/defaults");
  $("method").value = job.method;
  renderMethodOptions();
  for (const name of ["size", "steps"]) {
    const input = document.querySelector(`#main-settings [data-name="${name}"]`);
    if (input) input.value = String(job[name]);
  }
  $("defaults").textContent = `Starting values: ${job.why}.`;
}

// --- a job: submit, watch, cancel ------------------------------------------------------------------

async function submit(event) {
  event.preventDefault();
  showError("");
  if (!state.content) { showError("choose a content image (or use the built-in examples)"); return; }
  $("run").disabled = true;
  try {
    const created = await api("/api/jobs", { method: "POST", body: formData() });
    watch(created.id);
  } catch (e) {
    showError(e.message);
  } finally {
    $("run").disabled = false;
  }
}

function watch(id) {
  if (state.events) state.events.close();
  state.job = id;
  state.plot = {};
  state.lastStep = 0;
  $("notes").replaceChildren();
  $("download").hidden = true;
  $("cancel").disabled = false;
  $("status").className = "";
  $("status").textContent = "queued";
  drawPlot(null);
  const events = new EventSource(withToken(`/api/jobs/${id}/events`));
  state.events = events;
  events.addEventListener("progress", (e) => update(JSON.parse(e.data)));
  events.addEventListener("end", async (e) => {
    events.close();
    update(JSON.parse(e.data));
    try { showJobDetails(await api(`/api/jobs/${id}`)); } catch (err) { /* the gallery shows it anyway */ }
    loadGallery();
    estimateSoon();  // estimates wait while a job runs
  });
  events.onerror = () => {
    if (events.readyState === EventSource.CLOSED && state.job === id) $("status").textContent += " (connection lost)";
  };
}

// seconds as 0:42, 12:05 or 1:02:05; a rate as "3.2 steps/s" or "6.4 s/step" (as nst run prints them)
function clock(seconds) {
  const s = Math.round(seconds), two = (n) => String(n).padStart(2, "0");
  return s >= 3600 ? `${Math.floor(s / 3600)}:${two(Math.floor(s / 60) % 60)}:${two(s % 60)}` : `${Math.floor(s / 60)}:${two(s % 60)}`;
}

function rateText(rate) {
  return rate >= 1 ? `${rate.toPrecision(2)} steps/s` : `${(1 / rate).toPrecision(3)} s/step`;
}

function update(s) {
  if (s.id !== state.job) return;
  const status = $("status");
  const pace = s.status === "running" && s.rate ? [rateText(s.rate), s.left !== null ? `${clock(s.left)} left` : ""] : [];
  const steps = [s.total ? `step ${s.step} of ${s.total}` : s.step ? `step ${s.step}` : "", ...pace].filter(Boolean).join(", ");
  status.textContent = [s.status, steps].filter(Boolean).join(": ");
  status.className = s.status === "error" ? "error" : "";
  if (s.error) status.textContent += ` — ${s.error}`;
  $("progress").value = s.total ? s.step / s.total : (s.status === "done" ? 1 : 0);
  if (s.step > state.lastStep && s.losses) {
    for (const [k, v] of Object.entries(s.losses)) (state.plot[k] = state.plot[k] || []).push([s.step, v]);
    state.lastStep = s.step;
    drawPlot(s.total);
  }
  const preview = $("preview");
  const src = s.result ? withToken(s.result) : s.preview ? withToken(s.preview) : null;
  if (src && preview.getAttribute("src") !== src) {
    preview.src = src;
    preview.hidden = false;
    state.previews += 1;
    preview.dataset.updates = String(state.previews);
  }
  const finished = ["done", "error", "cancelled"].includes(s.status);
  $("cancel").disabled = finished;
  if (s.result) {
    const link = $("download");
    link.href = withToken(s.result, { download: "1" });
    link.hidden = false;
  }
  status.dataset.status = s.status;
}

function showJobDetails(job) {
  $("notes").replaceChildren(...job.notes.map((n) => Object.assign(document.createElement("li"), { textContent: "note: " + n })));
  if (job.history && job.history.length) {
    state.plot = {};
    for (const [step, losses] of job.history) {
      for (const [k, v] of Object.entries(losses)) (state.plot[k] = state.plot[k] || []).push([step, v]);
    }
    drawPlot(job.total);
  }
}

async function cancelJob() {
  if (!state.job) return;
  $("cancel").disabled = true;
  try { await api(`/api/jobs/${state.job}`, { method: "DELETE" }); } catch (e) { showError(e.message); }
}

// --- loss plot: log10 of each term against the step, on a canvas ----------------------------------

function drawPlot(total) {
  const canvas = $("plot"), g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, left = 44, right = 8, top = 8, bottom = 20;
  g.clearRect(0, 0, w, h);
  const series = Object.entries(state.plot).map(([k, pts]) => [k, pts.filter(([, v]) => v !== null && v > 0)]);
  const all = series.flatMap(([, pts]) => pts);
  g.fillStyle = "#667085";
  g.font = "11px sans-serif";
  if (!all.length) { g.fillText("loss terms appear here while a job runs", left, h / 2); return; }
  const maxStep = Math.max(total || 0, ...all.map(([s]) => s));
  const logs = all.map(([, v]) => Math.log10(v));
  let lo = Math.floor(Math.min(...logs)), hi = Math.ceil(Math.max(...logs));
  if (hi === lo) hi = lo + 1;
  const x = (s) => left + (w - left - right) * (s / maxStep);
  const y = (v) => top + (h - top - bottom) * (1 - (Math.log10(v) - lo) / (hi - lo));
  g.strokeStyle = "#d0d5dd";
  g.beginPath();
  g.moveTo(left, top); g.lineTo(left, h - bottom); g.lineTo(w - right, h - bottom);
  g.stroke();
  g.fillText(`1e${hi}`, 4, top + 8);
  g.fillText(`1e${lo}`, 4, h - bottom);
  g.fillText(`step ${maxStep}`, w - right - 60, h - 6);
  let legend = w - right;
  series.slice().reverse().forEach(([name, pts], r) => {
    const i = series.length - 1 - r;
    const colour = COLOURS[i % COLOURS.length];
    g.strokeStyle = g.fillStyle = colour;
    g.lineWidth = name === "total" ? 2.5 : 1.2;
    g.setLineDash(name === "total" ? [5, 3] : []);
    g.beginPath();
    pts.forEach(([s, v], j) => (j ? g.lineTo(x(s), y(v)) : g.moveTo(x(s), y(v))));
    g.stroke();
    legend -= g.measureText(name).width + 18;
    g.fillRect(legend, top + 2, 8, 8);
    g.fillText(name, legend + 11, top + 10);
  });
  g.setLineDash([]);
}

// --- gallery and re-run ----------------------------------------------------------------------------

function describeRequest(job) {
  const r = job.request;
  const parts = Object.entries(r.fields).map(([k, v]) => `${k} ${v}`);
  if (r.plugins.length) parts.push(`plugins ${r.plugins.join(",")}`);
  for (const s of r.sets) parts.push(`set ${s}`);
  parts.push(`inputs ${job.input_names.join(", ")}`);
  return parts.join(" · ");
}

async function loadGallery() {
  let listing;
  try { listing = await api("/api/jobs"); } catch (e) { showError(e.message); return; }
  const cards = listing.jobs.map((job) => {
    const card = document.createElement("div");
    card.className = "card";
    card.dataset.job = job.id;
    card.dataset.status = job.status;
    if (job.status === "done") card.append(thumb(withToken(job.result), "result"));
    else card.append(Object.assign(document.createElement("div"), { className: "no-image", textContent: "no result" }));
    const st = document.createElement("div");
    st.className = "state" + (job.status === "error" ? " error" : "");
    st.textContent = job.status + (job.error ? `: ${job.error}` : "") + ` · ${new Date(job.created * 1000).toLocaleString()}`;
    const settings = document.createElement("div");
    settings.className = "settings";
    settings.textContent = describeRequest(job);
    const actions = document.createElement("div");
    actions.className = "actions";
    if (job.status === "done") {
      const link = document.createElement("a");
      link.textContent = "Download";
      link.href = withToken(job.result, { download: "1" });
      actions.append(link);
    }
    const again = document.createElement("button");
    again.type = "button";
    again.className = "rerun";
    again.textContent = "Re-run with these settings";
    again.addEventListener("click", () => rerun(job));
    actions.append(again);
    card.append(st, settings, actions);
    return card;
  });
  $("gallery").replaceChildren(...cards);
  if (!cards.length) $("gallery").textContent = "No jobs yet.";
}

function rerun(job) {
  const r = job.request;
  for (const input of document.querySelectorAll("#main-settings [data-name], #more-settings [data-name]")) {
    const given = r.fields[input.dataset.name] ?? r.fields[input.dataset.name.replace(/-/g, "_")];
    input.value = given ?? input.dataset.default;
  }
  $("method").value = r.fields.method || $("method").value;
  renderMethodOptions();
  for (const box of document.querySelectorAll("#plugins input[data-plugin]")) {
    box.checked = r.plugins.includes(box.dataset.plugin);
    box.dispatchEvent(new Event("change"));
  }
  for (const item of r.sets) {
    const [key, ...rest] = item.split("=");
    const input = document.querySelector(`[data-set][data-name="${CSS.escape(key.trim())}"]`);
    if (!input) continue;
    if (input.dataset.kind === "bool") input.checked = ["1", "true", "yes", "on"].includes(rest.join("=").trim().toLowerCase());
    else input.value = rest.join("=");
  }
  state.content = { job: job.id, index: 0, name: job.input_names[0] };
  state.styles = job.input_names.slice(1).map((name, i) => ({ job: job.id, index: i + 1, name }));
  renderInputs();
  showError("");
  $("form").scrollIntoView({ behavior: "smooth" });
}

// --- start -----------------------------------------------------------------------------------------

async function start() {
  wireDrop("content-drop", "content", "content");
  wireDrop("styles-drop", "styles", "styles");
  $("examples").addEventListener("click", () => useExamples().catch((e) => showError(e.message)));
  $("form").addEventListener("submit", submit);
  $("cancel").addEventListener("click", cancelJob);
  drawPlot(null);
  try {
    state.catalog = await api("/api/plugins");
  } catch (e) {
    showError(e.message);
    return;
  }
  renderForm();
  try { await applyDefaults(); } catch (e) { $("defaults").textContent = `Starting values: the declared defaults (${e.message}).`; }
  const example = new Image();
  example.addEventListener("load", () => { state.exampleSize = [example.naturalWidth, example.naturalHeight]; estimateSoon(); });
  example.src = "/static/examples/content.jpg";
  $("form").addEventListener("input", estimateSoon);
  $("form").addEventListener("change", estimateSoon);
  document.body.dataset.ready = "1";
  await loadGallery();
  const unfinished = Array.from(document.querySelectorAll("#gallery .card"))
    .filter((c) => ["queued", "running"].includes(c.dataset.status)).pop();
  if (unfinished && !state.job) watch(unfinished.dataset.job);  // a reloaded page follows the job it left
}

document.addEventListener("DOMContentLoaded", start);
