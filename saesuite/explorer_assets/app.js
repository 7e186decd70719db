// SAE feature explorer: one page, hash routes, data from <script> files (works from file://, no network).
"use strict";
const EXPLORER = (window.EXPLORER = {
  site(d) { this.data = d; header(); route(); },
  index(model, d) { tables[model] = d; },
  features(model, start, list) { list.forEach((f, j) => { feats[model + "/" + (start + j)] = f; }); },
  concepts(list) { this.conceptList = list; },
  concept(c, d) { concepts[c] = d; },
  map(d) { this.mapData = d; },
});
const tables = {}, feats = {}, concepts = {}, loading = {};
const state = {}; // per model: {key, dir, query, alive, page}
const PAGE = 100;
const $ = (sel) => document.querySelector(sel);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const fmt = (v, p = 3) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toPrecision(p));
const cls = (c) => (c >= 0 ? EXPLORER.data.classes[c] : "–");
const model = (name) => EXPLORER.data.models.find((m) => m.name === name);
const href = (m, i) => `#/f/${encodeURIComponent(m)}/${i}`;
const flink = (m, i, text) => (i >= 0 ? `<a href="${href(m, i)}">${text === undefined ? i : text}</a>` : "–");
const img = (r, cl = "") => `<img class="${cl}" src="img/${r}.${EXPLORER.data.ext}" alt="image ${r}" title="image ${r}: ${esc(cls(labelOf(r)))}">`;
const labelOf = (row) => EXPLORER.data.labels[row];
class Missing extends Error {}

function load(src) {
  if (!loading[src]) {
    loading[src] = new Promise((ok, fail) => {
      const s = document.createElement("script");
      s.src = src;
      s.onload = ok;
      s.onerror = () => fail(new Error("could not load " + src));
      document.head.appendChild(s);
    });
  }
  return loading[src];
}
const loadIndex = (m) => load(`data/${m}/index.js`).then(() => tables[m]);
function loadFeature(m, i) {
  const file = String(Math.floor(i / EXPLORER.data.features_per_file)).padStart(4, "0");
  return load(`data/${m}/f${file}.js`).then(() => feats[m + "/" + i]);
}

// -- header: navigation, jump to a latent, keys -------------------------------------------------
function header() {
  const d = EXPLORER.data;
  $("#nav").innerHTML = d.models.map((m, s) =>
    `<a href="#/m/${encodeURIComponent(m.name)}">${esc(m.name)} latents</a><a href="#/pairs/${s}">${esc(m.name)} → ${esc(m.other)} pairs</a>`)
    .join("") + `<a href="#/c">concepts</a>${d.map ? '<a href="#/map">map</a>' : ""}`;
  $("#jump").innerHTML = `<select id="jump-model" aria-label="model">${d.models.map((m) => `<option>${esc(m.name)}</option>`).join("")}</select>
    <input id="jump-latent" type="number" min="0" placeholder="latent # ( / )" aria-label="latent number"><button>go</button>`;
  $("#jump").addEventListener("submit", (e) => {
    e.preventDefault();
    const v = $("#jump-latent").value.trim();
    if (v !== "") location.hash = href($("#jump-model").value, v);
  });
}
document.addEventListener("keydown", (e) => {
  if (e.target.closest && e.target.closest("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === "/") { e.preventDefault(); $("#jump-latent").focus(); return; }
  const parts = parse();
  if (parts[0] !== "f" || !model(parts[1]) || !tables[parts[1]]) return;
  const i = Number(parts[2]), n = tables[parts[1]].columns.latent.length;
  const step = { j: 1, ArrowRight: 1, k: -1, ArrowLeft: -1 }[e.key];
  if (step && i + step >= 0 && i + step < n) location.hash = href(parts[1], i + step);
});

const parse = () => location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
function route() {
  if (!EXPLORER.data) return;
  const d = EXPLORER.data, parts = parse(), m = model(parts[1]);
  let page;
  if (parts[0] === "" && parts.length === 1) page = Promise.resolve(home());
  else if ((parts[0] === "m" || parts[0] === "f") && !m) page = missing(`There is no model “${parts[1] || ""}” in this site; its models are ${d.models.map((x) => x.name).join(" and ")}.`);
  else if (parts[0] === "m") page = indexPage(parts[1]);
  else if (parts[0] === "f") page = featurePage(parts[1], parts[2]);
  else if (parts[0] === "pairs") page = pairsPage(parts[1]);
  else if (parts[0] === "c" && !parts[1]) page = conceptsPage();
  else if (parts[0] === "c") page = conceptPage(parts[1]);
  else if (parts[0] === "map" && d.map) page = mapPage();
  else page = missing(`There is no page “${location.hash}”.`);
  if (parts[0] === "f" && m) $("#jump-model").value = m.name;
  page.then((html) => { if (html !== undefined) $("#main").innerHTML = html; window.scrollTo(0, 0); })
    .catch((err) => {
      $("#main").innerHTML = `<p class="error" id="message">${esc(err.message)} <a href="#/">Home</a></p>`;
      if (!(err instanceof Missing)) console.error(err);
    });
}
const missing = (text) => Promise.reject(new Missing(text));
window.addEventListener("hashchange", route);

// -- plots ----------------------------------------------------------------------------------------
// A histogram with labelled axes: counts over bins with edges `edges` (length n + 1), count above each bar.
function histogram(counts, edges, opts) {
  const W = opts.width || 420, H = opts.height || 170, L = 44, R = 22, T = 12, B = 36;
  const w = W - L - R, h = H - T - B, n = counts.length, max = Math.max(1, ...counts), bw = w / n;
  const y = (v) => T + h - (h * v) / max;
  const rects = counts.map((v, i) => `<rect x="${(L + i * bw + 0.5).toFixed(1)}" y="${y(v).toFixed(1)}" width="${Math.max(bw - 1, 1).toFixed(1)}"
    height="${(T + h - y(v)).toFixed(1)}"><title>${fmt(edges[i])} to ${fmt(edges[i + 1])}: ${v}</title></rect>` +
    (v && n <= 30 ? `<text class="count" x="${(L + (i + 0.5) * bw).toFixed(1)}" y="${(y(v) - 2).toFixed(1)}" text-anchor="middle">${v}</text>` : "")).join("");
  const yt = [0, Math.round(max / 2), max].map((v) => `<line x1="${L - 3}" x2="${L}" y1="${y(v)}" y2="${y(v)}"/><text x="${L - 5}" y="${y(v) + 3}" text-anchor="end">${v}</text>`).join("");
  const every = Math.ceil(n / 5);
  const xt = edges.map((e, i) => (i % every === 0 || i === n ? `<line x1="${L + i * bw}" x2="${L + i * bw}" y1="${T + h}" y2="${T + h + 3}"/>
    <text x="${L + i * bw}" y="${T + h + 13}" text-anchor="middle">${fmt(e, 2)}</text>` : "")).join("");
  return `<svg class="hist ${opts.cls || ""}" width="${W}" height="${H}" role="img">${rects}
    <line x1="${L}" x2="${L}" y1="${T}" y2="${T + h}"/><line x1="${L}" x2="${L + w}" y1="${T + h}" y2="${T + h}"/>${yt}${xt}
    <text class="label" x="${L + w / 2}" y="${H - 3}" text-anchor="middle">${esc(opts.x)}</text>
    <text class="label" transform="translate(11 ${T + h / 2}) rotate(-90)" text-anchor="middle">${esc(opts.y)}</text></svg>`;
}

// -- pages ----------------------------------------------------------------------------------------
function home() {
  const d = EXPLORER.data;
  const rows = d.models.map((m, s) => `<tr><td class="text"><a href="#/m/${encodeURIComponent(m.name)}">${esc(m.name)}</a></td>
    <td class="text">${esc(m.hook)}</td><td>${m.latents}</td><td class="alive">${m.alive}</td><td>${m.rare}</td><td>${m.dead}</td>
    <td>${m.paired}</td><td>${fmt(m.mean_best_overlap)}</td><td>${fmt(m.best_overlap_chance)}</td><td><a href="#/pairs/${s}">pairs</a></td></tr>`).join("");
  return `<h1>Features of ${d.models.map((m) => esc(m.name)).join(" and ")}</h1>
    <p>${esc(d.dataset)} / ${esc(d.split)}: ${d.n_images} images, top-${d.k} images per feature.
    Chance overlap of one random pair: k/n = ${fmt(d.pair_chance)}.</p>
    <table id="models"><tr><th>model</th><th>hook</th><th>latents</th><th>alive</th><th>of which rare</th><th>dead</th>
    <th>paired (≥ ${d.overlap_threshold})</th><th>mean best overlap</th><th>its permutation chance</th><th></th></tr>${rows}</table>
    <p class="muted" id="definitions"><b>alive</b>: fired on at least one of the ${d.n_images} images (the evaluation's definition,
    total activation above ${d.dead_threshold}); <b>rare</b>: alive but on fewer than ${d.k} images, too few for a top-${d.k} list,
    so the comparison cannot pair it; <b>dead</b>: never fired; <b>paired</b>: matched one-to-one with a feature of the other
    model at top-${d.k} overlap ≥ ${d.overlap_threshold} (the comparison's threshold).</p>
    <p>Find a latent with the box at the top right (press <kbd>/</kbd>); on a feature page <kbd>j</kbd> / <kbd>→</kbd> and
    <kbd>k</kbd> / <kbd>←</kbd> go to the next and previous latent. <a href="#/c">Concepts</a>: each class's features in both models${d.map ? `; <a href="#/map">map</a> of both models' features` : ""}.</p>`;
}

const COLUMNS = [
  ["latent", "latent"], ["fires", "images"], ["density", "density"], ["mean_activation", "mean act."], ["label_entropy", "label entropy"],
  ["top_class", "top class"], ["neuron_alignment", "neuron align."], ["partner", "best partner"], ["partner_overlap", "overlap"],
];

async function indexPage(name) {
  const t = await loadIndex(name), m = model(name), c = t.columns, d = EXPLORER.data;
  const st = (state[name] = state[name] || { key: "density", dir: -1, query: "", alive: true, page: 0 });
  const cols = COLUMNS.filter(([k]) => k !== "neuron_alignment" || c.neuron_alignment.some((v) => v !== null));
  const h = t.density_histogram;
  $("#main").innerHTML = `<h1>${esc(name)}: latents</h1>
    <div class="side"><div class="panel"><b>Feature density</b> of the ${m.alive} alive latents (${h.never_fire} dead, not drawn)<br>
    ${histogram(h.counts, h.log10_edges, { cls: "density-hist", x: "log10 density (fraction of images it fires on)", y: "latents", width: 520 })}</div></div>
    <div class="controls"><label>search class name <input id="search" value="${esc(st.query)}"
    placeholder="${m.named ? "top class or name" : "top class"}"></label>
    <label><input type="checkbox" id="alive" ${st.alive ? "checked" : ""}> alive only (fired at least once)</label>
    <button id="prev">◀</button><span id="count"></span><button id="next">▶</button></div>
    <table id="latents"><thead><tr>${cols.map(([k, l]) => `<th data-key="${k}">${l}</th>`).join("")}
    ${m.named ? "<th>names</th>" : ""}</tr></thead><tbody></tbody></table>`;
  const draw = () => {
    const q = st.query.trim().toLowerCase();
    let ids = c.latent.filter((i) => (!st.alive || c.alive[i]) && (!q || cls(c.top_class[i]).toLowerCase().includes(q) ||
      (c.names && c.names[i].toLowerCase().includes(q))));
    const key = c[st.key], dir = st.dir;
    ids.sort((a, b) => {
      const x = key[a], y = key[b];
      if (x === y) return a - b;
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      return (st.key === "top_class" ? cls(x).localeCompare(cls(y)) : x - y) * dir;
    });
    const pages = Math.max(1, Math.ceil(ids.length / PAGE));
    st.page = Math.min(st.page, pages - 1);
    $("#count").textContent = ` ${ids.length} latents, page ${st.page + 1} / ${pages} `;
    $("#latents tbody").innerHTML = ids.slice(st.page * PAGE, (st.page + 1) * PAGE).map((i) => `<tr data-latent="${i}">
      <td>${flink(name, i)}</td><td>${c.fires[i]}</td><td>${fmt(c.density[i])}</td><td>${fmt(c.mean_activation[i])}</td>
      <td>${fmt(c.label_entropy[i])}</td><td class="text">${esc(cls(c.top_class[i]))}</td>
      ${cols.some(([k]) => k === "neuron_alignment") ? `<td>${fmt(c.neuron_alignment[i])}</td>` : ""}
      <td>${flink(m.other, c.partner[i])}</td><td>${fmt(c.partner_overlap[i])}</td>
      ${m.named ? `<td class="text">${esc(c.names[i].split("|").join(", "))}</td>` : ""}</tr>`).join("");
    document.querySelectorAll("#latents th").forEach((th) => {
      th.className = th.dataset.key === st.key ? (st.dir > 0 ? "sorted-asc" : "sorted-desc") : "";
    });
  };
  document.querySelectorAll("#latents th[data-key]").forEach((th) => th.addEventListener("click", () => {
    st.dir = st.key === th.dataset.key ? -st.dir : th.dataset.key === "latent" || th.dataset.key === "top_class" ? 1 : -1;
    st.key = th.dataset.key; st.page = 0; draw();
  }));
  $("#search").addEventListener("input", (e) => { st.query = e.target.value; st.page = 0; draw(); });
  $("#alive").addEventListener("change", (e) => { st.alive = e.target.checked; st.page = 0; draw(); });
  $("#prev").addEventListener("click", () => { st.page = Math.max(0, st.page - 1); draw(); });
  $("#next").addEventListener("click", () => { st.page += 1; draw(); });
  draw();
  return undefined;
}

const grid = (rows, acts, id, cl = "grid") => `<div class="${cl}" id="${id}">${rows.map((r, j) => `<figure>${img(r)}
  <figcaption>${esc(cls(labelOf(r)))}<br>${fmt(acts[j])}</figcaption></figure>`).join("")}</div>`;
const SCORES = { label_agreement: "best name = top images' majority label", label_agreement_chance: "chance", mean_best_cosine: "mean best cosine",
  image_zero_shot_accuracy: "zero-shot accuracy on single images", named_latents: "latents named" };
const score = (s) => Object.entries(s || {}).filter(([k, v]) => SCORES[k] && v !== null).map(([k, v]) => `${SCORES[k]} ${k === "named_latents" ? v : fmt(v)}`).join(", ");
const topTitle = (f, k) => (f.rows.length < k ? `Its ${f.rows.length} image${f.rows.length === 1 ? "" : "s"}` : `Top-${k} images`);

function partnerPanel(name, m, c, i, other, ot) {
  const d = EXPLORER.data, j = c.partner[i], match = c.match[i];
  if (j < 0) {
    const why = !c.alive[i] ? "it is dead" : c.fires[i] < d.k ? `it is rare (${c.fires[i]} images, fewer than k = ${d.k}); the comparison pairs only features with a full top-${d.k}` : "no top image is shared with any feature";
    return `<div class="panel partner" id="partner"><h3>No partner in ${esc(m.other)}</h3><p>${why}.</p></div>`;
  }
  const paired = c.match_overlap[i] >= d.overlap_threshold;
  return `<div class="panel partner" id="partner"><h3>Best partner in ${esc(m.other)}:
    <a id="partner-link" href="${href(m.other, j)}">latent ${j}</a></h3>
    <p>top-${d.k} overlap <b id="partner-overlap">${fmt(c.partner_overlap[i])}</b> (${c.partner_overlap[i] >= d.overlap_threshold ? "at or above" : "below"}
    the pairing threshold ${d.overlap_threshold}; chance ${fmt(d.pair_chance)} for one random pair, ${fmt(m.best_overlap_chance)} mean best overlap
    under the permutation null). Its best partner back: ${flink(name, ot.columns.partner[j])}.<br>
    One-to-one match: ${match >= 0 ? `${flink(m.other, match)} (overlap ${fmt(c.match_overlap[i])}, ${paired ? "paired" : "not paired"})` : "none"}.</p>
    ${grid(other.rows, other.acts, "partner-grid")}</div>`;
}

function bandsPanel(f) {
  const b = f.band_counts.length, d = EXPLORER.data;
  const cols = f.band_counts.map((n, q) => `<div class="band"><div class="band-head">${fmt(f.band_edges[q], 2)} – ${fmt(f.band_edges[q + 1], 2)}<br>
    <span class="muted">${n} image${n === 1 ? "" : "s"}</span></div>${f.band_rows[q].length ? grid(f.band_rows[q], f.band_acts[q], `band-${q}`, "grid band-grid")
    : '<p class="muted">none</p>'}</div>`).reverse().join("");
  return `<div class="panel" id="bands"><h3>Across the activation range</h3><p class="muted">Images sampled uniformly from ${b} equal bands
    of (0, max]: activation interval and how many of the ${d.n_images} images fall in each, highest band first.</p><div class="bands">${cols}</div></div>`;
}

async function featurePage(name, raw) {
  const m = model(name), t = await loadIndex(name), c = t.columns, d = EXPLORER.data, n = c.latent.length;
  const i = /^\d+$/.test(raw || "") ? Number(raw) : NaN;
  if (!(i >= 0 && i < n)) throw new Missing(`${name} has no latent “${raw === undefined ? "" : raw}”: its latents are 0 to ${n - 1}.`);
  const [f, ot] = await Promise.all([loadFeature(name, i), loadIndex(m.other)]);
  const j = c.partner[i], other = j >= 0 ? await loadFeature(m.other, j) : null;
  const nav = `<small>${i > 0 ? flink(name, i - 1, "◀") : ""} ${i + 1 < n ? flink(name, i + 1, "▶") : ""}</small>`;
  const keys = `<span class="keys muted">keys: <kbd>j</kbd>/<kbd>→</kbd> next, <kbd>k</kbd>/<kbd>←</kbd> previous, <kbd>/</kbd> find</span>`;
  const head = `<h1>${esc(name)} latent ${i} ${nav} ${keys}</h1>`;
  if (!c.alive[i]) {
    return `${head}<p id="state" class="state dead">Dead: ${c.fires[i] ? `its total activation over the split is at most ${d.dead_threshold}` :
      `it never fired on any of the ${d.n_images} images`}. It has no images, histogram, label distribution or partner.</p>`;
  }
  const rare = c.fires[i] < d.k;
  const names = Object.entries(f.names || {}).filter(([, [ids]]) => ids.length).map(([method, [ids, cos]]) => `<details class="name" data-method="${method}">
    <summary><b>${method === Object.keys(m.naming)[0] ? "Name" : "Also named"}:</b> ${ids.map((l, q) => `${esc(cls(l))} <span class="muted">${fmt(cos[q], 2)}</span>`).join(", ")}
    <span class="muted">(${esc(method.replace("_", " "))} method: how?)</span></summary>
    <p class="muted method">${esc(m.naming[method].description)}. Over the model's latents: ${score(m.naming[method].score)}.</p></details>`).join("") ||
    `<p class="name muted">Not named: ${Object.entries(m.naming_skipped).map(([k, v]) => `${esc(k)}: ${esc(v)}`).join("; ") || "no naming method ran"}.</p>`;
  const top = f.max, bins = f.hist.length, edges = f.hist.map((_, b) => (b * top) / bins).concat([top]);
  const rest = Math.max(0, 1 - f.shares.reduce((a, b) => a + b, 0));
  const labelRows = f.labels.map((l, q) => `<tr><td class="text">${esc(cls(l))}</td><td>${fmt(f.shares[q])}</td></tr>`).join("") +
    (rest > 0.0005 ? `<tr><td class="text muted">other classes</td><td>${fmt(rest)}</td></tr>` : "");
  return `${head}
    ${rare ? `<p id="state" class="state rare">Rare: fires on only ${c.fires[i]} of the ${d.n_images} images (fewer than k = ${d.k}).</p>` : ""}
    <p>fires on ${c.fires[i]} images (density ${fmt(c.density[i])}) · mean activation ${fmt(c.mean_activation[i])} · max ${fmt(top)} ·
    label entropy ${fmt(c.label_entropy[i])} nats · top class ${esc(cls(c.top_class[i]))} (${fmt(c.top_class_share[i])} of its activation)
    ${c.neuron_alignment[i] !== null ? ` · neuron alignment ${fmt(c.neuron_alignment[i])}` : ""}</p>${names}
    <div class="side"><div class="pair"><div class="panel"><h3 id="topk-title">${topTitle(f, d.k)}</h3>${grid(f.rows, f.acts, "topk")}</div>
    ${partnerPanel(name, m, c, i, other, ot)}</div>
    <div class="stack"><div class="panel"><b>Activation histogram</b> over the ${c.fires[i]} images it fires on<br>
    ${histogram(f.hist, edges, { cls: "act-hist", x: "activation", y: "images", width: 380 })}</div>
    <div class="panel"><b>Label distribution</b> (share of its activation)<table id="labels">${labelRows}</table></div></div></div>
    ${bandsPanel(f)}`;
}

async function pairsPage(raw) {
  const d = EXPLORER.data, s = Number(raw), m = d.models[s];
  if (!/^[01]$/.test(raw || "") || !m) throw new Missing(`There is no pairs page “${raw || ""}”: the pages are 0 (${d.models[0].name} → ${d.models[1].name}) and 1.`);
  const p = d.pages[s], t = await loadIndex(m.name), c = t.columns;
  await loadIndex(m.other);
  await Promise.all(p.best.map((i) => loadFeature(m.name, i).then(() => loadFeature(m.other, c.match[i])))
    .concat(p.unpaired.map((i) => loadFeature(m.name, i))));
  const strip = (name, i) => `<td class="minigrid">${feats[name + "/" + i].rows.slice(0, 5).map((r) => img(r)).join("")}</td>`;
  const best = p.best.map((i) => `<tr><td>${flink(m.name, i)}</td>${strip(m.name, i)}<td>${flink(m.other, c.match[i])}</td>
    ${strip(m.other, c.match[i])}<td>${fmt(c.match_overlap[i])}${c.match_overlap[i] >= d.overlap_threshold ? "" : " <span class='muted'>(below)</span>"}</td>
    <td class="text">${esc(cls(c.top_class[i]))}</td><td class="text">${esc(cls(tables[m.other].columns.top_class[c.match[i]]))}</td></tr>`).join("");
  const lone = p.unpaired.map((i) => `<tr><td>${flink(m.name, i)}</td>${strip(m.name, i)}<td>${fmt(c.density[i])}</td>
    <td>${fmt(c.partner_overlap[i])}</td><td class="text">${esc(cls(c.top_class[i]))}</td></tr>`).join("");
  return `<h1>${esc(m.name)} → ${esc(m.other)}</h1>
    <h2>Best matched pairs</h2><p>One-to-one matching on top-${d.k} overlap; a pair is shared at overlap ≥ ${d.overlap_threshold}
    (${p.paired_total} of the ${p.pairable} features with a full top-${d.k}).</p>
    <table id="best-pairs"><tr><th>${esc(m.name)}</th><th>top images</th><th>${esc(m.other)}</th><th>top images</th><th>overlap</th><th>top class</th><th>partner's top class</th></tr>${best}</table>
    <h2>Densest features with no partner</h2><p>Features with a full top-${d.k} whose best top-${d.k} overlap with any feature of ${esc(m.other)}
    is below the pairing threshold ${d.overlap_threshold} (${p.unpaired_total} features; the ${p.unpaired.length} densest shown).</p>
    <table id="unpaired"><tr><th>${esc(m.name)}</th><th>top images</th><th>density</th><th>best overlap</th><th>top class</th></tr>${lone}</table>`;
}

async function conceptsPage() {
  const d = EXPLORER.data;
  await load("data/concepts.js");
  const rows = EXPLORER.conceptList.map((per, c) => `<tr data-class="${c}"><td class="text"><a href="#/c/${c}">${esc(cls(c))}</a></td>
    ${per.map(([n, p, same]) => `<td>${n}</td><td>${p}</td><td>${same}</td>`).join("")}</tr>`).join("");
  return `<h1>Concepts</h1><p>Per class: each model's alive features whose largest share of activation is on it, how many of them are
    paired one-to-one with a feature of the other model (overlap ≥ ${d.overlap_threshold}), and how many of those partners are about the same class.</p>
    <table id="concepts"><tr><th>class</th>${d.models.map((m) => `<th>${esc(m.name)} features</th><th>paired</th><th>partner same class</th>`).join("")}</tr>${rows}</table>`;
}

function conceptTable(m, list, id) {
  if (!list.length) return `<p class="muted" id="${id}">none</p>`;
  return `<table id="${id}"><tr><th>latent</th><th class="text">top images</th><th>share</th><th>density</th>${m.named ? "<th class='text'>name</th>" : ""}
    <th class="text">${esc(m.other)} match (overlap, top class)</th></tr>${list.map((f) => `<tr class="${f.paired ? "paired" : ""}">
    <td>${flink(m.name, f.latent)}</td><td class="minigrid">${f.top.map((r) => img(r)).join("")}</td><td>${fmt(f.share)}</td><td>${fmt(f.density)}</td>
    ${m.named ? `<td class="text name">${esc(f.name)}</td>` : ""}<td class="text">${f.match >= 0 ? `${flink(m.other, f.match)}: ${fmt(f.match_overlap, 2)}${f.paired ? "" :
    " <span class='muted'>(below)</span>"}, ${esc(cls(f.match_class))}` : "–"}</td></tr>`).join("")}</table>`;
}

async function conceptPage(raw) {
  const d = EXPLORER.data;
  let c = /^\d+$/.test(raw) ? Number(raw) : d.classes.indexOf(raw);
  if (!(c >= 0 && c < d.classes.length)) throw new Missing(`There is no class “${raw}”: the concepts page lists the ${d.classes.length} classes.`);
  await load(`data/concept/${c}.js`);
  const p = concepts[c];
  const cols = d.models.map((m, s) => {
    const q = p.models[s];
    return `<div class="panel concept" id="concept-${s}"><h2>${esc(m.name)}</h2>
      <p><b>${q.n_by_label}</b> alive features have ${esc(cls(c))} as their top class; <b>${q.paired}</b> of them pair with a ${esc(m.other)}
      feature (overlap ≥ ${d.overlap_threshold}; a bar at the left marks them), <b>${q.paired_same_class}</b> with one whose top class is also ${esc(cls(c))}.</p>
      <h3>By label distribution <small class="muted">(largest share of activation first, rare features last${q.n_by_label > q.by_label.length ? `; ${q.by_label.length} shown` : ""})</small></h3>${conceptTable(m, q.by_label, `by-label-${s}`)}
      ${q.named ? `<h3>By name: first name “${esc(cls(c))}” (${q.n_by_name})</h3>${conceptTable(m, q.by_name, `by-name-${s}`)}` : `<p class="muted">${esc(m.name)}'s features have no names.</p>`}</div>`;
  }).join("");
  return `<h1>Concept: ${esc(cls(c))}</h1><div class="pair concepts">${cols}</div>`;
}

// -- the map: both models' features placed by their activation profiles (canvas; a click opens the feature) --
const MODEL_COLOURS = ["#1f77b4", "#e8600c"];
const classColour = (c) => (c < 0 ? "#999" : `hsl(${(c * 137.508) % 360} 65% 45%)`);
// Data coordinates to canvas pixels: the points' bounding box fills the canvas less a margin.
function mapTransform(pts, W, H, pad = 12) {
  const xs = pts.flatMap((p) => p.x), ys = pts.flatMap((p) => p.y);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = (W - 2 * pad) / (x1 - x0 || 1), sy = (H - 2 * pad) / (y1 - y0 || 1);
  return (x, y) => [pad + (x - x0) * sx, H - pad - (y - y0) * sy];
}

async function mapPage() {
  const d = EXPLORER.data;
  await load("data/map.js");
  const md = EXPLORER.mapData, W = 900, H = Math.max(360, Math.min(620, window.innerHeight - 130)), q = md.quality || {};
  $("#main").innerHTML = `<h1>Both models' features on one map</h1>
    <div class="controls"><label>colour by <select id="map-colour"><option value="model">model</option><option value="class">top class</option></select></label>
    <span id="map-legend"></span></div>
    <div class="side"><canvas id="map" width="${W}" height="${H}"></canvas><div class="panel" style="max-width:360px">
    <p id="map-hover" class="muted">Point at a feature; click to open it.</p>
    <p class="muted">${esc(md.method || "")}.</p>${q.pairs !== undefined ? `<p>Quality on the comparison's ${q.pairs} matched pairs: ${fmt(q.pair_closer_than_random)}
    sit closer than a random pair of one feature from each model; median pair distance / median random distance ${fmt(q.distance_ratio)}.</p>` : ""}</div></div>`;
  const canvas = $("#map"), ctx = canvas.getContext("2d"), at = mapTransform(md.models, W, H);
  const points = md.models.flatMap((p, s) => p.latent.map((l, j) => [s, l, ...at(p.x[j], p.y[j]), p.top_class[j]]));
  const draw = () => {
    const by = $("#map-colour").value;
    ctx.clearRect(0, 0, W, H);
    ctx.globalAlpha = points.length > 5000 ? 0.5 : 0.8;
    for (const [s, , x, y, c] of points) {
      ctx.fillStyle = by === "model" ? MODEL_COLOURS[s] : classColour(c);
      ctx.fillRect(x - 2.5, y - 2.5, 5, 5);
    }
    const used = [...new Set(points.map((p) => p[4]))].sort((a, b) => a - b);
    $("#map-legend").innerHTML = by === "model" ? d.models.map((m, s) => `<span class="swatch" style="background:${MODEL_COLOURS[s]}"></span>${esc(m.name)}`).join(" ")
      : used.length <= 20 ? used.map((c) => `<span class="swatch" style="background:${classColour(c)}"></span>${esc(cls(c))}`).join(" ") : `${used.length} classes (hover a point for its class)`;
  };
  const nearest = (e) => {
    const r = canvas.getBoundingClientRect(), x = e.clientX - r.left, y = e.clientY - r.top;
    let best = null, bd = 36;
    for (const p of points) { const dd = (p[2] - x) ** 2 + (p[3] - y) ** 2; if (dd < bd) { bd = dd; best = p; } }
    return best;
  };
  canvas.addEventListener("mousemove", (e) => {
    const p = nearest(e);
    $("#map-hover").textContent = p ? `${d.models[p[0]].name} latent ${p[1]}: top class ${cls(p[4])}` : "Point at a feature; click to open it.";
    canvas.style.cursor = p ? "pointer" : "default";
  });
  canvas.addEventListener("click", (e) => { const p = nearest(e); if (p) location.hash = href(d.models[p[0]].name, p[1]); });
  $("#map-colour").addEventListener("change", draw);
  draw();
  return undefined;
}
