// The ssedemo client: one EventSource, a log, the demo's two buttons, and a
// table of the retained values of its topics (from the stream's snapshot).
"use strict";

const log = document.getElementById("log");
const stateView = document.getElementById("state");
const lastIdView = document.getElementById("last-id");
const topicsInput = document.getElementById("topics");
const valuesBody = document.getElementById("values-body");
let source = null;
let hasOpened = false;
// Until the stream's "snapshot" event, keyed values are the snapshot's.
let snapshot = null;

function addLog(text) {
  const item = document.createElement("li");
  item.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  log.appendChild(item);
}

function showState(state) {
  stateView.textContent = state;
  stateView.dataset.state = state;
}

function streamUrl() {
  const params = new URLSearchParams();
  for (const topic of topicsInput.value.split(",")) {
    if (topic.trim()) params.append("topic", topic.trim());
  }
  params.append("snapshot", "1");
  return `/sse?${params}`;
}

function firstTopic() {
  const topic = topicsInput.value.split(",")[0].trim();
  return topic || "default";
}

// The demo's keyed events carry their key in their data: {"key": …, "value": …}.
function keyOf(data) {
  try {
    const value = JSON.parse(data);
    return value && typeof value.key === "string" ? value.key : null;
  } catch {
    return null;
  }
}

function showValues(values) {
  const rows = [...values].map(([key, data]) => {
    const row = document.createElement("tr");
    row.dataset.key = key;
    for (const text of [key, data]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.appendChild(cell);
    }
    return row;
  });
  valuesBody.replaceChildren(...rows);
}

function currentValues() {
  return new Map(
    [...valuesBody.rows].map((row) => [row.dataset.key, row.cells[1].textContent]),
  );
}

function keepValue(data) {
  const key = keyOf(data);
  if (snapshot) {
    if (key !== null) snapshot.set(key, data);
    return;
  }
  if (data === "null") {
    // A deletion names no key on the wire: take a fresh snapshot.
    connect();
    return;
  }
  if (key === null) return;
  const values = currentValues();
  values.set(key, data);
  showValues(values);
}

function onEvent(event) {
  if (event.lastEventId) lastIdView.textContent = event.lastEventId;
  const name = event.type === "message" ? "" : `[${event.type}] `;
  addLog(`${name}${event.data}`);
  if (event.type === "message") keepValue(event.data);
}

function onSnapshot(event) {
  onEvent(event);
  showValues(snapshot || new Map());
  snapshot = null;
}

function connect() {
  if (source) source.close();
  hasOpened = false;
  showState("connecting");
  snapshot = new Map();
  source = new EventSource(streamUrl());
  source.onopen = () => {
    hasOpened = true;
    showState("open");
    addLog("open");
  };
  source.onerror = () => {
    // EventSource retries by itself unless it has given up (CLOSED).
    const closed = source.readyState === EventSource.CLOSED;
    showState(closed ? "closed" : hasOpened ? "reconnecting" : "connecting");
    addLog(closed ? "error: stream closed" : "error: reconnecting");
  };
  source.onmessage = onEvent;
  source.addEventListener("resync", (event) => {
    snapshot = new Map();
    onEvent(event);
  });
  source.addEventListener("snapshot", onSnapshot);
}

function close() {
  if (!source) return;
  source.close();
  source = null;
  showState("closed");
  addLog("closed");
}

async function send() {
  const body = { message: "Hey there" };
  addLog(`sent ${JSON.stringify(body)}`);
  try {
    const response = await fetch("/api", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) addLog(`send failed: ${response.status}`);
  } catch (error) {
    addLog(`send failed: ${error}`);
  }
}

async function publishValue(data) {
  const key = document.getElementById("value-key").value;
  if (!key) return;
  try {
    const response = await fetch("/publish", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ topic: firstTopic(), key, data }),
    });
    if (!response.ok) addLog(`publish failed: ${response.status}`);
  } catch (error) {
    addLog(`publish failed: ${error}`);
  }
}

document.getElementById("value-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = document.getElementById("value-key").value;
  const value = document.getElementById("value-data").value;
  publishValue({ key, value });
});
document.getElementById("delete-value").addEventListener("click", () => {
  publishValue(null);
});
document.getElementById("send").addEventListener("click", send);
document.getElementById("close").addEventListener("click", close);
document.getElementById("topics-form").addEventListener("submit", (event) => {
  event.preventDefault();
  connect();
});
window.addEventListener("beforeunload", close);
connect();
