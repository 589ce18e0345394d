// A stream's transcript: committed phrases, each coloured by the label of the window around it, then the current
// unconfirmed guess.

import { h, isNum, seconds } from './util.js';

export const MAX_PHRASES = 200;   // committed transcript phrases kept
const MAX_WINDOWS_FOR_PHRASES = 60;  // recent windows kept to colour phrases that arrive after their window

export class Transcript {
  constructor() {
    this.windows = [];  // recent {t_start, t_end, label, score, index}
    this.phrases = [];  // committed {mid, el, dist}
    this.pendingEl = h('span', { class: 'pending' });
    this.el = h('div', { class: 'transcript', dataset: { empty: 'true' }, 'aria-label': 'transcript',
      'aria-live': 'off', tabindex: '0' }, this.pendingEl);
  }

  /** A `transcript` message: committed text (final) or the guess that replaces the last one. */
  add(t) {
    const stick = this._atBottom();
    if (!t.final) {
      this.pendingEl.textContent = t.text || '';
      this.el.dataset.empty = String(!this.phrases.length && !t.text);
      if (stick) this._scrollToEnd();
      return;
    }
    const text = (t.text || '').trim();
    this.pendingEl.textContent = '';
    if (!text) return;
    const el = h('span', { class: 'committed', title: `${seconds(t.t_start)}–${seconds(t.t_end)}` }, `${text} `);
    this.el.insertBefore(el, this.pendingEl);
    const phrase = { mid: (t.t_start + t.t_end) / 2, t_start: t.t_start, t_end: t.t_end, el, dist: Infinity };
    if (!isNum(phrase.mid)) phrase.mid = t.t_start;
    this.phrases.push(phrase);
    while (this.phrases.length > MAX_PHRASES) this.phrases.shift().el.remove();
    for (let i = this.windows.length - 1; i >= 0; i -= 1) this._match(phrase, this.windows[i]);
    this.el.dataset.empty = 'false';
    if (stick) this._scrollToEnd();
  }

  /** A window's verdict ({index, t_start, t_end, label, score}): colours the committed phrases inside it. */
  addWindow(entry) {
    this.windows.push(entry);
    if (this.windows.length > MAX_WINDOWS_FOR_PHRASES) this.windows.shift();
    if (!entry.label) return;
    for (let i = this.phrases.length - 1; i >= 0; i -= 1) {
      const p = this.phrases[i];
      if (p.mid < entry.t_start - 30) break;
      this._match(p, entry);
    }
  }

  /** Colours a phrase by the window that contains its middle, preferring the window centred nearest to it. */
  _match(phrase, w) {
    if (!w.label || !(phrase.mid >= w.t_start && phrase.mid < w.t_end)) return;
    const dist = Math.abs(phrase.mid - (w.t_start + w.t_end) / 2);
    if (dist >= phrase.dist) return;
    phrase.dist = dist;
    phrase.el.dataset.label = w.label;
    phrase.el.dataset.window = String(w.index);
    phrase.el.title = `${seconds(phrase.t_start)}–${seconds(phrase.t_end)} · window #${w.index}: ${w.label}` +
      (isNum(w.score) ? ` (${w.score.toFixed(2)})` : '');
  }

  _atBottom() {
    const el = this.el;
    return el.scrollHeight - el.scrollTop - el.clientHeight < 24;
  }

  _scrollToEnd() {
    this.el.scrollTop = this.el.scrollHeight;
  }
}
