// The moderators' page: every value shown comes from the admin API, and much of it from other
// servers (reasons, names, user ids), so it is only ever set as text (textContent), never as
// HTML. The Content-Security-Policy forbids inline script as a second line of defence.
"use strict";

const API = "/_antechamber/admin/v1";
const TOKEN_KEY = "antechamber.admin.token";
const REFRESH_MS = 3000;

let selectedRoom = null;
let timer = null;
let openDenyForm = null;
let knocksKey = null;

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = cell instanceof Node ? cell : el("td", cell);
    tr.appendChild(td.tagName === "TD" ? td : wrap(td));
  }
  return tr;
}

function wrap(node) {
  const td = document.createElement("td");
  td.appendChild(node);
  return td;
}

function replaceRows(table, rows) {
  const body = table.querySelector("tbody");
  body.replaceChildren(...rows);
}

function waited(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return s + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + " min";
  const h = Math.floor(m / 60);
  if (h < 48) return h + " h " + (m % 60) + " min";
  return Math.floor(h / 24) + " days";
}

function when(ts) {
  return new Date(ts).toISOString().replace("T", " ").slice(0, 19);
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || "HTTP " + status);
    this.status = status;
    this.errcode = (body && body.errcode) || "M_UNKNOWN";
  }
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY) };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(API + path, init);
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    if (response.status === 401) showLogin("The token was refused (" + (data && data.errcode) + ").");
    throw new ApiError(response.status, data);
  }
  return data;
}

function room(roomId) {
  return "/rooms/" + encodeURIComponent(roomId);
}

function setStatus(text) {
  document.getElementById("status").textContent = text;
}

function showResult(ok, text) {
  const result = document.getElementById("result");
  result.className = ok ? "ok" : "error";
  result.textContent = text;
}

function showLogin(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (timer) clearInterval(timer);
  timer = null;
  document.getElementById("main").hidden = true;
  document.getElementById("forget").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = message || "";
  document.getElementById("token").focus();
}

function start() {
  document.getElementById("login").hidden = true;
  document.getElementById("main").hidden = false;
  document.getElementById("forget").hidden = false;
  refresh();
  if (!timer) timer = setInterval(refresh, REFRESH_MS);
}

async function refresh() {
  try {
    const data = await api("GET", "/rooms");
    renderRooms(data.rooms);
    if (selectedRoom) await refreshRoom(selectedRoom);
    setStatus("updated " + new Date().toLocaleTimeString());
  } catch (e) {
    setStatus("could not refresh: " + e.message);
  }
}

function renderRooms(rooms) {
  const rows = rooms.map((r) => {
    const title = el("td");
    title.appendChild(el("div", r.name || "(no name)"));
    title.appendChild(el("div", r.room_id, "mono quiet"));
    const count = el("span", r.pending_knocks, r.pending_knocks ? "count" : "count zero");
    const tr = row([title, el("td", r.join_rule || "?"), wrap(count), el("td", r.joined_members)]);
    tr.dataset.roomId = r.room_id;
    if (r.room_id === selectedRoom) tr.classList.add("selected");
    tr.addEventListener("click", () => selectRoom(r.room_id));
    return tr;
  });
  if (!rows.length) rows.push(row([el("td", "No rooms yet: antechamber rooms create …", "quiet")]));
  replaceRows(document.getElementById("rooms"), rows);
}

function selectRoom(roomId) {
  selectedRoom = roomId;
  openDenyForm = null;
  knocksKey = null;
  document.getElementById("result").textContent = "";
  document.getElementById("room").hidden = false;
  for (const tr of document.querySelectorAll("#rooms tbody tr")) {
    tr.classList.toggle("selected", tr.dataset.roomId === roomId);
  }
  refreshRoom(roomId);
}

async function refreshRoom(roomId) {
  const [summary, knocks, members, timeline] = await Promise.all([
    api("GET", room(roomId)),
    api("GET", room(roomId) + "/knocks"),
    api("GET", room(roomId) + "/members"),
    api("GET", room(roomId) + "/timeline?limit=20"),
  ]);
  if (roomId !== selectedRoom) return;
  document.getElementById("room-title").textContent = summary.name || "(no name)";
  document.getElementById("room-id").textContent =
    summary.room_id + " · version " + summary.room_version + " · " + summary.join_rule;
  renderKnocks(roomId, knocks);
  replaceRows(document.getElementById("members"), members.members.map((m) =>
    row([el("td", m.user_id, "mono"), m.membership, m.reason || "", el("td", m.sender, "mono")])));
  replaceRows(document.getElementById("timeline"), timeline.events.slice().reverse().map((e) =>
    row([when(e.origin_server_ts), el("td", e.sender, "mono"), e.type, e.summary])));
}

function renderKnocks(roomId, data) {
  const table = document.getElementById("knocks");
  document.getElementById("no-knocks").hidden = data.knocks.length > 0;
  table.hidden = data.knocks.length === 0;
  // The same queue as last time: only the waiting times move (a deny form being filled in
  // keeps its focus).
  const key = roomId + "\n" + data.knocks.map((k) => k.event_id).join("\n");
  if (key === knocksKey) {
    for (const k of data.knocks) {
      const tr = [...table.querySelectorAll("tbody tr")].find((r) => r.dataset.userId === k.user_id);
      if (tr) tr.querySelector("td.waited").textContent = waited(data.now_ts - k.origin_server_ts);
    }
    return;
  }
  knocksKey = key;
  const rows = data.knocks.map((k) => {
    const actions = el("td");
    const accept = el("button", "Accept", "accept");
    accept.type = "button";
    accept.addEventListener("click", () => act(roomId, k.user_id, "accept", {}, accept));
    const deny = el("button", "Deny", "deny");
    deny.type = "button";
    deny.addEventListener("click", () => showDenyForm(roomId, k.user_id, actions));
    actions.append(accept, " ", deny);
    const tr = row([el("td", k.user_id, "mono"), el("td", k.server_name, "mono"),
      el("td", k.reason === null ? "" : k.reason, "reason"),
      el("td", waited(data.now_ts - k.origin_server_ts), "waited"), actions]);
    tr.dataset.userId = k.user_id;
    return tr;
  });
  replaceRows(table, rows);
}

function showDenyForm(roomId, userId, cell) {
  if (openDenyForm && openDenyForm.userId === userId) return;
  if (openDenyForm) openDenyForm.form.remove();
  const form = el("form", null, "deny-form");
  const reason = el("input");
  reason.placeholder = "Reason (optional)";
  reason.maxLength = 1000;
  reason.name = "reason";
  const confirm = el("button", "Deny knock", "deny");
  confirm.type = "submit";
  const cancel = el("button", "Cancel");
  cancel.type = "button";
  form.append(reason, confirm, cancel);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = reason.value ? { reason: reason.value } : {};
    act(roomId, userId, "deny", body, confirm);
  });
  cancel.addEventListener("click", () => { form.remove(); openDenyForm = null; });
  openDenyForm = { userId, form };
  cell.appendChild(form);
  reason.focus();
}

async function act(roomId, userId, action, body, button) {
  button.disabled = true;
  showResult(true, (action === "accept" ? "Inviting " : "Denying ") + userId + "…");
  try {
    const data = await api("POST", room(roomId) + "/knocks/" + encodeURIComponent(userId) +
      "/" + action, body);
    showResult(true, (action === "accept" ? "Invited " : "Denied ") + userId + ": " + data.event_id);
    if (openDenyForm && openDenyForm.userId === userId) openDenyForm = null;
    knocksKey = null;
  } catch (e) {
    showResult(false, (action === "accept" ? "Accept" : "Deny") + " of " + userId + " failed: " +
      e.errcode + " (HTTP " + e.status + "): " + e.message);
  } finally {
    button.disabled = false;
    refresh();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
    document.getElementById("token").value = "";
    start();
  });
  document.getElementById("forget").addEventListener("click", () => showLogin(""));
  if (sessionStorage.getItem(TOKEN_KEY)) start();
  else showLogin("");
});
