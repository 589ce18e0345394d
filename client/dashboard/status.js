// A panel's footer: the stream's state, media time, lag, dropped frames, latency, source, spoken language and
// progress.

import { languageCode, languageName } from './language.js';
import { clamp, h, isNum, pct, seconds } from './util.js';
import { kv } from './widgets.js';

export class StatusBar {
  constructor() {
    this.sourceInfo = null;
    this.el = h('footer', { class: 'status', dataset: { state: 'starting' } },
      this.stateEl = h('span', { class: 'state-pill' }, 'starting'),
      this.mediaKv = kv('media'),
      this.lagKv = kv('lag'),
      this.droppedKv = kv('dropped frames'),
      this.latencyKv = kv('latency'),
      this.sourceInfoEl = h('span', { class: 'source-info' }, ''),
      this.languageEl = h('span', { class: 'language-note', dataset: { language: '' } }, ''),
      this.detailEl = h('span', { class: 'detail' }, ''),
      this.progress = h('span', { class: 'progress', 'aria-hidden': 'true' }, h('span', { class: 'fill' })));
  }

  /** A `status` message (its `source`, when it has one, given to setSource first). */
  update(s) {
    this.el.dataset.state = s.state || '';
    this.stateEl.textContent = s.state || '—';
    this.mediaKv.value.textContent = seconds(s.media_time);
    this.lagKv.value.textContent = isNum(s.lag_s) ? `${s.lag_s.toFixed(1)} s` : '—';
    this.droppedKv.value.textContent = isNum(s.dropped_frames) ? String(s.dropped_frames) : '—';
    this.detailEl.textContent = s.detail || '';
    if (Object.hasOwn(s, 'language')) this.setLanguage(s.language);
    const duration = this.sourceInfo && this.sourceInfo.duration;
    const fill = this.progress.firstChild;
    if (isNum(duration) && duration > 0 && isNum(s.media_time)) {
      this.progress.hidden = false;
      fill.style.width = `${clamp(s.media_time / duration) * 100}%`;
    } else {
      this.progress.hidden = true;
    }
  }

  /** The source's description (status `source`): size, frame rate, duration and tracks. */
  setSource(src) {
    this.sourceInfo = src;
    const parts = [];
    if (src.width && src.height) parts.push(`${src.width}×${src.height}`);
    if (isNum(src.fps) && src.fps > 0) parts.push(`${+src.fps.toFixed(1)} fps`);
    if (isNum(src.duration) && src.duration > 0) parts.push(seconds(src.duration));
    const tracks = [src.has_audio && 'audio', src.has_video && 'video'].filter(Boolean);
    parts.push(tracks.length ? tracks.join(' + ') : 'no tracks');
    this.sourceInfoEl.textContent = parts.join(' · ');
  }

  /** The stream's current language (status `language`: {language, p, since, previous} or null), as a note:
   * "language: Spanish since 12.4 s (was English)"; nothing while no language is identified. */
  setLanguage(info) {
    const known = info && typeof info === 'object';
    const code = known ? languageCode(info.language) : null;
    const outside = known && info.outside && typeof info.outside === 'object' ? info.outside : null;
    const heard = outside ? languageCode(outside.language) : null;
    const parts = [];
    if (code) {
      const since = isNum(info.since) ? ` since ${seconds(info.since)}` : '';
      const previous = languageCode(info.previous);
      parts.push(`language: ${languageName(code)}${since}${previous ? ` (was ${languageName(previous)})` : ''}`);
    }
    // speech in a language the stream does not allow: its words are not transcribed
    if (heard) {
      parts.push(`hearing ${languageName(heard)}${isNum(outside.p) ? ` (${pct(outside.p)})` : ''}, not an allowed ` +
        'language: not transcribed');
    }
    this.languageEl.dataset.language = code || '';
    this.languageEl.dataset.outside = heard || '';
    this.languageEl.textContent = parts.join(' · ');
  }

  setLatency(latency) {
    this.latencyKv.value.textContent = isNum(latency) ? `${latency.toFixed(2)} s` : '—';
  }

  markEnded(reason) {
    this.el.dataset.state = 'ended';
    this.stateEl.textContent = `ended · ${reason}`;
  }
}
