// A stream's transcript: committed phrases, each coloured by the label of the window around it, then the current
// unconfirmed guess. Each phrase carries its spoken language (lang, dir and a small tag); consecutive phrases of one
// language share a block (a "run"), so a right-to-left language is laid out right to left and right-aligned.

import { directionOf, languageCode, languageLong, languageTag } from './language.js';
import { h, isNum, seconds } from './util.js';

export const MAX_PHRASES = 200;   // committed transcript phrases kept
const MAX_WINDOWS_FOR_PHRASES = 60;  // recent windows kept to colour phrases that arrive after their window

export class Transcript {
  /** @param {{speakerName?: (speaker: number) => string|null}} options speakerName: the name of the face a voice is
   * bound to ("person 3"), null while it is bound to none (the tag then says "speaker N+1") */
  constructor({ speakerName = () => null } = {}) {
    this.speakerName = speakerName;
    this.windows = [];  // recent {t_start, t_end, label, score, index}
    this.phrases = [];  // committed {mid, el, run, dist, about}
    this.pendingEl = h('span', { class: 'pending' });
    this.el = h('div', { class: 'transcript', dataset: { empty: 'true' }, 'aria-label': 'transcript',
      'aria-live': 'off', tabindex: '0' }, this.pendingEl);
  }

  /** A `transcript` message: committed text (final) or the guess that replaces the last one. */
  add(t) {
    const stick = this._atBottom();
    const language = languageCode(t.language);
    if (!t.final) {
      this.pendingEl.textContent = t.text || '';
      this._placePending(language);
      this.el.dataset.empty = String(!this.phrases.length && !t.text);
      if (stick) this._scrollToEnd();
      return;
    }
    const text = (t.text || '').trim();
    this.pendingEl.textContent = '';
    if (!text) return;
    const about = language ? ` · ${languageLong(language, t.language_p)}` : '';
    // who said it: a tag where the speaker changes (ids from the stream's voices; none while a voice is unknown)
    const speaker = Number.isInteger(t.speaker) ? t.speaker : null;
    const newSpeaker = speaker !== null && speaker !== this.lastSpeaker;
    if (speaker !== null) this.lastSpeaker = speaker;
    const el = h('span', { class: 'committed', lang: language || '', dir: directionOf(language),
      dataset: { language: language || '', speaker: speaker === null ? '' : String(speaker) } },
    newSpeaker ? h('span', { class: 'speaker-tag' }, `${this._who(speaker)}:`) : null,
    languageTag(language, t.language_p), h('span', { class: 'phrase-text' }, text), ' ');
    const run = this._runFor(language);
    run.insertBefore(el, this.pendingEl.parentNode === run ? this.pendingEl : null);
    const phrase = { mid: (t.t_start + t.t_end) / 2, t_start: t.t_start, t_end: t.t_end, el, run, dist: Infinity,
      about, speaker, window: null };
    if (!isNum(phrase.mid)) phrase.mid = t.t_start;
    this._title(phrase);
    this.phrases.push(phrase);
    while (this.phrases.length > MAX_PHRASES) this._drop(this.phrases.shift());
    for (let i = this.windows.length - 1; i >= 0; i -= 1) this._match(phrase, this.windows[i]);
    this._placePending(language);
    this.el.dataset.empty = 'false';
    if (stick) this._scrollToEnd();
  }

  /** The voices' names changed (a voice was bound to a face): the speaker tags and titles follow. */
  renameSpeakers() {
    for (const phrase of this.phrases) {
      if (phrase.speaker === null) continue;
      const tag = phrase.el.querySelector(':scope > .speaker-tag');
      if (tag) tag.textContent = `${this._who(phrase.speaker)}:`;
      this._title(phrase);
    }
  }

  /** A voice's name in the transcript: its face's ("person 3") once bound to one, else "speaker N+1". */
  _who(speaker) {
    return this.speakerName(speaker) || `speaker ${speaker + 1}`;
  }

  _title(phrase) {
    const w = phrase.window;
    phrase.el.title = `${seconds(phrase.t_start)}–${seconds(phrase.t_end)}${phrase.about}` +
      (phrase.speaker === null ? '' : ` · ${this._who(phrase.speaker)}`) +
      (w ? ` · window #${w.index}: ${w.label}${isNum(w.score) ? ` (${w.score.toFixed(2)})` : ''}` : '');
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

  /** The last run when a phrase in `language` continues it (a phrase of no known language continues any run),
   * else a new run in that language. */
  _runFor(language) {
    const last = this._lastRun();
    if (last && (!language || last.dataset.language === language)) return last;
    const run = h('div', { class: 't-run', dir: directionOf(language), lang: language || undefined,
      dataset: { language: language || '' } });
    this.el.insertBefore(run, this.pendingEl.parentNode === this.el ? this.pendingEl : null);
    return run;
  }

  _lastRun() {
    const runs = this.el.querySelectorAll(':scope > .t-run');
    return runs.length ? runs[runs.length - 1] : null;
  }

  /** The unconfirmed guess follows the last run when it is in that run's language (or in none known), else it
   * stands on its own line in its own language and direction. */
  _placePending(language) {
    const last = this._lastRun();
    const pending = this.pendingEl;
    if (last && (!language || last.dataset.language === language)) {
      pending.removeAttribute('lang');
      pending.removeAttribute('dir');
      if (pending.parentNode !== last) last.append(pending);
    } else {
      if (language) pending.setAttribute('lang', language);
      else pending.removeAttribute('lang');
      pending.setAttribute('dir', directionOf(language));
      if (pending.parentNode !== this.el || pending.nextSibling) this.el.append(pending);
    }
    pending.dataset.language = language || '';
  }

  _drop(phrase) {
    phrase.el.remove();
    const { run } = phrase;
    if (!run.querySelector('.committed') && this.pendingEl.parentNode !== run) run.remove();
  }

  /** Colours a phrase by the window that contains its middle, preferring the window centred nearest to it. */
  _match(phrase, w) {
    if (!w.label || !(phrase.mid >= w.t_start && phrase.mid < w.t_end)) return;
    const dist = Math.abs(phrase.mid - (w.t_start + w.t_end) / 2);
    if (dist >= phrase.dist) return;
    phrase.dist = dist;
    phrase.el.dataset.label = w.label;
    phrase.el.dataset.window = String(w.index);
    phrase.window = w;
    this._title(phrase);
  }

  _atBottom() {
    const el = this.el;
    return el.scrollHeight - el.scrollTop - el.clientHeight < 24;
  }

  _scrollToEnd() {
    this.el.scrollTop = this.el.scrollHeight;
  }
}
