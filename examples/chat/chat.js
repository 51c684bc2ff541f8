// The chat page: one name per connection, one room at a time.
// ?name=NAME in the page's URL connects at once; ?room=ROOM picks the first
// room (default "lobby"). The page joins its room on every (re)connect.
// ?ping=MS and ?pongTimeout=MS set the heartbeat (zocket.js's pingIntervalMs
// and pongTimeoutMs; defaults 15000 and 5000): the tests make them short.
// ?codec=msgpack speaks MessagePack (binary frames, subprotocol
// zocket.msgpack: zocket.js's codec option); without it, or with any other
// value, JSON. #codec names the one in use.
// #status reads "connected", "reconnecting" (the connection dropped; waiting
// for or making another attempt) or "disconnected".
import { connect } from "./zocket.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const codec = params.get("codec") === "msgpack" ? "msgpack" : "json";

let client = null;
let room = null; // the room this page is in, or is about to join
let joined = null; // the room the server confirmed
let members = [];
let joinSeq = 0;

// state: zocket.js's client.state
function setStatus(state) {
  const text = state === "open" ? "connected" : state === "reconnecting" ? state : "disconnected";
  $("status").textContent = text;
  $("status").classList.toggle("on", text === "connected");
  $("status").classList.toggle("retry", text === "reconnecting");
}

// a positive integer of milliseconds from the page's URL, or undefined
function msParam(key) {
  const n = Number(params.get(key));
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

function note(text) {
  $("activity").textContent = text;
}

function item(text) {
  const li = document.createElement("li");
  li.textContent = text;
  return li;
}

function addMessage(from, text) {
  const box = $("messages");
  const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
  const li = document.createElement("li");
  const who = document.createElement("span");
  who.className = "from";
  who.textContent = from;
  li.append(who, ": " + text);
  box.append(li);
  if (atBottom) box.scrollTop = box.scrollHeight;
}

function renderMembers() {
  $("current-room").textContent = joined ?? "-";
  $("members").replaceChildren(...members.map(item));
}

async function refreshRooms() {
  if (!client || !client.connected) return;
  try {
    const list = await client.call("chat.rooms");
    $("rooms").replaceChildren(...list.map(({ room: name, members: count }) => {
      const li = item(`${name} (${count})`);
      li.dataset.room = name;
      li.addEventListener("click", () => {
        $("room").value = name;
        join(name);
      });
      return li;
    }));
  } catch (err) {
    note(`rooms: ${err.code} ${err.message}`);
  }
}

async function join(target) {
  const seq = ++joinSeq;
  const previous = joined;
  room = target;
  if (!client || !client.connected) return; // joins when the connection opens
  if (previous && previous !== target) {
    joined = null;
    members = [];
    $("messages").replaceChildren();
    renderMembers();
    client.call("chat.leave", { room: previous }).catch(() => {});
  }
  try {
    const result = await client.call("chat.join", { room: target });
    if (seq !== joinSeq) { // another join came after this one
      if (result.room !== room) client.call("chat.leave", { room: result.room }).catch(() => {});
      return;
    }
    joined = result.room;
    members = result.members;
    renderMembers();
    note(`joined ${joined}`);
    refreshRooms();
  } catch (err) {
    if (seq !== joinSeq) return;
    if (err.code === "DISCONNECTED") return; // joins target again when the connection opens
    if (err.code !== "TIMEOUT") room = joined; // refused: back to the confirmed room
    note(`join ${target}: ${err.code} ${err.message}`);
  }
}

function start(name) {
  if (client) client.close();
  joined = null;
  members = [];
  renderMembers();
  setStatus("connecting");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}/ws?name=${encodeURIComponent(name)}`;
  const c = connect(url, {
    codec,
    pingIntervalMs: msParam("ping"),
    pongTimeoutMs: msParam("pongTimeout"),
    onState(state) {
      if (c === client) setStatus(state);
    },
    onOpen() {
      if (c !== client) return;
      note(`connected as ${name}`);
      if (room) join(room);
      else refreshRooms();
    },
    onClose({ code, reason, reconnectIn }) {
      if (c !== client) return;
      joined = null;
      members = [];
      renderMembers();
      note(reconnectIn >= 0
        ? `disconnected (${code}), retrying in ${(reconnectIn / 1000).toFixed(1)} s`
        : `disconnected (${code}${reason ? `: ${reason}` : ""})`);
    },
  });
  client = c;
  c.on("chat.message", ({ room: r, from, text }) => {
    if (r === joined) addMessage(from, text);
  });
  c.on("chat.joined", ({ room: r, name: who }) => {
    if (r !== joined) return;
    members.push(who);
    renderMembers();
    note(`${who} joined ${r}`);
  });
  c.on("chat.left", ({ room: r, name: who }) => {
    if (r !== joined) return;
    const at = members.indexOf(who);
    if (at >= 0) members.splice(at, 1);
    renderMembers();
    note(`${who} left ${r}`);
  });
  c.on("__error", (err) => note(`error: ${err.code} ${err.message}`));
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("name").value.trim();
  if (name) start(name);
});

$("room-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const target = $("room").value.trim();
  if (!target) return;
  if (client) {
    join(target);
    return;
  }
  const name = $("name").value.trim();
  if (!name) {
    note("enter a name first");
    $("name").focus();
    return;
  }
  room = target;
  start(name);
});

$("send-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (!text || !client) return;
  if (!joined) {
    note("join a room first");
    return;
  }
  client.call("chat.send", { room: joined, text }).then(() => {
    if ($("text").value === text) $("text").value = "";
  }, (err) => note(`send: ${err.code} ${err.message}`));
});

$("refresh").addEventListener("click", refreshRooms);

$("codec").textContent = codec === "msgpack" ? "MessagePack" : "JSON";

if (params.get("room")) $("room").value = params.get("room");
room = $("room").value.trim() || "lobby";
const initialName = (params.get("name") || "").trim();
if (initialName) {
  $("name").value = initialName;
  start(initialName);
}
