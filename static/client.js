// The ssedemo client: one EventSource, a log, and the demo's two buttons.
"use strict";

const log = document.getElementById("log");
const stateView = document.getElementById("state");
const lastIdView = document.getElementById("last-id");
const topicsInput = document.getElementById("topics");
let source = null;
let hasOpened = false;

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
  const query = params.toString();
  return query ? `/sse?${query}` : "/sse";
}

function onEvent(event) {
  if (event.lastEventId) lastIdView.textContent = event.lastEventId;
  const name = event.type === "message" ? "" : `[${event.type}] `;
  addLog(`${name}${event.data}`);
}

function connect() {
  if (source) source.close();
  hasOpened = false;
  showState("connecting");
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
  source.addEventListener("resync", onEvent);
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

document.getElementById("send").addEventListener("click", send);
document.getElementById("close").addEventListener("click", close);
document.getElementById("topics-form").addEventListener("submit", (event) => {
  event.preventDefault();
  connect();
});
window.addEventListener("beforeunload", close);
connect();
