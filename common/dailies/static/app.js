// The dailies page. Every text that comes from the story or the run is put in with textContent
// (never innerHTML), links only ever point to https:// addresses or to this server's fixed
// routes, and every change is a POST carrying the token in a header (common/dailies/server.py).
"use strict";

const TOKEN = document.querySelector('meta[name="dailies-token"]').content;
const VIEWS = ["tonight", "dailies", "morning", "publishing"];
const KIND_TITLES = {character: "Characters", location: "Locations", scene: "Scenes", clip: "Clips"};
const REFRESH_MS = 1000;
let current = null;
let timer = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function link(url, text) {
  return typeof url === "string" && url.startsWith("https://")
    ? el("a", {href: url, target: "_blank", rel: "noopener noreferrer"}, text || url) : el("span", {}, text || "");
}

function say(text, bad) {
  const box = document.getElementById("message");
  box.textContent = text || "";
  box.className = bad ? "bad" : "";
}

async function getJSON(path) {
  const answer = await fetch(path, {credentials: "same-origin", cache: "no-store"});
  if (!answer.ok) throw new Error((await answer.json().catch(() => ({}))).error || answer.statusText);
  return answer.json();
}

async function post(path, body) {
  const answer = await fetch(path, {
    method: "POST", credentials: "same-origin", cache: "no-store",
    headers: {"Content-Type": "application/json", "X-Dailies-Token": TOKEN}, body: JSON.stringify(body || {}),
  });
  const reply = await answer.json().catch(() => ({error: answer.statusText}));
  say(reply.message || reply.error, !answer.ok);
  return answer.ok;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return `${h}:${String(m).padStart(2, "0")}:${String(r).padStart(2, "0")}`;
}

function shortName(name) {  // "../../gen.audio/scripts/2.story.py" -> "gen.audio 2.story.py"
  return String(name).replace(/^(\.\.\/)+/, "").replace("/scripts/", " ");
}

function seconds(value) { return value < 60 ? `${Number(value).toFixed(1)}s` : duration(value); }

function dash(value) { return value === null || value === undefined ? "-" : value; }

// ------------------------------------------------------------------ Tonight

function renderTonight(data) {
  const root = document.getElementById("tonight");
  const now = data.current;
  root.dataset.running = data.running ? "yes" : "no";
  root.dataset.current = now ? now.name : "";
  root.dataset.done = data.steps.reduce((sum, s) => sum + (s.done || 0), 0);
  const head = data.running
    ? el("p", {class: "banner running"}, `A run is going (${data.holder.what}, pid ${data.holder.pid}, since ${data.holder.since}).`)
    : el("p", {class: "banner idle"}, "No run is going." +
        (data.last_finished ? ` Last step finished: ${shortName(data.last_finished.name)} at ${data.last_finished.at} (exit ${data.last_finished.code}).` : ""));
  const parts = [el("h2", {}, `Tonight: ${data.pipeline}`), head];
  if (now) {
    const p = now.progress;
    parts.push(el("div", {class: "current"},
      el("h3", {}, `Now: ${shortName(now.name)}`, el("span", {class: "muted"}, ` since ${now.started_at}`)),
      p ? el("div", {},
        el("progress", {max: p.total, value: p.done}),
        el("p", {class: "progress-line"}, `${p.label}: ${p.done}/${p.total} (${p.percent}%) · last: ${p.item} ${p.state} · ETA ${p.eta}`))
        : el("p", {class: "muted"}, "no item finished in this step yet")));
  }
  const rows = data.steps.map(s => el("tr", {class: now && now.name === s.name ? "now" : (s.started ? "" : "muted"), "data-step": s.name},
    el("td", {}, s.position), el("td", {}, shortName(s.name)), el("td", {}, dash(s.done)), el("td", {}, dash(s.preview)),
    el("td", {class: s.failed ? "bad" : ""}, dash(s.failed)), el("td", {}, s.left === null ? (s.started ? "?" : "-") : s.left),
    el("td", {}, s.started ? duration(s.took) : "not started")));
  parts.push(el("table", {class: "steps"},
    el("thead", {}, el("tr", {}, ["#", "script", "done", "preview", "failed", "left", "time"].map(h => el("th", {}, h)))),
    el("tbody", {}, rows)));
  const failed = data.status.filter(line => /^\s*(failed|redo them|reduced|redo them at full size):/.test(line));
  if (failed.length) parts.push(el("h3", {}, "Failed and reduced items"), el("pre", {class: "status"}, failed.join("\n")));
  parts.push(el("h3", {}, "Log"), el("pre", {class: "log"}, (data.log || []).join("\n")));
  root.replaceChildren(...parts);
}

// ------------------------------------------------------------------ Dailies

function editor(card, field, label, path, editable, note) {
  if (card[field] === null || card[field] === undefined) return null;
  if (!editable) return el("div", {class: "editor"}, el("p", {class: "label"}, label), el("p", {class: "text"}, card[field]),
    note ? el("p", {class: "muted"}, note) : null);
  const box = el("textarea", {rows: 3, class: field.replace("_", "-")});
  box.value = card[field];
  const save = el("button", {type: "button", class: `save-${field.replace("_", "-")}`, onclick: async () => {
    if (await post(path, {kind: card.kind, key: card.key, text: box.value})) loadView("dailies");
  }}, `Save ${field.replace("_", " ")}`);
  return el("div", {class: "editor"}, el("p", {class: "label"}, label), box, save);
}

function cardOf(card) {
  const media = card.media
    ? (card.kind === "clip"
      ? el("video", {src: card.media, controls: true, muted: true, loop: true, preload: "metadata", playsinline: true})
      : el("img", {src: card.media, alt: card.key, loading: "lazy"}))
    : el("div", {class: "missing"}, card.status === "failed" ? "failed" : "no file");
  const badges = el("p", {class: "badges"},
    el("span", {class: card.preview ? "badge preview" : "badge real"}, card.preview ? "preview" : "real"),
    card.take !== null && card.take !== undefined ? el("span", {class: "badge take"}, `take ${card.take}`) : null,
    card.seed !== null && card.seed !== undefined ? el("span", {class: "badge"}, `seed ${card.seed}`) : null,
    card.score !== null && card.score !== undefined
      ? el("span", {class: card.score < 0.5 ? "badge score low" : "badge score"}, `identity ${Number(card.score).toFixed(2)}`) : null,
    card.retake_asked ? el("span", {class: "badge asked"}, "retake asked") : null,
    card.approved ? el("span", {class: "badge approved"}, "approved") : null,
    card.status === "failed" ? el("span", {class: "badge bad"}, "failed") : null);
  const descriptionNote = card.description_file ? `in input/${card.description_file}` : "";
  return el("article", {class: `card ${card.kind}`, "data-kind": card.kind, "data-key": card.key},
    media,
    el("h4", {}, card.key),
    badges,
    card.error ? el("p", {class: "bad"}, card.error) : null,
    card.prompt ? el("details", {}, el("summary", {}, card.kind === "clip" ? "motion prompt" : "prompt"), el("p", {class: "prompt"}, card.prompt)) : null,
    card.kind === "character" || card.kind === "location"
      ? editor(card, "description", `description (${descriptionNote})`, "/api/description", true) : null,
    card.kind === "scene" ? editor(card, "scene_line", "scene line", "/api/scene-line", card.scene_line_editable,
      "written by the text engine into 3.scene.txt, which 1.story.py writes anew: put scene lines in the story to edit them") : null,
    el("div", {class: "actions"},
      el("button", {type: "button", class: "approve", onclick: async () => {
        if (await post("/api/approve", {kind: card.kind, key: card.key})) loadView("dailies");
      }}, "Approve"),
      el("button", {type: "button", class: "retake", onclick: async () => {
        if (await post("/api/retake", {kind: card.kind, key: card.key})) loadView("dailies");
      }}, card.kind === "clip" ? "Retake its picture" : "Retake")));
}

function renderDailies(data) {
  const root = document.getElementById("dailies");
  const parts = [el("h2", {}, "Dailies"),
    el("p", {class: "muted"}, "Retake adds the id to retake.txt and edits are saved into the input files, as a hand edit would be: the next run (python generate.py) makes exactly those again, and what is made from them.")];
  let count = 0;
  for (const kind of ["character", "location", "scene", "clip"]) {
    const cards = data.kinds[kind] || [];
    count += cards.length;
    if (!cards.length) continue;
    parts.push(el("h3", {}, `${KIND_TITLES[kind]} (${cards.length})`), el("div", {class: "grid"}, cards.map(cardOf)));
  }
  if (!count) parts.push(el("p", {}, "No pictures or clips yet: they appear here as the run makes them."));
  root.replaceChildren(...parts);
}

// ------------------------------------------------------------------ Morning report

function parseTime(text) {
  const m = /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)$/.exec(text || "");
  return m ? new Date(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]).getTime() / 1000 : null;
}

function timeline(report) {
  const steps = report.steps || [];
  const start = parseTime(report.started_at) || 0;
  const spans = steps.map(s => {
    const at = parseTime(s.started_at);
    return {step: s, from: at === null ? null : at - start, took: s.took || 0};
  });
  const end = Math.max(1, ...spans.map(s => (s.from || 0) + s.took), (parseTime(report.ended_at) || start) - start);
  const row = 22, labelWidth = 230, width = 1000, chart = width - labelWidth - 250;
  const box = svg("svg", {class: "timeline", viewBox: `0 0 ${width} ${row * spans.length + 30}`, role: "img"});
  box.append(svg("title", {}, "steps on a time line: start and length, items made / already done / failed"));
  spans.forEach((s, i) => {
    const y = i * row + 4;
    const state = s.step.code === null ? "notrun" : s.step.skipped_since ? "skipped" : s.step.code === 0 ? "ok" : "failed";
    const group = svg("g", {class: `bar ${state}`, "data-step": s.step.name});
    group.append(svg("text", {x: 0, y: y + 14, class: "label"}, `${s.step.position}. ${shortName(s.step.name)}`));
    if (s.from !== null) {
      const x = labelWidth + (s.from / end) * chart;
      const w = Math.max(2, (s.took / end) * chart);
      group.append(svg("rect", {x, y, width: w, height: row - 6, rx: 3}));
      const words = `${seconds(s.took)} · ${s.step.made} made, ${s.step.cached} already done, ${s.step.failed} failed`;
      group.append(svg("text", {x: x + w + 4, y: y + 14, class: "words"}, words));
    } else {
      group.append(svg("text", {x: labelWidth, y: y + 14, class: "words"}, s.step.skipped_since ? `up to date since ${s.step.skipped_since}, skipped` : "not run"));
    }
    box.append(group);
  });
  box.append(svg("text", {x: labelWidth, y: row * spans.length + 22, class: "axis"}, `from ${report.started_at}, ${duration(end)} in all`));
  return box;
}

function uploadState(up) {
  if (!up || !up.present) return el("p", {class: "muted"}, "This pipeline does not publish.");
  const list = el("ul", {class: "uploads"}, (up.uploads || []).map(u => el("li", {"data-item": u.item},
    `${u.item}: ${u.status}`, u.privacy ? ` (${u.privacy}) ` : " ", u.url ? link(u.url) : "",
    u.status === "uploading" && u.size ? ` ${Math.round(100 * (u.progress || 0) / u.size)}% sent` : "")));
  return el("div", {class: "upload"},
    el("p", {class: "approval"}, up.approved ? `Video approved for publishing on ${up.approved_at}.`
      : up.approval_stale ? "The video changed since it was approved: it needs a new approval."
      : "The video is not approved for publishing.",
      up.require_approval ? " YOUTUBE_REQUIRE_APPROVAL is on: step 12 uploads only an approved video." : ""),
    (up.uploads || []).length ? list : el("p", {}, "Nothing uploaded yet."),
    up.manifest ? el("p", {class: "muted"}, `Last step 12 was a dry run (${up.manifest.dry_run}): ${up.manifest.requests} request(s) written to upload.manifest.json, nothing sent.`) : null);
}

function renderMorning(data) {
  const root = document.getElementById("morning");
  const report = data.report;
  const parts = [el("h2", {}, "Morning report")];
  if (!report) {
    parts.push(el("p", {}, "No report yet: every run writes output/report.json when it ends."));
  } else {
    parts.push(el("p", {class: report.code === 0 ? "banner idle" : "banner bad"},
      `${report.pipeline} run from ${report.started_at} to ${report.ended_at}: ${report.summary}`),
      el("p", {class: "muted"}, report.engine || ""));
  }
  const media = el("div", {class: "media"});
  if (data.thumbnail) media.append(el("figure", {}, el("img", {src: data.thumbnail, alt: "thumbnail", class: "thumbnail"}), el("figcaption", {}, "thumbnail")));
  if (data.video) media.append(el("figure", {}, el("video", {src: data.video, controls: true, preload: "metadata", class: "final"}), el("figcaption", {}, "final video")));
  parts.push(media);
  if (data.shorts.length) parts.push(el("h3", {}, `Shorts (${data.shorts.length})`), el("div", {class: "shorts"},
    data.shorts.map(s => el("figure", {}, el("video", {src: s.media, controls: true, preload: "metadata"}), el("figcaption", {}, `Short ${s.number}`)))));
  if (report) {
    parts.push(el("h3", {}, "Steps"), timeline(report));
    const failed = (report.steps || []).filter(s => (s.failed_items || []).length);
    if (failed.length) {
      parts.push(el("h3", {}, "Failed items"), el("ul", {class: "failed"}, failed.map(s => el("li", {},
        el("strong", {}, shortName(s.name)), el("ul", {}, s.failed_items.map(f => el("li", {}, `${f.key}: ${f.error}`))),
        el("p", {}, "redo them: ", el("code", {}, s.redo || ""))))));
    }
    parts.push(el("p", {}, report.next ? el("span", {}, "Next: ", el("code", {}, report.next)) : "Nothing left to run."));
  }
  parts.push(el("h3", {}, "Upload"), uploadState(data.upload));
  root.replaceChildren(...parts);
}

// ------------------------------------------------------------------ Publishing approval

function renderPublishing(up) {
  const root = document.getElementById("publishing");
  const parts = [el("h2", {}, "Publishing approval")];
  root.dataset.approved = up.approved ? "yes" : "no";
  if (!up.present) {
    parts.push(el("p", {}, "This pipeline does not publish (it has no 12.youtube.py)."));
  } else if (!up.video_exists) {
    parts.push(el("p", {}, `The video to publish (${up.video}) is not made yet.`));
  } else {
    parts.push(el("video", {src: "/media/output/video", controls: true, preload: "metadata", class: "final"}),
      el("p", {}, `${up.video}, ${(up.size / (1024 * 1024)).toFixed(1)} MB.`),
      el("p", {}, up.require_approval
        ? "YOUTUBE_REQUIRE_APPROVAL is on: step 12 uploads this video only once it is approved here, and only as it is now."
        : "YOUTUBE_REQUIRE_APPROVAL is off: step 12 uploads without waiting for this approval."),
      el("button", {type: "button", id: "approve-upload", onclick: async () => {
        if (await post("/api/publish/approve", {})) loadView("publishing");
      }}, up.approved ? "Approve again" : "Approve this video for upload"));
  }
  parts.push(uploadState(up));
  root.replaceChildren(...parts);
}

// ------------------------------------------------------------------ switching and refreshing

const RENDER = {tonight: renderTonight, dailies: renderDailies, morning: renderMorning, publishing: renderPublishing};

async function loadView(view) {
  try {
    RENDER[view](await getJSON(`/api/${view}`));
    document.getElementById(view).dataset.loaded = String(Date.now());
  } catch (error) {
    say(`could not read ${view}: ${error.message}`, true);
  }
}

function show(view) {
  if (!VIEWS.includes(view)) view = "tonight";
  current = view;
  for (const name of VIEWS) document.getElementById(name).hidden = name !== view;
  for (const button of document.querySelectorAll("nav button")) button.classList.toggle("active", button.dataset.view === view);
  clearInterval(timer);
  loadView(view);
  if (view === "tonight") timer = setInterval(() => loadView("tonight"), REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("nav button")) {
    button.addEventListener("click", () => { location.hash = button.dataset.view; });
  }
  window.addEventListener("hashchange", () => show(location.hash.slice(1)));
  show(location.hash.slice(1));
});
