// The websocket to the vidsent server: JSON in and out, reconnecting by itself with exponential backoff
// (0.5 s doubling to 10 s) whenever the server goes away.

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 10000;

export class Connection {
  /**
   * @param {string} url  ws:// or wss:// URL
   * @param {{onMessage: (msg: object) => void, onState: (state: string, info: object) => void,
   *          onError: (code: string, message: string) => void}} handlers
   */
  constructor(url, { onMessage, onState, onError }) {
    this.url = url;
    this.onMessage = onMessage;
    this.onState = onState;
    this.onError = onError;
    this.ws = null;
    this.delay = FIRST_DELAY_MS;
    this.attempt = 0;
    this.everOpened = false;
    this.timer = null;
    this.closed = false;
    this.state = 'connecting';
  }

  get open() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  start() {
    this.closed = false;
    this._open();
  }

  /** Stops for good (the page is going away). */
  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      try { ws.close(1000, 'page closed'); } catch { /* already closing */ }
    }
  }

  /** Sends one request; false when the socket is not open (the caller tells the user). */
  send(request) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(request));
    return true;
  }

  _setState(state, info = {}) {
    this.state = state;
    this.onState(state, { attempt: this.attempt, ...info });
  }

  _open() {
    clearTimeout(this.timer);
    this.attempt += 1;
    this._setState(this.everOpened || this.attempt > 1 ? 'reconnecting' : 'connecting');
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (exc) {
      this.onError('connection', `cannot open ${this.url}: ${exc.message || exc}`);
      this._retry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.everOpened = true;
      this.delay = FIRST_DELAY_MS;
      this.attempt = 0;
      this._setState('connected');
    };
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        this.onError('bad_message', `the server sent something that is not JSON: ${String(event.data).slice(0, 80)}`);
        return;
      }
      if (!message || typeof message.type !== 'string') {
        this.onError('bad_message', `the server sent a message without a type: ${String(event.data).slice(0, 80)}`);
        return;
      }
      this.onMessage(message);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.closed) return;
      if (event.code === 1013) {
        this.onError('too_slow', 'the server dropped this page because it fell behind; reconnecting');
      }
      this._retry(event.code);
    };
    ws.onerror = () => { /* a close event follows; the retry happens there */ };
  }

  _retry(code) {
    if (this.closed) return;
    const wait = this.delay;
    this.delay = Math.min(this.delay * 2, MAX_DELAY_MS);
    this._setState('reconnecting', { waitMs: wait, retryAt: Date.now() + wait, code });
    this.timer = setTimeout(() => this._open(), wait);
  }
}
