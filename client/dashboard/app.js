// The vidsent dashboard: connection, controls, stream list, errors and one panel per watched stream.

import { Camera } from './camera.js';
import { Connection } from './connection.js';
import { StreamPanel } from './panel.js';
import { scale, setScale } from './scale.js';
import { bytes, h } from './util.js';

const LIST_EVERY_MS = 4000;
const MAX_ERRORS = 20;

const $ = (selector) => document.querySelector(selector);
const ui = {
  connection: $('#connection'),
  connectionText: $('#connection .text'),
  mediaSelect: $('#media-select'),
  startFile: $('#start-file'),
  rtspUrl: $('#rtsp-url'),
  rtspHint: $('#rtsp-hint'),
  rtspHosts: $('#rtsp-hosts'),
  startRtsp: $('#start-rtsp'),
  startCamera: $('#start-camera'),
  errors: $('#errors'),
  errorList: $('#errors .error-list'),
  clearErrors: $('#errors .clear-errors'),
  streams: $('#streams'),
  streamCount: $('#stream-count'),
  panels: $('#panels'),
  empty: $('#panels-empty'),
};

// ------------------------------------------------------------------ state exposed for tests and the console

/** window.vidsent: {connected, connection, streams: {ID: {windows, transcripts, pending, ended, lost, watched,
 * lastWindow, lastStatus, source, summary, language (the last status's: {language, p, since, previous} or null)}},
 * running: [...], media: {...}, errors: [...], iceServers, camera, scale (the label thresholds and grade bands in
 * use: the server's from its hello)}. */
const vidsent = {
  connected: false,
  connection: 'connecting',
  streams: {},
  running: [],
  media: { files: [], truncated: false, rtsp_hosts: [] },
  errors: [],
  iceServers: [],
  camera: { state: 'idle', stream: null },
  scale: scale(),
};
Object.defineProperty(vidsent, 'state', { get: () => vidsent, enumerable: false });
// For tests: drop the websocket as a network failure would (the page reconnects by itself).
Object.defineProperty(vidsent, 'dropConnection', {
  enumerable: false,
  value: () => { if (connection.ws) connection.ws.close(4000, 'dropped on purpose'); },
});
window.vidsent = vidsent;

function streamState(id) {
  if (!vidsent.streams[id]) {
    vidsent.streams[id] = { windows: 0, transcripts: 0, pending: 0, ended: false, lost: false, watched: false,
      lastWindow: null, lastStatus: null, source: null, summary: null, alerts: [], language: null };
  }
  return vidsent.streams[id];
}

/** @type {Map<string, StreamPanel>} */
const panels = new Map();
let running = new Map();  // id -> {stream, source, state, subscribers} as the server last listed them

// ------------------------------------------------------------------ errors

function showError(code, message, stream) {
  const entry = { code: code || 'error', message: message || '', stream: stream || null, at: Date.now() };
  vidsent.errors.push(entry);
  while (vidsent.errors.length > MAX_ERRORS) vidsent.errors.shift();
  const item = h('li', { class: 'error', dataset: { code: entry.code }, role: 'alert' },
    h('span', { class: 'error-code' }, entry.code),
    entry.stream ? h('span', { class: 'error-stream' }, entry.stream) : null,
    h('span', { class: 'error-message' }, entry.message),
    h('time', { class: 'error-time', datetime: new Date(entry.at).toISOString() },
      new Date(entry.at).toLocaleTimeString()),
    h('button', { type: 'button', class: 'dismiss', 'aria-label': 'Dismiss this error', title: 'Dismiss',
      onclick: () => { item.remove(); dropError(entry); syncErrors(); } }, '\u00d7'));
  ui.errorList.append(item);
  while (ui.errorList.children.length > MAX_ERRORS) ui.errorList.firstElementChild.remove();
  syncErrors();
  console.warn(`vidsent: ${entry.code}: ${entry.message}${entry.stream ? ` (${entry.stream})` : ''}`);
}

function dropError(entry) {
  const i = vidsent.errors.indexOf(entry);
  if (i >= 0) vidsent.errors.splice(i, 1);
}

function syncErrors() {
  const count = ui.errorList.children.length;
  ui.errors.hidden = count === 0;
  ui.errors.dataset.count = String(count);
}

ui.clearErrors.addEventListener('click', () => {
  ui.errorList.replaceChildren();
  vidsent.errors.length = 0;
  syncErrors();
});

// ------------------------------------------------------------------ connection

// A server with a token is opened as /?token=…: the server answered with a cookie that the page's modules and its
// websocket now present, so the token leaves the address bar (and the history).
if (new URLSearchParams(location.search).has('token')) history.replaceState(null, '', location.pathname);
const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
const connection = new Connection(wsUrl, {
  onMessage: handle,
  onState: connectionState,
  onError: (code, message) => showError(code, message),
});

function send(request) {
  if (connection.send(request)) return true;
  showError('not_connected', `not connected to the server: "${request.type}" was not sent`, request.stream);
  return false;
}

let countdown = null;
function connectionState(state, info) {
  vidsent.connection = state;
  if (state !== 'connected') vidsent.connected = false;
  ui.connection.dataset.state = state;
  clearInterval(countdown);
  if (state === 'connected') {
    ui.connectionText.textContent = 'connected';
  } else if (state === 'connecting') {
    ui.connectionText.textContent = 'connecting…';
  } else if (info.retryAt) {
    const tickDown = () => {
      const left = Math.max(0, (info.retryAt - Date.now()) / 1000);
      ui.connectionText.textContent = `reconnecting in ${left.toFixed(left < 10 ? 1 : 0)} s…`;
    };
    tickDown();
    countdown = setInterval(tickDown, 100);
  } else {
    ui.connectionText.textContent = `reconnecting… (try ${info.attempt})`;
  }
  ui.connection.title = state === 'connected' ? wsUrl : `${state}: ${wsUrl}`;
  syncControls();
  if (state !== 'connected') {
    for (const panel of panels.values()) panel.el.dataset.offline = 'true';
  }
}

// ------------------------------------------------------------------ messages

function handle(msg) {
  switch (msg.type) {
    case 'hello': return onHello(msg);
    case 'streams': return updateStreams(msg.streams || []);
    case 'media': return updateMedia(msg);
    case 'subscribed': return onSubscribed(msg.stream);
    case 'window': return onWindow(msg);
    case 'transcript': return onTranscript(msg);
    case 'status': return onStatus(msg);
    case 'end': return onEnd(msg);
    case 'error': return onServerError(msg);
    case 'webrtc_answer': return onAnswer(msg);
    case 'alert': return onAlert(msg);
    default: return undefined;  // a newer server's message: ignored
  }
}

function onHello(msg) {
  vidsent.connected = true;
  vidsent.server = msg.server;
  vidsent.iceServers = Array.isArray(msg.ice_servers) ? msg.ice_servers : [];
  if (setScale(msg.scale)) {
    for (const panel of panels.values()) panel.rescale();
  }
  vidsent.scale = scale();
  const live = new Set((msg.streams || []).map((s) => s.stream));
  // After a reconnect: carry on with the watched streams that still run; the others ended while we were away.
  for (const [id, panel] of panels) {
    panel.el.dataset.offline = 'false';
    if (panel.ended) continue;
    if (live.has(id)) {
      send({ type: 'subscribe', stream: id });
    } else {
      panel.markLost();
      Object.assign(streamState(id), { ended: true, lost: true, watched: false });
      if (camera.streamId === id) camera.stop();
    }
  }
  updateStreams(msg.streams || []);
  send({ type: 'list_media' });
  syncControls();
}

function onSubscribed(id) {
  if (!id) return;
  const st = streamState(id);
  st.watched = true;
  st.ended = false;
  ensurePanel(id);
  renderStreams();
}

function onWindow(msg) {
  const panel = panels.get(msg.stream);
  if (!panel) return;
  const st = streamState(msg.stream);
  st.windows += 1;
  st.lastWindow = msg;
  panel.onWindow(msg);
}

function onTranscript(msg) {
  const panel = panels.get(msg.stream);
  if (!panel) return;
  const st = streamState(msg.stream);
  if (msg.final) st.transcripts += 1;
  else st.pending += 1;
  panel.onTranscript(msg);
}

function onStatus(msg) {
  const st = streamState(msg.stream);
  st.lastStatus = msg;
  if (msg.source) st.source = msg.source;
  if (Object.hasOwn(msg, 'language')) st.language = msg.language;
  const panel = panels.get(msg.stream);
  if (panel) panel.onStatus(msg);
  const item = running.get(msg.stream);
  if (item && msg.state && item.state !== msg.state) {
    item.state = msg.state;
    renderStreams();
  }
}

function onAlert(msg) {
  const st = streamState(msg.stream);
  st.alerts.push(msg);
  const panel = panels.get(msg.stream);
  if (panel) panel.onAlert(msg);
}

function onEnd(msg) {
  const st = streamState(msg.stream);
  st.ended = true;
  st.watched = false;
  st.summary = msg.summary || {};
  const panel = panels.get(msg.stream);
  if (panel) panel.onEnd(msg.summary || {});
  if (camera.streamId === msg.stream) camera.stop();
  running.delete(msg.stream);
  renderStreams();
  if (connection.open) connection.send({ type: 'list' });
}

function onServerError(msg) {
  showError(msg.code, msg.message, msg.stream);
  // Errors about a request carry no stream; one that comes while the camera's offer is out is the offer's.
  if (!msg.stream && camera.awaitingAnswer) camera.offerFailed();
  if (msg.stream) {
    const panel = panels.get(msg.stream);
    if (panel && !panel.ended) panel.stopBtn.disabled = false;
  }
  syncControls();
}

function onAnswer(msg) {
  if (!camera.awaitingAnswer) return;
  const preview = camera.media;
  camera.accept(msg);
  const st = streamState(msg.stream);
  st.camera = true;
  ensurePanel(msg.stream, { camera: preview, source: 'camera' });
}

// ------------------------------------------------------------------ streams list

function updateStreams(list) {
  running = new Map(list.map((s) => [s.stream, { ...s }]));
  vidsent.running = list.map((s) => s.stream);
  renderStreams();
}

function renderStreams() {
  const items = [...running.values()].sort((a, b) => String(a.stream).localeCompare(String(b.stream), undefined,
    { numeric: true }));
  const keep = new Set(items.map((s) => s.stream));
  for (const li of [...ui.streams.querySelectorAll(':scope > li[data-stream]')]) {
    if (!keep.has(li.dataset.stream)) li.remove();
  }
  const placeholder = ui.streams.querySelector(':scope > li.empty');
  if (items.length && placeholder) placeholder.remove();
  if (!items.length && !placeholder) ui.streams.append(h('li', { class: 'empty' }, 'No stream is running.'));
  for (const s of items) {
    let li = ui.streams.querySelector(`:scope > li[data-stream="${CSS.escape(s.stream)}"]`);
    if (!li) {
      li = h('li', { dataset: { stream: s.stream } },
        h('div', { class: 's-line' }, h('span', { class: 's-id' }, s.stream), h('span', { class: 's-state' })),
        h('div', { class: 's-source' }),
        h('div', { class: 's-line' }, h('span', { class: 's-subs' }),
          h('button', { type: 'button', class: 'watch', onclick: () => toggleWatch(s.stream) })));
      ui.streams.append(li);
    }
    const watched = panels.has(s.stream) && !panels.get(s.stream).ended;
    li.dataset.state = s.state || '';
    li.dataset.watched = String(watched);
    li.querySelector('.s-state').textContent = s.state || '';
    const source = li.querySelector('.s-source');
    source.textContent = s.source || '';
    source.title = s.source || '';
    const n = Number(s.subscribers) || 0;
    li.querySelector('.s-subs').textContent = `${n} watching`;
    const button = li.querySelector('.watch');
    button.textContent = watched ? 'Unwatch' : 'Watch';
    button.setAttribute('aria-pressed', String(watched));
    button.setAttribute('aria-label', `${watched ? 'Stop watching' : 'Watch'} stream ${s.stream}`);
    // keep the order
    ui.streams.append(li);
  }
  ui.streamCount.textContent = String(items.length);
}

function toggleWatch(id) {
  const panel = panels.get(id);
  if (panel && !panel.ended) {
    unwatch(panel);
  } else {
    if (panel) removePanel(panel);
    send({ type: 'subscribe', stream: id });
  }
}

function unwatch(panel) {
  if (!panel.ended) send({ type: 'unsubscribe', stream: panel.id });
  streamState(panel.id).watched = false;
  removePanel(panel);
}

// ------------------------------------------------------------------ panels

function ensurePanel(id, { camera: media = null, source } = {}) {
  let panel = panels.get(id);
  if (panel && panel.ended) {  // the same id again (a new stream reusing a name): start over
    removePanel(panel);
    panel = null;
  }
  if (!panel) {
    const listed = running.get(id);
    panel = new StreamPanel(id, { source: source || (listed && listed.source) || '', camera: media,
      onStop: stopStream, onClose: closePanel });
    panels.set(id, panel);
    ui.panels.insertBefore(panel.el, ui.empty);  // in the order they were opened
    panel.mount();
    const st = streamState(id);
    if (st.source) panel.setSourceInfo(st.source);
    syncEmpty();
  }
  return panel;
}

function removePanel(panel) {
  panels.delete(panel.id);
  panel.destroy();
  syncEmpty();
  renderStreams();
}

function stopStream(panel) {
  const isCamera = camera.streamId === panel.id;
  if (send({ type: 'stop', stream: panel.id })) panel.markStopping();
  if (isCamera) camera.stop();  // closes the peer connection and releases the camera and microphone
}

function closePanel(panel) {
  if (camera.streamId === panel.id && !panel.ended) {
    stopStream(panel);  // a camera nobody sees would go on streaming: closing its panel stops it
  }
  unwatch(panel);
}

function syncEmpty() {
  ui.empty.hidden = panels.size > 0;
}

// ------------------------------------------------------------------ controls

function updateMedia(msg) {
  vidsent.media = { files: msg.files || [], truncated: !!msg.truncated, rtsp_hosts: msg.rtsp_hosts || [] };
  const previous = ui.mediaSelect.value;
  const files = vidsent.media.files;
  const options = files.map((f) => h('option', { value: f.path }, `${f.path}${f.size ? `  (${bytes(f.size)})` : ''}`));
  if (!files.length) options.push(h('option', { value: '', disabled: true }, 'no media files on the server'));
  if (msg.truncated) options.push(h('option', { value: '', disabled: true }, '… more files not listed'));
  ui.mediaSelect.replaceChildren(...options);
  if (previous && files.some((f) => f.path === previous)) ui.mediaSelect.value = previous;
  const hosts = vidsent.media.rtsp_hosts;
  ui.rtspHint.textContent = hosts.length ? `allowed: ${hosts.join(', ')}` : 'no RTSP host is allowed on this server';
  ui.rtspHint.dataset.hosts = String(hosts.length);
  ui.rtspHosts.replaceChildren(...hosts.map((host) => h('option', { value: `rtsp://${host}/` })));
  if (hosts.length && !ui.rtspUrl.value) ui.rtspUrl.placeholder = `rtsp://${hosts[0]}/…`;
  syncControls();
}

function syncControls() {
  const online = vidsent.connection === 'connected';
  ui.startFile.disabled = !online || !ui.mediaSelect.value;
  ui.startRtsp.disabled = !online || !ui.rtspUrl.value.trim();
  ui.startCamera.disabled = !online || camera.active;
  ui.startCamera.dataset.state = camera.state;
  ui.startCamera.textContent = {
    requesting: 'Camera: asking…', offering: 'Camera: connecting…', live: 'Camera: live',
  }[camera.state] || 'Start camera';
  vidsent.camera = { state: camera.state, stream: camera.streamId };
}

ui.mediaSelect.addEventListener('change', syncControls);
ui.rtspUrl.addEventListener('input', syncControls);

ui.startFile.addEventListener('click', () => {
  const source = ui.mediaSelect.value;
  if (!source) {
    showError('bad_request', 'pick a media file first');
    return;
  }
  send({ type: 'start', source, realtime: true });
});

function startRtsp() {
  const url = ui.rtspUrl.value.trim();
  if (!/^rtsps?:\/\//i.test(url)) {
    showError('bad_request', 'an RTSP address starts with rtsp://');
    return;
  }
  send({ type: 'start', source: url, realtime: true });
}
ui.startRtsp.addEventListener('click', startRtsp);
ui.rtspUrl.addEventListener('keydown', (event) => {
  if (event.key === 'Enter') {
    event.preventDefault();
    if (!ui.startRtsp.disabled) startRtsp();
  }
});

const camera = new Camera({
  send: (request) => connection.send(request),
  onError: (code, message, stream) => showError(code, message, stream),
  onChange: () => syncControls(),
});

ui.startCamera.addEventListener('click', () => {
  if (camera.active) return;
  camera.start(vidsent.iceServers);
});

// ------------------------------------------------------------------ lifetime

setInterval(() => { if (connection.open) connection.send({ type: 'list' }); }, LIST_EVERY_MS);

window.addEventListener('pagehide', () => {
  camera.stop();  // the server sees the peer leave instead of waiting for its media to time out
  connection.close();
});
window.addEventListener('pageshow', (event) => {
  if (event.persisted) connection.start();  // back from the back/forward cache
});

window.addEventListener('error', (event) => {
  if (event.message) showError('page_error', event.message);
});
window.addEventListener('unhandledrejection', (event) => {
  const reason = event.reason;
  showError('page_error', (reason && (reason.message || String(reason))) || 'unhandled promise rejection');
});

syncControls();
syncErrors();
syncEmpty();
renderStreams();
connection.start();
