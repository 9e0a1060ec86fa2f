// The campaign page: sign in (demo tickets), grab a red packet, list the gifts, claim one and
// follow its delivery. Plain ES module, no build step, no dependencies. Gift details come from
// the static, content-hashed catalog (the API gives ids and order only); the browser caches it.

const ORDER_POLL_MS = 1000;
/** Polls of an order before the page stops watching (it says so; a reload resumes nothing). */
const ORDER_POLLS_MAX = 300;
/** Swipe distance (px) that opens the swipe packet. */
const SWIPE_MIN_PX = 40;
const TICKET_KEY = "hongbao.ticket";
const FIRST_DEMO_USER = 10000;

const $ = (id) => document.getElementById(id);
const state = { ticket: null, user: null, coupon: null, catalog: null, gift: null, polling: 0 };

// ---- monitoring -------------------------------------------------------------------------------

/**
 * Where the page reports what players see (page opened, packet shown, gift viewed) to the
 * monitor (`POST /v1/events`), so the dashboard's funnel starts where the player does. Counted by
 * event only: `fields` stay on the page (the series carry no per-gift or per-user labels). Best
 * effort: a lost beacon is never retried and never gets in the player's way.
 */
function sendBeacon(event, fields = {}) {
  void fields;
  const body = JSON.stringify({ events: [{ event, at_ms: Date.now() }] });
  try {
    const blob = new Blob([body], { type: "application/json" });
    if (!(navigator.sendBeacon && navigator.sendBeacon("/v1/events", blob))) {
      fetch("/v1/events", { method: "POST", headers: { "content-type": "application/json" }, body, keepalive: true })
        .catch(() => {});
    }
  } catch {
    // Beacons are best effort.
  }
}

// ---- the API ----------------------------------------------------------------------------------

class ApiFailure extends Error {
  constructor(status, error) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.error = error;
  }
}

async function api(method, path, body) {
  const headers = { accept: "application/json" };
  if (state.ticket) headers.authorization = `Bearer ${state.ticket}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiFailure(0, { code: "offline", message: "no connection" });
  }
  const text = await response.text();
  let json = {};
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    json = {};
  }
  if (!response.ok) {
    throw new ApiFailure(response.status, json.error || { code: "http_" + response.status });
  }
  return json;
}

// ---- what a refusal means to a player ---------------------------------------------------------

const when = (unixS) =>
  new Date(unixS * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

const REASONS = {
  audience_mismatch: "this gift is for another kind of player (new or returning).",
  login_not_fresh: "this valuable gift needs a fresh sign-in. Sign out and in again.",
  role_level_too_low: "your role's level is too low for it.",
  region_not_allowed: "it is not available in your role's region.",
  no_qualifying_role: "none of your roles meets its requirements.",
  roles_unavailable: "the game cannot check your roles right now. Try again in a moment.",
};

const MESSAGES = {
  coupon_limit_reached: "You have opened all the red packets this channel allows you. Try another one.",
  channel_budget_exhausted: "This channel's red packets have all been given out. Try another one.",
  unknown_channel: "That red packet is not part of this campaign.",
  out_of_stock: "Sorry, this gift has just run out. Pick another one.",
  sold_out: "Sorry, this gift has just run out. Pick another one.",
  limit_reached: "You already have this gift; each player may claim it only so many times.",
  coupon_already_redeemed: "This red packet has already been opened for another gift.",
  role_not_found: "That role was not found in the game. Pick another role or create one.",
  role_not_created: "The game could not create a role there. Try another zone.",
  gift_not_found: "That gift is no longer in the campaign. Pick another one.",
  game_not_found: "That game is not part of this campaign.",
  order_not_found: "We cannot find that order.",
  expired_coupon: "This red packet has expired. Open a new one.",
  malformed_coupon: "This red packet is not valid. Open a new one.",
  forged_coupon: "This red packet is not valid. Open a new one.",
  coupon_not_found: "This red packet is not yours or no longer exists. Open a new one.",
  campaign_closed: "The campaign has ended. Thank you for playing!",
  game_side_unavailable: "The game is not answering right now. Try again in a moment.",
  store_unavailable: "We are very busy right now. Try again in a moment.",
  too_many_requests: "Too many taps at once. Wait a second and try again.",
  request_timeout: "That took too long. Try again.",
  unavailable: "We are very busy right now. Try again in a moment.",
  internal: "Something went wrong on our side. Try again in a moment.",
  offline: "No connection. Check your network and try again.",
  demo_only: "Signing in with a player number works only in the demo; in the app you are signed in already.",
  invalid_request: "The game refused that role. Pick another one.",
};

const SIGNED_OUT = new Set([
  "missing_ticket", "malformed_ticket", "unknown_ticket_key", "forged_ticket", "expired_ticket",
  "ticket_not_yet_valid",
]);

/** A player-friendly sentence for an API refusal. */
function explain(failure) {
  const e = failure.error || {};
  const code = e.code || "";
  if (SIGNED_OUT.has(code)) return "You are signed out. Please sign in again.";
  if (code === "campaign_not_open" || code === "wave_not_open") {
    const who = code === "wave_not_open" ? "Your turn" : "The campaign";
    return e.opens_at
      ? `${who} has not started yet: it opens at ${when(e.opens_at)}. Please come back then.`
      : `${who} has not started yet. Please come back soon.`;
  }
  if (code === "not_eligible") {
    return "You cannot claim this gift: " + (REASONS[e.reason] || "it is not available to you.");
  }
  if (MESSAGES[code]) return MESSAGES[code];
  if (failure.status >= 500) return "Something went wrong on our side. Try again in a moment.";
  return "That did not work. Please try again.";
}

// ---- small view helpers -----------------------------------------------------------------------

function say(text, kind = "") {
  const m = $("message");
  m.textContent = text;
  m.className = kind;
}

function show(sectionId, focus = true) {
  for (const id of ["signin", "packets", "gifts", "claim", "order"]) {
    const visible = id === sectionId || (id === "packets" && sectionId === "gifts");
    $(id).hidden = !visible;
  }
  if (focus) {
    const heading = $(sectionId).querySelector("h2");
    if (heading) heading.focus();
  }
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

/** Failures end up here: a sentence for the player, and back to sign-in when signed out. */
function fail(failure) {
  if (!(failure instanceof ApiFailure)) {
    console.error(failure);
    say("Something went wrong. Please try again.", "error");
    return;
  }
  say(explain(failure), "error");
  if (SIGNED_OUT.has(failure.error.code)) signOut(false);
}

async function busy(button, work) {
  button.disabled = true;
  try {
    await work();
  } catch (e) {
    fail(e);
  } finally {
    button.disabled = false;
  }
}

// ---- sign in ----------------------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const raw = $("user-id").value.trim();
  if (!/^[0-9]{1,20}$/.test(raw)) {
    $("user-id").setAttribute("aria-invalid", "true");
    say("Enter your player number (digits only).", "error");
    $("user-id").focus();
    return;
  }
  $("user-id").removeAttribute("aria-invalid");
  const button = event.submitter || $("signin-form").querySelector("button");
  await busy(button, async () => {
    // The number travels as JSON text, so ids above 2^53 stay exact.
    const issued = await fetchTicket(raw);
    state.ticket = issued.ticket;
    state.user = issued.user;
    sessionStorage.setItem(TICKET_KEY, JSON.stringify({ ticket: issued.ticket, user: issued.user }));
    signedIn();
    say(`Welcome, player ${issued.user}. Open a red packet!`, "ok");
  });
}

async function fetchTicket(userDigits) {
  const response = await fetch("/demo/v1/ticket", {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: `{"user":${userDigits}}`,
  }).catch(() => null);
  if (!response) throw new ApiFailure(0, { code: "offline" });
  const json = await response.json().catch(() => ({}));
  // Only `hongbao demo` mounts the demo sign-in; elsewhere the app signs players in.
  if (response.status === 404) throw new ApiFailure(404, { code: "demo_only" });
  if (!response.ok) throw new ApiFailure(response.status, json.error || {});
  return json;
}

function signedIn() {
  $("who-id").textContent = state.user;
  $("who").hidden = false;
  show("packets");
  sendBeacon("packet_shown", { channels: ["swipe", "ar_map", "scan"] });
}

function signOut(clearMessage = true) {
  stopPolling();
  Object.assign(state, { ticket: null, user: null, coupon: null, gift: null });
  sessionStorage.removeItem(TICKET_KEY);
  $("who").hidden = true;
  show("signin");
  if (clearMessage) say("You are signed out.");
}

// ---- red packets ------------------------------------------------------------------------------

async function grab(button) {
  const channel = button.dataset.channel;
  await busy(button, async () => {
    const grabbed = await api("POST", "/v1/coupons", { channel });
    state.coupon = grabbed.coupon;
    say(`You opened a ${button.querySelector(".packet-name").textContent} red packet! ` +
      "Pick a gift below.", "ok");
    await listGifts();
  });
}

/** The swipe packet opens on a horizontal swipe as well as on a tap (pointer events). */
function enableSwipe(button) {
  let startX = null;
  button.addEventListener("pointerdown", (e) => { startX = e.clientX; });
  button.addEventListener("pointerup", (e) => {
    if (startX !== null && Math.abs(e.clientX - startX) >= SWIPE_MIN_PX) {
      e.preventDefault();
      grab(button);
    }
    startX = null;
  });
}

// ---- gifts ------------------------------------------------------------------------------------

/** The catalog of `version`: fetched once per version, then from the browser's cache. */
async function catalog(version) {
  if (state.catalog && state.catalog.version === version) return state.catalog;
  if (!/^[0-9a-f]{1,64}$/.test(version)) throw new Error("odd catalog version");
  const response = await fetch(`/static/catalog/catalog.${version}.json`);
  if (!response.ok) throw new ApiFailure(response.status, { code: "unavailable" });
  const data = await response.json();
  const games = new Map(data.games.map((g) => [g.id, g]));
  const gifts = new Map(data.gifts.map((g) => [g.id, g]));
  state.catalog = { version, title: data.title, games, gifts };
  return state.catalog;
}

async function listGifts() {
  const list = await api("GET", `/v1/coupons/${encodeURIComponent(state.coupon)}/gifts`);
  const cat = await catalog(list.catalog_version);
  if (cat.title) $("campaign-title").textContent = cat.title;
  if (list.redeemed) {
    showOrder(list.redeemed.order_id, cat.gifts.get(list.redeemed.gift_id));
    return;
  }
  const ol = $("gift-list");
  ol.replaceChildren();
  for (const { gift_id } of list.gifts) {
    const gift = cat.gifts.get(gift_id);
    if (gift) ol.append(giftItem(gift, cat));
  }
  $("gifts-note").textContent = list.gifts.length === 0
    ? "No gift is available to you right now."
    : `${list.gifts.length} gifts for you, best first.` +
      (list.degraded ? " Some gifts are hidden while the games are slow." : "");
  show("gifts", false);
}

const money = (cents) => `¥${(cents / 100).toFixed(2)}`;

function giftItem(gift, cat) {
  const game = cat.games.get(gift.game_id);
  const items = gift.items.map((i) => `${i.item} ×${i.count}`).join(", ");
  const title = el("h3", {}, gift.title);
  if (gift.audience === "new") title.append(el("span", { class: "tag" }, "new players"));
  if (gift.high_value) title.append(el("span", { class: "tag" }, "valuable"));
  const classes = `gift audience-${gift.audience}` + (gift.high_value ? " valuable" : "");
  return el("li", { class: classes, "data-gift": gift.id },
    title,
    el("p", { class: "game" }, `${game ? game.name : gift.game_id} · worth ${money(gift.value_cents)}`),
    el("p", { class: "items" }, items),
    el("button", {
      type: "button", "aria-label": `Choose ${gift.title}`,
      onclick: () => chooseGift(gift),
    }, "Choose"));
}

// ---- claim ------------------------------------------------------------------------------------

async function chooseGift(gift) {
  state.gift = gift;
  sendBeacon("gift_viewed", { gift_id: gift.id });
  const game = state.catalog.games.get(gift.game_id);
  $("claim-gift").textContent = `${gift.title} (${game ? game.name : gift.game_id})`;
  say("");
  show("claim");
  await loadRoles().catch(fail);
}

async function loadRoles(selectRoleId) {
  const gift = state.gift;
  const found = await api("GET", `/demo/v1/roles?game=${encodeURIComponent(gift.game_id)}`);
  const box = $("roles");
  box.replaceChildren();
  const allowed = gift.regions && gift.regions.length ? new Set(gift.regions) : null;
  const fits = (r) => r.level >= (gift.min_role_level || 0) && (!allowed || allowed.has(r.region));
  // Offered first: the role just created, else the highest-level role that meets the gift's
  // requirements (what the gift list promised exists), else the first.
  const best = found.roles.filter(fits).sort((a, b) => b.level - a.level)[0] || found.roles[0];
  found.roles.forEach((role, i) => {
    const id = `role-${i}`;
    const input = el("input", { type: "radio", name: "role", id, value: String(i) });
    input.dataset.zone = role.zone_id;
    input.dataset.role = role.role_id;
    const pick = selectRoleId === undefined ? role === best : role.role_id === selectRoleId;
    if (pick) input.checked = true;
    box.append(el("div", { class: "role" }, input, el("label", { for: id },
      `Zone ${role.zone_id} (${role.region}), level ${role.level}`)));
  });
  const zones = found.zones.filter((z) => !allowed || allowed.has(z.region));
  $("zone").replaceChildren(...zones.map((z) =>
    el("option", { value: String(z.zone_id) }, `Zone ${z.zone_id} (${z.region})`)));
  const none = found.roles.length === 0;
  $("role-set").hidden = none;
  $("new-role").hidden = false;
  // Reading and focus order follow the likely next step: a player with roles claims (creating
  // one is the aside, after); a player without first creates one.
  const actions = $("claim-form").querySelector(".actions");
  $("claim-form").insertBefore($("new-role"), none ? actions : null);
  $("new-role-note").textContent = none
    ? "You have no role in this game yet. Create one to receive the gift."
    : "Or create a new role:";
  $("claim-button").disabled = none;
}

async function createRole(button) {
  await busy(button, async () => {
    const role = await api("POST", "/demo/v1/roles", {
      game: state.gift.game_id,
      zone_id: Number($("zone").value),
    });
    say(`Role created in zone ${role.zone_id}.`, "ok");
    await loadRoles(role.role_id);
    $("claim-button").focus();
  });
}

async function claim(event) {
  event.preventDefault();
  const picked = $("roles").querySelector("input[name=role]:checked");
  if (!picked) {
    say("Choose a role to receive the gift, or create one.", "error");
    return;
  }
  await busy($("claim-button"), async () => {
    // Role ids stay below 2^53 (the game side promises it), so Number is exact.
    const answer = await api("POST", "/v1/claims", {
      coupon: state.coupon,
      gift_id: state.gift.id,
      zone_id: Number(picked.dataset.zone),
      role_id: Number(picked.dataset.role),
    });
    say("Claimed! Your gift is on its way.", "ok");
    showOrder(answer.order_id, state.gift, answer.status);
  });
}

// ---- order ------------------------------------------------------------------------------------

const STATUS = {
  queued: ["Queued for delivery…", ""],
  delivering: ["Being delivered to your role…", ""],
  retrying: ["The game is busy; we keep trying…", ""],
  held: ["Held for a quick check (a valuable gift); it will follow.", ""],
  delivered: ["Delivered! Open the game to find it in your mailbox.", "delivered"],
  dead: ["The game could not deliver this gift. Our staff will look into it.", "failed"],
  expired: ["The delivery deadline passed before the game accepted it.", "failed"],
};
const FINAL = new Set(["delivered", "dead", "expired"]);

function renderStatus(status) {
  const [text, kind] = STATUS[status] || [`Status: ${status}`, ""];
  const p = $("order-status");
  p.textContent = text;
  p.className = `status ${kind}`;
  p.dataset.status = status;
}

function showOrder(orderId, gift, status = "queued") {
  $("order-gift").textContent = gift ? gift.title : "";
  renderStatus(status);
  show("order");
  watchOrder(orderId);
}

function stopPolling() {
  state.polling += 1;
}

async function watchOrder(orderId) {
  stopPolling();
  const mine = state.polling;
  for (let i = 0; i < ORDER_POLLS_MAX && mine === state.polling; i++) {
    try {
      const order = await api("GET", `/v1/orders/${encodeURIComponent(orderId)}`);
      if (mine !== state.polling) return;
      renderStatus(order.status);
      if (FINAL.has(order.status)) return;
    } catch (e) {
      fail(e);
      if (e instanceof ApiFailure && e.status < 500 && e.status !== 429) return;
    }
    await new Promise((r) => setTimeout(r, ORDER_POLL_MS));
  }
  if (mine === state.polling) say("Still on its way; check back later.");
}

// ---- start ------------------------------------------------------------------------------------

function start() {
  $("user-id").placeholder = `e.g. ${FIRST_DEMO_USER}`;
  $("signin-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut());
  for (const button of document.querySelectorAll(".packet")) {
    button.addEventListener("click", () => grab(button));
  }
  enableSwipe($("packet-swipe"));
  $("claim-form").addEventListener("submit", claim);
  $("create-role").addEventListener("click", (e) => createRole(e.currentTarget));
  $("back-to-gifts").addEventListener("click", () => show("gifts"));
  $("again").addEventListener("click", () => {
    stopPolling();
    say("");
    show("packets");
  });
  sendBeacon("page_opened");
  const saved = JSON.parse(sessionStorage.getItem(TICKET_KEY) || "null");
  if (saved && saved.ticket) {
    state.ticket = saved.ticket;
    state.user = saved.user;
    signedIn();
  } else {
    show("signin", false);
  }
}

start();
