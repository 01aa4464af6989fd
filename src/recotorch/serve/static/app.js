// The recotorch page: search and browse, rate items, live recommendations for this anonymous
// session (POST /recommendations), similar items. Data is only ever inserted as text.
"use strict";

const state = { ratings: new Map(), titles: new Map(), query: "", genre: "", offset: 0, session: newSession() };
const PAGE = 20;
const $ = (id) => document.getElementById(id);

function newSession() {
  const rnd = (window.crypto && crypto.randomUUID) ? crypto.randomUUID() : String(Math.random()).slice(2);
  return "web-" + rnd;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(path, { headers: { "Content-Type": "application/json" }, ...options });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(typeof body.detail === "string" ? body.detail : `HTTP ${response.status}`);
  return body;
}

function label(item) {
  const title = item.title || `item ${item.item}`;
  return item.year ? `${title} (${item.year})` : title;
}

function stars(item) {
  const current = state.ratings.get(String(item.item));
  const box = el("span", { class: "stars", role: "group", "aria-label": `Rate ${label(item)}` });
  for (let value = 1; value <= 5; value++) {
    box.append(el("button", {
      type: "button", class: current && value <= current ? "star on" : "star",
      "data-rating": value, "aria-label": `${value} star${value > 1 ? "s" : ""}`,
      onclick: () => rate(item, value),
    }, "★"));
  }
  return box;
}

function itemRow(item, extra, below) {
  const li = el("li", { "data-item": item.item });
  li.append(el("span", { class: "title" }, label(item)));
  if (item.genres && item.genres.length) li.append(el("span", { class: "genres muted" }, item.genres.join(", ")));
  if (extra) li.append(extra);
  li.append(stars(item));
  li.append(el("button", { type: "button", class: "link", onclick: () => showSimilar(item) }, "similar"));
  if (below) li.append(below);
  return li;
}

let searching = 0;
async function search(append = false) {
  const ticket = ++searching;
  if (!append) state.offset = 0;
  const query = state.query;
  const params = new URLSearchParams({ q: query, limit: PAGE, offset: state.offset });
  if (state.genre) params.set("genre", state.genre);
  try {
    const page = await api(`/items?${params}`);
    if (ticket !== searching) return;  // a newer search is on its way
    const list = $("results");
    if (!append) list.replaceChildren();
    for (const item of page.items) {
      state.titles.set(String(item.item), item);
      list.append(itemRow(item, el("span", { class: "muted count" }, `${item.n_ratings} ratings`)));
    }
    state.offset += page.items.length;
    list.dataset.query = query;  // which search the list shows (tests wait on it)
    $("search-count").textContent = `${page.total} item${page.total === 1 ? "" : "s"}`;
    $("more").hidden = state.offset >= page.total;
  } catch (err) {
    $("search-count").textContent = `search failed: ${err.message}`;
  }
}

function rate(item, value) {
  const key = String(item.item);
  state.titles.set(key, item);
  state.ratings.set(key, value);
  api("/feedback", { method: "POST", body: JSON.stringify({ user: state.session, item: item.item, value }) })
    .catch(() => {});  // the log is best effort from the page; recommendations do not depend on it
  renderRatings();
  refreshStars(key, value);
  recommend();
}

function refreshStars(key, value) {
  for (const li of document.querySelectorAll(`li[data-item="${CSS.escape(key)}"]`)) {
    for (const star of li.querySelectorAll(".star")) star.classList.toggle("on", Number(star.dataset.rating) <= value);
  }
}

function renderRatings() {
  const list = $("ratings");
  list.replaceChildren();
  for (const [key, value] of state.ratings) {
    const item = state.titles.get(key) || { item: key };
    list.append(el("li", { "data-item": key }, el("span", { class: "title" }, label(item)),
      el("span", { class: "muted" }, ` ${"★".repeat(value)}`),
      el("button", { type: "button", class: "link", onclick: () => unrate(key) }, "remove")));
  }
  $("ratings-empty").hidden = state.ratings.size > 0;
  $("clear").hidden = state.ratings.size === 0;
}

function unrate(key) {
  state.ratings.delete(key);
  renderRatings();
  refreshStars(key, 0);
  recommend();
}

let pending = 0;
async function recommend() {
  const ticket = ++pending;
  const list = $("recs");
  if (state.ratings.size === 0) {
    list.replaceChildren();
    $("recs-status").textContent = "";
    return;
  }
  $("recs-status").textContent = "updating…";
  const ratings = [...state.ratings].map(([key, value]) => ({ item: state.titles.get(key)?.item ?? key, rating: value }));
  const body = { ratings, k: 10 };
  if (state.genre) body.genre = state.genre;
  try {
    const result = await api("/recommendations", { method: "POST", body: JSON.stringify(body) });
    if (ticket !== pending) return;  // a newer request is on its way
    list.replaceChildren();
    for (const item of result.items) {
      state.titles.set(String(item.item), item);
      const why = item.because
        ? el("span", { class: "because muted" }, `because you liked ${label(item.because)}`)
        : null;
      list.append(itemRow(item, null, why));
    }
    $("recs-status").textContent = result.items.length ? `from model ${result.model}` : "no recommendations";
  } catch (err) {
    if (ticket === pending) $("recs-status").textContent = `could not recommend: ${err.message}`;
  }
}

async function showSimilar(item) {
  const panel = $("similar-panel");
  $("similar-title").textContent = `Similar to ${label(item)}`;
  const list = $("similar");
  list.replaceChildren(el("li", { class: "muted" }, "loading…"));
  panel.hidden = false;
  try {
    const result = await api(`/items/${encodeURIComponent(item.item)}/similar?k=10`);
    list.replaceChildren();
    for (const other of result.items) {
      state.titles.set(String(other.item), other);
      list.append(itemRow(other, el("span", { class: "muted" }, `similarity ${other.score.toFixed(2)}`)));
    }
  } catch (err) {
    list.replaceChildren(el("li", { class: "muted" }, `no similar items: ${err.message}`));
  }
}

async function init() {
  try {
    const info = await api("/info");
    $("model-info").textContent = `${info.model} model ${info.version}: ${info.n_items} items, ${info.n_users} users`;
    for (const genre of info.genres) $("genre").append(el("option", { value: genre }, genre));
  } catch (err) {
    $("model-info").textContent = `model info unavailable: ${err.message}`;
  }
  let timer;
  $("search").addEventListener("input", (event) => {
    clearTimeout(timer);
    timer = setTimeout(() => { state.query = event.target.value; search(); }, 200);
  });
  $("search-form").addEventListener("submit", (event) => { event.preventDefault(); state.query = $("search").value; search(); });
  $("genre").addEventListener("change", (event) => { state.genre = event.target.value; search(); recommend(); });
  $("more").addEventListener("click", () => search(true));
  $("clear").addEventListener("click", () => { state.ratings.clear(); renderRatings(); recommend(); search(); });
  $("similar-close").addEventListener("click", () => { $("similar-panel").hidden = true; });
  await search();
}

init();
