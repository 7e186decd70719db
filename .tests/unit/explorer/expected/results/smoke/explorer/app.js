// SAE feature explorer: one page, hash routes, data from <script> files (works from file://, no network).
"use strict";
const EXPLORER = (window.EXPLORER = {
  site(d) { this.data = d; route(); },
  index(model, d) { tables[model] = d; },
  features(model, start, list) { list.forEach((f, j) => { feats[model + "/" + (start + j)] = f; }); },
});
const tables = {}, feats = {}, loading = {};
const state = {}; // per model: {key, dir, query, alive, page}
const PAGE = 100;
const $ = (sel) => document.querySelector(sel);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const fmt = (v, p = 3) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toPrecision(p));
const cls = (c) => (c >= 0 ? EXPLORER.data.classes[c] : "–");
const model = (name) => EXPLORER.data.models.find((m) => m.name === name);
const flink = (m, i, text) => (i >= 0 ? `<a href="#/f/${encodeURIComponent(m)}/${i}">${text === undefined ? i : text}</a>` : "–");

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

function route() {
  if (!EXPLORER.data) return;
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  $("#nav").innerHTML = EXPLORER.data.models.map((m, s) =>
    `<a href="#/m/${encodeURIComponent(m.name)}">${esc(m.name)} latents</a><a href="#/pairs/${s}">${esc(m.name)} → ${esc(m.other)} pairs</a>`).join("");
  let page;
  if (parts[0] === "m" && model(parts[1])) page = indexPage(parts[1]);
  else if (parts[0] === "f" && model(parts[1])) page = featurePage(parts[1], Number(parts[2]));
  else if (parts[0] === "pairs") page = pairsPage(Number(parts[1]) || 0);
  else page = Promise.resolve(home());
  page.then((html) => { if (html !== undefined) $("#main").innerHTML = html; window.scrollTo(0, 0); })
    .catch((err) => { $("#main").innerHTML = `<p class="error">${esc(err.message)}</p>`; console.error(err); });
}
window.addEventListener("hashchange", route);

function bars(values, labels, opts = {}) {
  const w = opts.width || 360, h = opts.height || 120, n = values.length, max = Math.max(1, ...values);
  const bw = w / n;
  const rects = values.map((v, i) => {
    const bh = (h - 14) * (v / max);
    return `<rect x="${(i * bw).toFixed(1)}" y="${(h - 14 - bh).toFixed(1)}" width="${Math.max(bw - 1, 1).toFixed(1)}" height="${bh.toFixed(1)}"><title>${esc(labels[i])}: ${v}</title></rect>`;
  }).join("");
  const axis = `<text x="0" y="${h - 2}">${esc(labels[0])}</text><text x="${w}" y="${h - 2}" text-anchor="end">${esc(labels[n - 1])}</text>`;
  return `<svg class="bars ${opts.cls || ""}" width="${w}" height="${h}">${rects}${axis}</svg>`;
}

function home() {
  const d = EXPLORER.data;
  const rows = d.models.map((m, s) => `<tr><td class="text"><a href="#/m/${encodeURIComponent(m.name)}">${esc(m.name)}</a></td>
    <td class="text">${esc(m.hook)}</td><td>${m.d_sae}</td><td>${m.alive}</td><td>${fmt(m.mean_best_overlap)}</td>
    <td>${fmt(m.best_overlap_chance)}</td><td><a href="#/pairs/${s}">pairs</a></td></tr>`).join("");
  return `<h1>Features of ${d.models.map((m) => esc(m.name)).join(" and ")}</h1>
    <p>${esc(d.dataset)} / ${esc(d.split)}: ${d.n_images} images, top-${d.k} images per feature.
    Chance overlap of one random pair: k/n = ${fmt(d.pair_chance)}.</p>
    <table id="models"><tr><th>model</th><th>hook</th><th>latents</th><th>alive (≥ k images)</th>
    <th>mean best overlap</th><th>its permutation chance</th><th></th></tr>${rows}</table>`;
}

const COLUMNS = [
  ["latent", "latent"], ["density", "density"], ["mean_activation", "mean act."], ["label_entropy", "label entropy"],
  ["top_class", "top class"], ["neuron_alignment", "neuron align."], ["partner", "best partner"], ["partner_overlap", "overlap"],
];

async function indexPage(name) {
  const t = await loadIndex(name), m = model(name), c = t.columns;
  const st = (state[name] = state[name] || { key: "density", dir: -1, query: "", alive: true, page: 0 });
  const cols = COLUMNS.filter(([k]) => k !== "neuron_alignment" || c.neuron_alignment.some((v) => v !== null));
  const h = t.density_histogram, edges = h.log10_edges;
  $("#main").innerHTML = `<h1>${esc(name)}: latents</h1>
    <div class="side"><div class="panel"><b>log10 density</b> (${h.never_fire} never fire)<br>
    ${bars(h.counts, h.counts.map((_, i) => `${edges[i]}…${edges[i + 1]}`), { cls: "density-hist" })}</div></div>
    <div class="controls"><label>search class name <input id="search" value="${esc(st.query)}"
    placeholder="${m.text_names ? "top class or text name" : "top class"}"></label>
    <label><input type="checkbox" id="alive" ${st.alive ? "checked" : ""}> alive only</label>
    <button id="prev">◀</button><span id="count"></span><button id="next">▶</button></div>
    <table id="latents"><thead><tr>${cols.map(([k, l]) => `<th data-key="${k}">${l}</th>`).join("")}
    ${m.text_names ? "<th>nearest class names (text)</th>" : ""}</tr></thead><tbody></tbody></table>`;
  const draw = () => {
    const q = st.query.trim().toLowerCase();
    let ids = c.latent.filter((i) => (!st.alive || c.alive[i]) && (!q || cls(c.top_class[i]).toLowerCase().includes(q) ||
      (c.text_names && c.text_names[i].toLowerCase().includes(q))));
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
      <td>${flink(name, i)}</td><td>${fmt(c.density[i])}</td><td>${fmt(c.mean_activation[i])}</td>
      <td>${fmt(c.label_entropy[i])}</td><td class="text">${esc(cls(c.top_class[i]))}</td>
      ${cols.some(([k]) => k === "neuron_alignment") ? `<td>${fmt(c.neuron_alignment[i])}</td>` : ""}
      <td>${flink(m.other, c.partner[i])}</td><td>${fmt(c.partner_overlap[i])}</td>
      ${m.text_names ? `<td class="text">${esc(c.text_names[i].split("|").join(", "))}</td>` : ""}</tr>`).join("");
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

function grid(m, f, id) {
  const d = EXPLORER.data;
  return `<div class="grid" id="${id}">${f.rows.map((r, j) => `<figure><img src="img/${r}.${d.ext}" alt="image ${r}"
    data-row="${r}"><figcaption>${esc(cls(labelOf(r)))}<br>${fmt(f.acts[j])}</figcaption></figure>`).join("")}</div>`;
}
function labelOf(row) { return EXPLORER.data.labels ? EXPLORER.data.labels[row] : -1; }

async function featurePage(name, i) {
  const m = model(name), t = await loadIndex(name), c = t.columns;
  if (!(i >= 0 && i < c.latent.length)) throw new Error(`${name} has no latent ${i}`);
  const f = await loadFeature(name, i);
  const j = c.partner[i], d = EXPLORER.data;
  const other = j >= 0 ? await loadFeature(m.other, j) : null;
  const ot = await loadIndex(m.other);
  const bins = f.hist.length, top = c.max_activation[i] || 0;
  const histLabels = f.hist.map((_, b) => `${fmt((b * top) / bins, 2)}…${fmt(((b + 1) * top) / bins, 2)}`);
  const shares = f.shares.concat([Math.max(0, 1 - f.shares.reduce((a, b) => a + b, 0))]);
  const labelRows = f.labels.map((l, q) => `<tr><td class="text">${esc(cls(l))}</td><td>${fmt(shares[q])}</td></tr>`).join("");
  const match = c.match[i];
  const partner = j >= 0 ? `<div class="panel" id="partner"><h3>Best partner in ${esc(m.other)}:
      <a id="partner-link" href="#/f/${encodeURIComponent(m.other)}/${j}">latent ${j}</a></h3>
      <p>top-${d.k} overlap <b id="partner-overlap">${fmt(c.partner_overlap[i])}</b>
      (chance: ${fmt(d.pair_chance)} for one random pair; ${fmt(m.best_overlap_chance)} mean best overlap under the permutation null).
      Its best partner back: ${flink(name, ot.columns.partner[j])}.
      ${match >= 0 && match !== j ? `One-to-one match: ${flink(m.other, match)} (overlap ${fmt(c.match_overlap[i])}).` : ""}</p>
      ${grid(m.other, other, "partner-grid")}</div>`
    : `<div class="panel" id="partner"><p>No partner in ${esc(m.other)}: ${c.alive[i] ? "no shared top image" : "dead here (fewer than k images)"}.</p></div>`;
  return `<h1>${esc(name)} latent ${i} <small>${i > 0 ? flink(name, i - 1, "◀") : ""} ${i + 1 < c.latent.length ? flink(name, i + 1, "▶") : ""}</small></h1>
    <p>density ${fmt(c.density[i])} · mean activation ${fmt(c.mean_activation[i])} · max ${fmt(top)} ·
    label entropy ${fmt(c.label_entropy[i])} nats · top class ${esc(cls(c.top_class[i]))} (${fmt(c.top_class_share[i])})
    ${c.neuron_alignment[i] !== null ? ` · neuron alignment ${fmt(c.neuron_alignment[i])}` : ""}
    ${c.text_names && c.text_names[i] ? `<br>nearest class names in text space: ${esc(c.text_names[i].split("|").join(", "))}` : ""}</p>
    <div class="side"><div class="panel"><h3>Top-${d.k} images</h3>${f.rows.length ? grid(name, f, "topk") : "<p>never fires</p>"}</div>${partner}</div>
    <div class="side"><div class="panel"><b>activation histogram</b> (images where it fires)<br>${bars(f.hist, histLabels, { cls: "act-hist" })}</div>
    <div class="panel"><b>label distribution</b> (share of activation)<table id="labels">${labelRows}
    <tr><td class="text muted">other</td><td>${fmt(shares[shares.length - 1])}</td></tr></table></div></div>`;
}

async function pairsPage(s) {
  const d = EXPLORER.data, m = d.models[s] || d.models[0], p = d.pages[d.models.indexOf(m)];
  const t = await loadIndex(m.name), c = t.columns;
  await loadIndex(m.other);
  await Promise.all(p.best.map((i) => loadFeature(m.name, i).then(() => loadFeature(m.other, c.match[i])))
    .concat(p.unpaired.map((i) => loadFeature(m.name, i))));
  const strip = (name, i) => `<td class="minigrid">${feats[name + "/" + i].rows.slice(0, 5)
    .map((r) => `<img src="img/${r}.${d.ext}" alt="image ${r}">`).join("")}</td>`;
  const best = p.best.map((i) => `<tr><td>${flink(m.name, i)}</td>${strip(m.name, i)}<td>${flink(m.other, c.match[i])}</td>
    ${strip(m.other, c.match[i])}<td>${fmt(c.match_overlap[i])}</td><td class="text">${esc(cls(c.top_class[i]))}</td>
    <td class="text">${esc(cls(tables[m.other].columns.top_class[c.match[i]]))}</td></tr>`).join("");
  const lone = p.unpaired.map((i) => `<tr><td>${flink(m.name, i)}</td>${strip(m.name, i)}<td>${fmt(c.density[i])}</td>
    <td>${fmt(c.partner_overlap[i])}</td><td class="text">${esc(cls(c.top_class[i]))}</td></tr>`).join("");
  return `<h1>${esc(m.name)} → ${esc(m.other)}</h1>
    <h2>Best matched pairs</h2><p>One-to-one matching on top-${d.k} overlap; a pair is shared at overlap ≥ ${d.overlap_threshold}.</p>
    <table id="best-pairs"><tr><th>${esc(m.name)}</th><th>top images</th><th>${esc(m.other)}</th><th>top images</th><th>overlap</th><th>top class</th><th>partner's top class</th></tr>${best}</table>
    <h2>Densest features with no partner</h2><p>Alive features whose one-to-one partner is missing or below the threshold.</p>
    <table id="unpaired"><tr><th>${esc(m.name)}</th><th>top images</th><th>density</th><th>best overlap</th><th>top class</th></tr>${lone}</table>`;
}
