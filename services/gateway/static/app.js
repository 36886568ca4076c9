// artsearch web UI: plain browser JavaScript, no build step, no network beyond this gateway's API.
"use strict";

const $ = (id) => document.getElementById(id);

const SLIDERS = ["w-content", "w-style", "w-colour", "w-influence"];
const ASPECT_SLIDERS = ["w-content", "w-style", "w-colour"];
const DEFAULT_ASPECT_WEIGHTS = { "w-content": 0.5, "w-style": 0.3, "w-colour": 0.2 };
const RERUN_DELAY_MS = 350;
const THUMBNAIL_SIZE = 256;

const state = {
  // {kind: "file", file, name} | {kind: "url", url} | {kind: "similar", id, title, artist}; a file or URL
  // query also holds the picture_id its last answer gave (the gateway keeps the picture's descriptors).
  query: null,
  aspectWeightsTouched: false,
  offset: 0,
  nextCursor: null, // the next_cursor of the last answer shown, and the parameters it was searched with
  cursorParams: null,
  uploads: 0, // pictures this page has sent to the gateway (uploads and URLs), for the tests and the curious
  sequence: 0, // answers to older requests than the latest are dropped
  controller: null,
  rerunTimer: null,
  previewUrl: null,
};

// ---- requests ---------------------------------------------------------------------------------------

function searchParams(offset) {
  const params = new URLSearchParams();
  params.set("k", $("k").value);
  if (offset) params.set("offset", String(offset));
  params.set("influence_weight", $("w-influence").value);
  if (state.aspectWeightsTouched) {
    for (const id of ASPECT_SLIDERS) params.set($(id).dataset.param, $(id).value);
  }
  if (!$("rerank").checked) params.set("rerank", "false");
  const artist = $("source-artist").value.trim();
  if (artist) params.set("source_artist", artist);
  if ($("exclude-same-artist").checked) params.set("exclude_same_artist", "true");
  return params;
}

function jsonPost(body) {
  return { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
}

// The request that sends the query itself: the artwork's id, the image URL, or the uploaded file.
function requestFor(query, offset) {
  const params = searchParams(offset);
  if (query.kind === "similar") {
    const url = `/v1/artworks/${encodeURIComponent(query.id)}/similar?${params}`;
    return { url, init: { method: "GET" }, sent: "similar" };
  }
  if (query.kind === "url") {
    return { url: `/v1/search?${params}`, init: jsonPost({ url: query.url }), sent: "url" };
  }
  const form = new FormData();
  form.append("image", query.file, query.name || "query");
  return { url: `/v1/search?${params}`, init: { method: "POST", body: form }, sent: "upload" };
}

// The requests to try in turn, cheapest first; a 410 (the gateway no longer keeps what a request refers
// to) moves on to the next. Another page of the same ranking: its cursor. The same picture with other
// parameters: its picture_id, so the picture is not uploaded, fetched or encoded again. Last, the query.
function requestsFor(query, offset, append) {
  const requests = [];
  if (append && state.nextCursor && state.cursorParams === searchParams(0).toString()) {
    const cursor = new URLSearchParams({ cursor: state.nextCursor });
    const route = query.kind === "similar" ? `/v1/artworks/${encodeURIComponent(query.id)}/similar` : "/v1/search";
    requests.push({ url: `${route}?${cursor}`, init: { method: "GET" }, sent: "cursor" });
  }
  if (query.pictureId && query.kind !== "similar") {
    const url = `/v1/search?${searchParams(offset)}`;
    requests.push({ url, init: jsonPost({ picture_id: query.pictureId }), sent: "picture_id" });
  }
  requests.push(requestFor(query, offset));
  return requests;
}

// The answer to the first request of `requests` that is not a 410 (its error thrown when not ok).
async function firstAnswer(query, requests, signal) {
  for (const [index, request] of requests.entries()) {
    if (request.sent === "upload" || request.sent === "url") state.uploads += 1;
    $("results").dataset.request = request.url;
    const reply = await fetch(request.url, { ...request.init, signal });
    if (reply.status === 410 && index < requests.length - 1) {
      if (request.sent === "picture_id") query.pictureId = null; // expired: the picture goes again
      if (request.sent === "cursor") state.nextCursor = null;
      continue;
    }
    if (!reply.ok) throw new Error(await errorMessage(reply));
    return { answer: await reply.json(), request };
  }
  throw new Error("no request to send");
}

async function errorMessage(reply) {
  let message = `${reply.status} ${reply.statusText}`.trim();
  try {
    const body = await reply.json();
    if (body && body.error && body.error.message) message = body.error.message;
    else if (body && body.detail) message = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch (_) {
    // not JSON: keep the status line
  }
  const retry = reply.headers.get("Retry-After");
  if (retry) message += ` (retry in ${retry} s)`;
  return message;
}

async function run(query, { append = false } = {}) {
  state.query = query;
  const offset = append ? state.offset : 0;
  const params = searchParams(0).toString();
  const requests = requestsFor(query, offset, append);
  if (state.controller) state.controller.abort();
  const controller = new AbortController();
  state.controller = controller;
  const sequence = ++state.sequence;
  setBusy(true);
  hideError();
  setStatus(append ? "Loading more results…" : "Searching…");
  try {
    const { answer, request } = await firstAnswer(query, requests, controller.signal);
    if (sequence !== state.sequence) return;
    if (query.kind !== "similar" && "picture_id" in answer) query.pictureId = answer.picture_id;
    state.nextCursor = answer.next_cursor || null;
    state.cursorParams = params;
    $("results").dataset.sent = request.sent;
    $("results").dataset.uploads = String(state.uploads);
    show(answer, { append, offset, request: request.url });
  } catch (error) {
    if (error.name === "AbortError" || sequence !== state.sequence) return;
    showError(error.message || String(error));
    setStatus(append ? "" : "No results.");
  } finally {
    if (sequence === state.sequence) setBusy(false);
  }
}

function rerunSoon() {
  if (!state.query) return;
  clearTimeout(state.rerunTimer);
  state.rerunTimer = setTimeout(() => run(state.query), RERUN_DELAY_MS);
}

// ---- showing an answer ------------------------------------------------------------------------------

function show(answer, { append, offset, request }) {
  const results = Array.isArray(answer.results) ? answer.results : [];
  const list = $("results");
  if (!append) list.replaceChildren();
  results.forEach((result, i) => list.append(card(result, offset + i + 1)));
  list.dataset.answered = request;
  state.offset = offset + results.length;
  const k = Number(answer.k || $("k").value);
  $("more").hidden = results.length < k;
  showDegraded(answer.degraded);
  showSummary(answer);
  const took = answer.timings_ms && answer.timings_ms.total ? ` in ${Math.round(answer.timings_ms.total)} ms` : "";
  setStatus(
    state.offset
      ? `${state.offset} result${state.offset === 1 ? "" : "s"} for ${describeQuery(state.query)}${took}.`
      : `No results for ${describeQuery(state.query)}.`
  );
}

function describeQuery(query) {
  if (query.kind === "similar") return `“${query.title}”`;
  if (query.kind === "url") return "the image URL";
  return query.name ? `“${query.name}”` : "the uploaded image";
}

function showDegraded(degraded) {
  const banner = $("degraded");
  if (Array.isArray(degraded) && degraded.length) {
    banner.textContent =
      `Partial results: the ${degraded.join(" and ")} service${degraded.length > 1 ? "s are" : " is"} ` +
      "unavailable, so results are ranked by visual similarity only.";
    banner.hidden = false;
  } else {
    banner.hidden = true;
    banner.textContent = "";
  }
}

function percent(value) {
  return `${Math.round(Number(value) * 100)}%`;
}

function showSummary(answer) {
  $("summary").hidden = false;
  showStyle(answer.style_prediction && (answer.style_prediction.style || answer.style_prediction));
  showSource(answer.source_artist);
  showWeights(answer.weights);
}

function showStyle(style) {
  const box = $("style-prediction");
  const top = $("style-top");
  top.replaceChildren();
  if (!style || !style.label) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  $("style-label").textContent = style.label;
  $("style-confidence").textContent =
    style.confidence !== undefined ? `${percent(style.confidence)} confidence` : "";
  for (const entry of style.top || []) {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.textContent = entry.label;
    const meter = document.createElement("meter");
    meter.min = 0;
    meter.max = 1;
    meter.value = Number(entry.score) || 0;
    meter.setAttribute("aria-label", `${entry.label}: ${percent(entry.score)}`);
    const value = document.createElement("span");
    value.className = "muted";
    value.textContent = percent(entry.score);
    item.append(name, meter, value);
    top.append(item);
  }
}

const HOW = {
  explicit: "given with the query",
  none: "none: results ranked by visual similarity",
};

function showSource(source) {
  const info = $("source-artist-info");
  if (!source) {
    info.textContent = "—";
    return;
  }
  let how = HOW[source.how] || (source.how ? source.how.replaceAll("_", " ") : "");
  if (source.method === "vote") {
    how = `voted by the ${source.voters} most similar, confidence ${source.confidence.toFixed(2)}`;
    if (source.runner_up) how += `; runner-up ${source.runner_up.name} ${source.runner_up.share.toFixed(2)}`;
  } else if (source.method === "nearest") {
    how = "the most similar candidate's artist";
  }
  const name = source.name || "none";
  const graph = source.name ? (source.in_influence_graph ? "in the influence graph" : "not in the influence graph") : "";
  info.textContent = [name, how && `(${how})`, graph && `— ${graph}`].filter(Boolean).join(" ");
}

function showWeights(weights) {
  const line = $("weights-used");
  if (!weights) {
    line.textContent = "";
    return;
  }
  const part = (name, value) => (value === undefined || value === null ? null : `${name} ${Number(value).toFixed(2)}`);
  line.textContent =
    "Weights used (aspects normalised): " +
    [
      part("content", weights.content),
      part("style", weights.style),
      part("colour", weights.colour),
      part("influence", weights.influence),
    ]
      .filter(Boolean)
      .join(" · ");
  if (!state.aspectWeightsTouched) {
    // Show the model's defaults on the sliders without sending them back as explicit choices.
    const byId = { "w-content": weights.content, "w-style": weights.style, "w-colour": weights.colour };
    for (const [id, value] of Object.entries(byId)) {
      if (typeof value === "number") setSlider(id, value);
    }
  }
}

function thumbnailUrl(result, size) {
  const base = result.thumbnail_url || `/v1/artworks/${encodeURIComponent(result.id)}/thumbnail`;
  return `${base}${base.includes("?") ? "&" : "?"}size=${size}`;
}

const ASPECTS = [
  ["visual", "Visual"],
  ["content", "Content"],
  ["style", "Style"],
  ["colour", "Colour"],
];

function card(result, rank) {
  const node = $("card-template").content.firstElementChild.cloneNode(true);
  node.dataset.id = result.id;
  const title = result.title || result.id;
  const artist = result.artist || "Unknown artist";
  const open = node.querySelector(".card-open");
  open.setAttribute("aria-label", `${rank}. ${title} by ${artist}: search for artworks like this one`);
  const img = node.querySelector("img");
  img.alt = `${title} by ${artist}`;
  img.src = thumbnailUrl(result, THUMBNAIL_SIZE);
  img.srcset = `${thumbnailUrl(result, THUMBNAIL_SIZE)} 1x, ${thumbnailUrl(result, 2 * THUMBNAIL_SIZE)} 2x`;
  img.addEventListener("error", () => node.querySelector(".thumb").classList.add("missing"), { once: true });
  node.querySelector(".card-title").textContent = title;
  node.querySelector(".card-artist").textContent = artist;
  node.querySelector(".card-meta").textContent = [result.year, result.style, result.genre].filter(Boolean).join(" · ");
  node.querySelector(".score").textContent = Number(result.score).toFixed(3);
  node.querySelector(".aspects").append(...aspectRows(result.scores || {}));
  node.querySelector(".card-path").replaceChildren(...influenceLine(result));
  const link = node.querySelector(".card-image-link");
  link.href = result.image_url || `/v1/artworks/${encodeURIComponent(result.id)}/image`;
  link.setAttribute("aria-label", `Full image of ${title} (opens a new tab)`);
  open.addEventListener("click", () => {
    run({ kind: "similar", id: result.id, title, artist, thumbnail: img.currentSrc || img.src });
    showPreview(img.currentSrc || img.src, `${title} — ${artist}`);
    $("results-heading").focus({ preventScroll: false });
  });
  return node;
}

function aspectRows(scores) {
  const rows = [];
  for (const [key, name] of ASPECTS) {
    if (typeof scores[key] !== "number") continue;
    const wrap = document.createElement("div");
    const term = document.createElement("dt");
    term.textContent = name;
    const value = document.createElement("dd");
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.setProperty("--value", Math.max(0, Math.min(1, scores[key])));
    const number = document.createElement("span");
    number.className = "num";
    number.textContent = scores[key].toFixed(3);
    value.append(bar, number);
    wrap.append(term, value);
    rows.push(wrap);
  }
  if (typeof scores.same_artist_rank === "number") {
    const wrap = document.createElement("div");
    wrap.className = "same-artist";
    const term = document.createElement("dt");
    term.textContent = "Same artist";
    const value = document.createElement("dd");
    const weight = typeof scores.same_artist_penalty === "number" ? `, weight ${scores.same_artist_penalty.toFixed(3)}` : "";
    value.textContent = `work #${scores.same_artist_rank + 1}${weight}`;
    wrap.append(term, value);
    rows.push(wrap);
  }
  return rows;
}

function influenceLine(result) {
  const scores = result.scores || {};
  const path = Array.isArray(result.influence_path) ? result.influence_path : null;
  const parts = [];
  const label = document.createElement("span");
  label.className = "muted";
  if (path && path.length > 1) {
    label.textContent = `Influence (${path.length - 1} hop${path.length > 2 ? "s" : ""}): `;
    parts.push(label, document.createTextNode(path.join(" → ")));
  } else if (path && path.length === 1) {
    label.textContent = "Influence: ";
    parts.push(label, document.createTextNode(`same artist (${path[0]})`));
  } else if (typeof scores.influence_hops === "number") {
    label.textContent = "Influence: ";
    parts.push(label, document.createTextNode(`${scores.influence_hops} hop${scores.influence_hops === 1 ? "" : "s"}`));
  } else {
    label.textContent = "Influence: not connected";
    parts.push(label);
  }
  if (typeof scores.influence_weight === "number") {
    const weight = document.createElement("span");
    weight.className = "muted";
    weight.textContent = ` (weight ${scores.influence_weight.toFixed(3)})`;
    parts.push(weight);
  }
  return parts;
}

// ---- page state -------------------------------------------------------------------------------------

function setStatus(text) {
  $("status").textContent = text;
}

function setBusy(busy) {
  document.body.classList.toggle("busy", busy);
  $("results").setAttribute("aria-busy", busy ? "true" : "false");
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function hideError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function showPreview(src, caption) {
  $("query-image").src = src;
  $("query-image").alt = `Query: ${caption}`;
  $("query-caption").textContent = caption;
  $("query-preview").hidden = false;
}

function setSlider(id, value) {
  $(id).value = String(value);
  const digits = id === "w-influence" ? 1 : 2;
  $(`${id}-value`).textContent = Number($(id).value).toFixed(digits);
}

function searchFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    showError(`“${file.name}” is not an image (${file.type}).`);
    return;
  }
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = URL.createObjectURL(file);
  showPreview(state.previewUrl, file.name || "uploaded image");
  run({ kind: "file", file, name: file.name });
}

function searchUrl(url) {
  let parsed;
  try {
    parsed = new URL(url);
  } catch (_) {
    showError("That is not a valid URL.");
    return;
  }
  if (!["http:", "https:"].includes(parsed.protocol)) {
    showError("Only http(s) image URLs can be searched.");
    return;
  }
  showPreview(parsed.href, parsed.href);
  run({ kind: "url", url: parsed.href });
}

function wire() {
  $("file").addEventListener("change", (event) => {
    searchFile(event.target.files[0]);
    event.target.value = ""; // choosing the same file again searches again
  });
  const drop = $("drop");
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) searchFile(file);
    else {
      const url = event.dataTransfer.getData("text/uri-list") || event.dataTransfer.getData("text/plain");
      if (url) searchUrl(url.trim().split("\n")[0]);
    }
  });
  $("url-form").addEventListener("submit", (event) => {
    event.preventDefault();
    searchUrl($("url").value.trim());
  });
  for (const id of SLIDERS) {
    $(id).addEventListener("input", () => {
      if (ASPECT_SLIDERS.includes(id)) {
        state.aspectWeightsTouched = true;
        $("weights-hint").textContent = "Using your aspect weights.";
      }
      setSlider(id, $(id).value);
      rerunSoon();
    });
  }
  $("reset-weights").addEventListener("click", () => {
    state.aspectWeightsTouched = false;
    $("weights-hint").textContent = "Aspect weights follow the model's defaults until you move a slider.";
    for (const [id, value] of Object.entries(DEFAULT_ASPECT_WEIGHTS)) setSlider(id, value);
    setSlider("w-influence", 1);
    rerunSoon();
  });
  for (const id of ["k", "rerank", "exclude-same-artist"]) $(id).addEventListener("change", rerunSoon);
  $("source-artist").addEventListener("change", rerunSoon);
  $("more").addEventListener("click", () => state.query && run(state.query, { append: true }));
}

// ---- views: Search and Explore (WAI-ARIA tabs: arrows, Home and End move between them) ----------------

const VIEWS = ["search", "explore"];

function selectView(name, { focus = false } = {}) {
  for (const view of VIEWS) {
    const tab = $(`tab-${view}`);
    const selected = view === name;
    tab.setAttribute("aria-selected", selected ? "true" : "false");
    tab.tabIndex = selected ? 0 : -1;
    $(`view-${view}`).hidden = !selected;
    if (selected && focus) tab.focus();
  }
  const hash = name === "search" ? "" : `#${name}`;
  if (location.hash !== hash) history.replaceState(null, "", hash || location.pathname + location.search);
  if (name === "explore") openExplore();
}

function wireViews() {
  for (const view of VIEWS) {
    const tab = $(`tab-${view}`);
    tab.addEventListener("click", () => selectView(view));
    tab.addEventListener("keydown", (event) => {
      const at = VIEWS.indexOf(view);
      const next = {
        ArrowRight: VIEWS[(at + 1) % VIEWS.length],
        ArrowLeft: VIEWS[(at + VIEWS.length - 1) % VIEWS.length],
        Home: VIEWS[0],
        End: VIEWS[VIEWS.length - 1],
      }[event.key];
      if (!next) return;
      event.preventDefault();
      selectView(next, { focus: true });
    });
  }
  if (location.hash === "#explore") selectView("explore");
  // A link or the address bar changing only the fragment (#explore, #search) switches the view too.
  window.addEventListener("hashchange", () => {
    const name = location.hash.slice(1);
    if (VIEWS.includes(name)) selectView(name);
  });
}

// ---- Explore: the catalogue's clusters, one cluster's artworks, the evaluation pictures -----------------

const MEMBER_PAGE = 24;
const MOSAIC_SIZE = 128;

const explore = {
  n: null, // the cluster count of the clusters shown
  cluster: null, // {id, size, title} of the cluster whose members are shown
  offset: 0,
  sequence: 0,
  membersSequence: 0,
  picturesAsked: false,
};

async function getJson(url) {
  const reply = await fetch(url);
  if (!reply.ok) throw new Error(await errorMessage(reply));
  return reply.json();
}

function openExplore() {
  const n = Number($("cluster-count").value);
  if (explore.n !== n) loadClusters(n);
  if (!explore.picturesAsked) loadPictures();
}

function clusterName(cluster) {
  return `Cluster ${cluster.id + 1}`;
}

function countLabel(count, noun) {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

function namesWithCounts(entries) {
  return (entries || []).map((entry) => `${entry.name} (${entry.count})`).join(", ");
}

async function loadClusters(n) {
  explore.n = n;
  const sequence = ++explore.sequence;
  const list = $("clusters");
  $("clusters-error").hidden = true;
  list.setAttribute("aria-busy", "true");
  $("clusters-status").textContent = "Grouping the catalogue…";
  try {
    const answer = await getJson(`/v1/clusters?n=${n}`);
    if (sequence !== explore.sequence) return;
    const clusters = Array.isArray(answer.clusters) ? answer.clusters : [];
    list.replaceChildren(...clusters.map(clusterCard));
    list.dataset.answered = String(n);
    const purity = answer.purity ? ` · purity by ${answer.purity.label} ${percent(answer.purity.value)}` : "";
    $("clusters-status").textContent = clusters.length
      ? `${countLabel(clusters.length, "cluster")} of ${countLabel(answer.artworks, "artwork")}${purity}.`
      : "The catalogue is empty: nothing to group yet.";
    hideMembers();
  } catch (error) {
    if (sequence !== explore.sequence) return;
    explore.n = null; // try again next time
    list.replaceChildren();
    $("clusters-status").textContent = "";
    $("clusters-error").textContent = error.message || String(error);
    $("clusters-error").hidden = false;
  } finally {
    if (sequence === explore.sequence) list.setAttribute("aria-busy", "false");
  }
}

function clusterCard(cluster) {
  const node = $("cluster-template").content.firstElementChild.cloneNode(true);
  node.dataset.id = String(cluster.id);
  const styles = cluster.top_styles || [];
  const mostly = styles.length ? `, mostly ${styles[0].name}` : "";
  const open = node.querySelector(".cluster-open");
  open.setAttribute(
    "aria-label",
    `${clusterName(cluster)}: ${countLabel(cluster.size, "artwork")}${mostly}. Show its artworks`
  );
  const mosaic = node.querySelector(".mosaic");
  for (const artwork of (cluster.representatives || []).slice(0, 4)) {
    const img = document.createElement("img");
    img.loading = "lazy";
    img.decoding = "async";
    img.width = MOSAIC_SIZE;
    img.height = MOSAIC_SIZE;
    img.alt = `${artwork.title || artwork.id} by ${artwork.artist || "unknown artist"}`;
    img.src = thumbnailUrl(artwork, MOSAIC_SIZE);
    img.srcset = `${thumbnailUrl(artwork, MOSAIC_SIZE)} 1x, ${thumbnailUrl(artwork, 2 * MOSAIC_SIZE)} 2x`;
    img.addEventListener("error", () => img.classList.add("missing"), { once: true });
    mosaic.append(img);
  }
  mosaic.dataset.count = String(mosaic.children.length);
  node.querySelector(".cluster-title").textContent = `${clusterName(cluster)} · ${countLabel(cluster.size, "artwork")}`;
  node.querySelector(".cluster-styles").textContent = styles.length ? namesWithCounts(styles) : "No style labels";
  node.querySelector(".cluster-artists").textContent = namesWithCounts(cluster.top_artists);
  open.addEventListener("click", () => openCluster(cluster, open));
  return node;
}

function hideMembers() {
  explore.cluster = null;
  $("cluster-members").hidden = true;
  $("members").replaceChildren();
}

function openCluster(cluster, button) {
  for (const other of document.querySelectorAll("#clusters .cluster-open")) other.removeAttribute("aria-current");
  button.setAttribute("aria-current", "true");
  explore.cluster = { id: cluster.id, size: cluster.size, name: clusterName(cluster) };
  explore.offset = 0;
  $("members").replaceChildren();
  $("members-heading").textContent = `${clusterName(cluster)} · ${countLabel(cluster.size, "artwork")}`;
  $("cluster-members").hidden = false;
  $("members-heading").focus();
  loadMembers();
}

async function loadMembers() {
  const cluster = explore.cluster;
  if (!cluster) return;
  const sequence = ++explore.membersSequence;
  const url = `/v1/clusters/${cluster.id}?n=${explore.n}&offset=${explore.offset}&limit=${MEMBER_PAGE}`;
  const list = $("members");
  list.setAttribute("aria-busy", "true");
  $("members-more").hidden = true;
  $("members-status").textContent = "Loading artworks…";
  try {
    const answer = await getJson(url);
    if (sequence !== explore.membersSequence) return;
    const members = Array.isArray(answer.members) ? answer.members : [];
    list.append(...members.map(memberCard));
    list.dataset.answered = url;
    const next = answer.next_offset;
    explore.offset = next ?? list.children.length;
    $("members-more").hidden = next === null || next === undefined;
    $("members-status").textContent =
      `${list.children.length} of ${countLabel(answer.size, "artwork")}, nearest the cluster's centre first. ` +
      "Choose one to search from it.";
  } catch (error) {
    if (sequence !== explore.membersSequence) return;
    $("members-status").textContent = error.message || String(error);
  } finally {
    if (sequence === explore.membersSequence) list.setAttribute("aria-busy", "false");
  }
}

function memberCard(artwork) {
  const node = $("member-template").content.firstElementChild.cloneNode(true);
  node.dataset.id = artwork.id;
  const title = artwork.title || artwork.id;
  const artist = artwork.artist || "Unknown artist";
  const img = node.querySelector("img");
  img.alt = `${title} by ${artist}`;
  img.src = thumbnailUrl(artwork, THUMBNAIL_SIZE);
  img.srcset = `${thumbnailUrl(artwork, THUMBNAIL_SIZE)} 1x, ${thumbnailUrl(artwork, 2 * THUMBNAIL_SIZE)} 2x`;
  img.addEventListener("error", () => node.querySelector(".thumb").classList.add("missing"), { once: true });
  node.querySelector(".card-title").textContent = title;
  node.querySelector(".card-artist").textContent = artist;
  node.querySelector(".card-meta").textContent = [artwork.year, artwork.style, artwork.genre].filter(Boolean).join(" · ");
  const open = node.querySelector(".card-open");
  open.setAttribute("aria-label", `${title} by ${artist}: search for artworks like this one`);
  open.addEventListener("click", () => {
    selectView("search");
    run({ kind: "similar", id: artwork.id, title, artist });
    showPreview(img.currentSrc || img.src, `${title} — ${artist}`);
    $("results-heading").focus({ preventScroll: false });
  });
  return node;
}

async function loadPictures() {
  explore.picturesAsked = true;
  let answer;
  try {
    const reply = await fetch("/v1/evaluation/pictures");
    if (!reply.ok) return; // not configured on this gateway: the panel stays hidden
    answer = await reply.json();
  } catch (_) {
    explore.picturesAsked = false; // try again when Explore is opened next
    return;
  }
  const pictures = Array.isArray(answer.pictures) ? answer.pictures : [];
  $("pictures").replaceChildren(...pictures.map(pictureFigure));
  $("quality").hidden = pictures.length === 0;
}

function pictureFigure(picture) {
  const node = $("picture-template").content.firstElementChild.cloneNode(true);
  const link = node.querySelector("a");
  link.href = picture.url;
  link.setAttribute("aria-label", `${picture.title} (full size, opens a new tab)`);
  const img = node.querySelector("img");
  img.src = picture.url;
  img.alt = picture.title;
  if (picture.width && picture.height) {
    img.width = picture.width;
    img.height = picture.height;
    if (picture.width >= 2 * picture.height) node.classList.add("wide"); // a row of plots: full width
  }
  node.querySelector("figcaption").textContent = picture.title;
  return node;
}

function wireExplore() {
  $("cluster-count").addEventListener("change", () => loadClusters(Number($("cluster-count").value)));
  $("members-more").addEventListener("click", loadMembers);
}

wire();
wireExplore();
wireViews();
