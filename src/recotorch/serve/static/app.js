// The recotorch page: search and browse, rate or like items, live recommendations for this anonymous
// session (POST /recommendations), similar items. It adapts to the data (GET /info): stars on the
// model's scale for rating models, like buttons for 0/1 data, a filter from the catalogue's category
// column, a popular list until the user acts. Data is only ever inserted as text.
"use strict";

const state = {
  info: null, feedback: "rating", scale: { min: 1, max: 5 },
  given: new Map(), titles: new Map(), query: "", genre: "", offset: 0, session: newSession(),
};
const PAGE = 20;
const $ = (id) => document.getElementById(id);
const liking = () => state.feedback === "like";

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
  const known = state.titles.get(String(item.item));
  // "because" entries carry only the stored title: the reading-order name of a known item wins
  const title = item.name || (known && known.name) || item.title || (known && known.title) || `item ${item.item}`;
  const year = item.year ?? (known && known.year);
  return year ? `${title} (${year})` : title;
}

// The whole star values of the model's scale (1..5 for MovieLens); null when stars do not fit it.
function starValues() {
  const lo = Math.max(1, Math.ceil(state.scale.min)), hi = Math.floor(state.scale.max);
  if (hi - lo < 1 || hi - lo > 9) return null;
  return Array.from({ length: hi - lo + 1 }, (_, k) => lo + k);
}

function ratingWidget(item) {
  const current = state.given.get(String(item.item));
  const values = starValues();
  if (!values) {  // a scale stars cannot show (e.g. 0-100): a number box on it
    return el("input", {
      type: "number", class: "rating-input", min: state.scale.min, max: state.scale.max, step: "any",
      value: current ?? "", "aria-label": `Rate ${label(item)} (${state.scale.min}-${state.scale.max})`,
      onchange: (event) => { if (event.target.value !== "") rate(item, Number(event.target.value)); },
    });
  }
  const box = el("span", { class: "stars", role: "group", "aria-label": `Rate ${label(item)}` });
  for (const value of values) {
    box.append(el("button", {
      type: "button", class: current && value <= current ? "star on" : "star",
      "data-rating": value, "aria-label": `${value} star${value > 1 ? "s" : ""}`,
      onclick: () => rate(item, value),
    }, "★"));
  }
  return box;
}

function likeWidget(item) {
  const on = state.given.has(String(item.item));
  return el("button", {
    type: "button", class: on ? "like on" : "like", "aria-pressed": String(on), "aria-label": `Like ${label(item)}`,
    onclick: () => (state.given.has(String(item.item)) ? unrate(String(item.item)) : rate(item, 1)),
  }, on ? "♥ Liked" : "♡ Like");
}

function itemRow(item, extra, below) {
  const li = el("li", { "data-item": item.item });
  li.append(el("span", { class: "title" }, label(item)));
  if (item.genres && item.genres.length) li.append(el("span", { class: "genres muted" }, item.genres.join(", ")));
  if (extra) li.append(extra);
  li.append(liking() ? likeWidget(item) : ratingWidget(item));
  li.append(el("button", { type: "button", class: "link", onclick: () => showSimilar(item) }, "similar"));
  if (below) li.append(below);
  return li;
}

function countText(item) {
  const n = item.n_ratings ?? 0;
  return liking() ? `${n} user${n === 1 ? "" : "s"}` : `${n} rating${n === 1 ? "" : "s"}`;
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
      list.append(itemRow(item, el("span", { class: "muted count" }, countText(item))));
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
  state.given.set(key, value);
  api("/feedback", { method: "POST", body: JSON.stringify({ user: state.session, item: item.item, value }) })
    .catch(() => {});  // the log is best effort from the page; recommendations do not depend on it
  renderGiven();
  refreshWidgets(key);
  recommend();
}

function refreshWidgets(key) {
  const value = state.given.get(key) ?? 0;
  for (const li of document.querySelectorAll(`li[data-item="${CSS.escape(key)}"]`)) {
    for (const star of li.querySelectorAll(".star")) star.classList.toggle("on", Number(star.dataset.rating) <= value);
    for (const like of li.querySelectorAll("button.like")) {
      like.classList.toggle("on", value > 0);
      like.setAttribute("aria-pressed", String(value > 0));
      like.textContent = value > 0 ? "♥ Liked" : "♡ Like";
    }
  }
}

function renderGiven() {
  const list = $("given");
  list.replaceChildren();
  for (const [key, value] of state.given) {
    const item = state.titles.get(key) || { item: key };
    const shown = liking() ? "" : ` ${starValues() ? "★".repeat(Math.round(value)) : value}`;
    list.append(el("li", { "data-item": key }, el("span", { class: "title" }, label(item)),
      el("span", { class: "muted" }, shown),
      el("button", { type: "button", class: "link", onclick: () => unrate(key) }, "remove")));
  }
  $("given-empty").hidden = state.given.size > 0;
  $("clear").hidden = state.given.size === 0;
}

function unrate(key) {
  state.given.delete(key);
  renderGiven();
  refreshWidgets(key);
  recommend();
}

function showList(title, status, items, reasons) {
  $("recs-title").textContent = title;
  $("recs-status").textContent = status;
  const list = $("recs");
  list.replaceChildren();
  for (const item of items) {
    state.titles.set(String(item.item), item);
    const why = reasons && item.because
      ? el("span", { class: "because muted" }, `because you liked ${label(item.because)}`)
      : null;
    list.append(itemRow(item, reasons ? null : el("span", { class: "muted count" }, countText(item)), why));
  }
  list.dataset.kind = reasons ? "recommended" : "popular";  // which list is shown (tests wait on it)
}

// Before the user has acted (or when the model cannot fold a new user in): the most popular items.
async function showPopular(ticket, note) {
  const params = new URLSearchParams({ limit: 10 });
  if (state.genre) params.set("genre", state.genre);
  const page = await api(`/items?${params}`);
  if (ticket !== pending) return;
  const hint = liking() ? "the items most users chose in the training data; like a few for your own list"
    : "the most-rated items in the training data; rate a few for your own list";
  showList("Popular", note || hint, page.items, false);
}

let pending = 0;
async function recommend() {
  const ticket = ++pending;
  try {
    if (state.given.size === 0) return await showPopular(ticket);
    $("recs-status").textContent = "updating…";
    const ids = [...state.given.keys()].map((key) => state.titles.get(key)?.item ?? key);
    const body = liking()
      ? { liked: ids }
      : { ratings: [...state.given.values()].map((value, k) => ({ item: ids[k], rating: value })) };
    body.k = 10;
    if (state.genre) body.genre = state.genre;
    try {
      const result = await api("/recommendations", { method: "POST", body: JSON.stringify(body) });
      if (ticket !== pending) return;  // a newer request is on its way
      showList("Recommended for you", result.items.length ? `from model ${result.model}` : "no recommendations",
        result.items, true);
    } catch (err) {
      if (ticket === pending) await showPopular(ticket, `could not recommend (${err.message}); popular instead`);
    }
  } catch (err) {
    if (ticket === pending) $("recs-status").textContent = `could not load items: ${err.message}`;
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

// "aisle" -> "aisles", "category" -> "categories"; "genres" stays.
function plural(word) {
  if (/s$/i.test(word)) return word;
  return /[^aeiou]y$/i.test(word) ? word.slice(0, -1) + "ies" : word + "s";
}

function adapt(info) {
  state.info = info;
  state.feedback = info.feedback === "like" ? "like" : "rating";
  if (info.rating_scale) state.scale = info.rating_scale;
  document.body.dataset.feedback = state.feedback;
  $("model-info").textContent = `${info.model} model ${info.version}: ${info.n_items} items, ${info.n_users} users`;
  const values = starValues();
  $("given-title").textContent = liking() ? "Your items" : "Your ratings";
  $("given-empty").textContent = liking()
    ? "Like a few items to get recommendations."
    : `Rate a few items (${values ? `${values[0]}–${values[values.length - 1]} stars` : `${state.scale.min} to ${state.scale.max}`}) to get recommendations.`;
  $("clear").textContent = liking() ? "Clear" : "Clear ratings";
  const search = $("search");
  const hint = info.has_titles ? "Search titles…" : "Search item ids…";
  search.placeholder = hint;
  search.setAttribute("aria-label", hint.replace("…", ""));
  const column = info.category_column;
  const select = $("genre");
  if (column && info.genres.length) {
    select.setAttribute("aria-label", column);
    select.replaceChildren(el("option", { value: "" }, `All ${plural(column)}`));
    for (const genre of info.genres) select.append(el("option", { value: genre }, genre));
    select.hidden = false;
  } else {
    select.hidden = true;
  }
}

async function init() {
  try {
    adapt(await api("/info"));
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
  $("clear").addEventListener("click", () => { state.given.clear(); renderGiven(); recommend(); search(); });
  $("similar-close").addEventListener("click", () => { $("similar-panel").hidden = true; });
  await Promise.all([search(), recommend()]);
}

init();
