// One watched stream: its header, the rolling verdict and the modalities, composed with the timeline chart, the
// evidence, the people, the transcript, the alerts, the status footer and, at the end, the summary.

import { AlertList } from './alerts.js';
import { TimelineChart } from './chart.js';
import { Evidence } from './evidence.js';
import { languageCode, languageLong, languageName, languageShort } from './language.js';
import { People } from './people.js';
import { labelOf } from './scale.js';
import { StatusBar } from './status.js';
import { lostView, summaryView } from './summary.js';
import { Transcript } from './transcript.js';
import { h, isNum, num, pct, seconds } from './util.js';
import { COLORS, MODALITIES, MODALITY_NAMES, divergingBar, kv, showGrade } from './widgets.js';

export class StreamPanel {
  /**
   * @param {string} id
   * @param {{source?: string, camera?: MediaStream|null, onStop: (p: StreamPanel) => void,
   *          onClose: (p: StreamPanel) => void}} options
   */
  constructor(id, { source = '', camera = null, onStop, onClose }) {
    this.id = id;
    this.onStop = onStop;
    this.onClose = onClose;
    this.isCamera = !!camera;
    this.ended = false;
    this.lastIndex = -1;
    this.languageFromStatus = false;  // once a status carried `language`, the badge follows the statuses alone
    this.chart = new TimelineChart();
    this.evidence = new Evidence();
    this.people = new People({ onBindings: () => this.transcript.renameSpeakers() });
    this.transcript = new Transcript({ speakerName: (speaker) => this.people.faceOfSpeaker(speaker) });
    this.alerts = new AlertList({ personName: (id) => this.people.nameOfId(id) });
    this.status = new StatusBar();
    this._build(source, camera);
  }

  _build(source, camera) {
    const title = h('div', { class: 'panel-title' },
      h('span', { class: 'stream-id', title: 'stream id' }, this.id),
      this.kindEl = h('span', { class: 'source-kind' }, camera ? 'camera' : ''),
      this.langBadge = h('span', { class: 'lang-badge', dataset: { language: '' }, role: 'status',
        'aria-live': 'polite', hidden: true }),
      this.sourceEl = h('span', { class: 'source-name', title: source }, source));
    this.stopBtn = h('button', { type: 'button', class: 'stop', 'aria-label': `Stop stream ${this.id}`,
      onclick: () => this.onStop(this) }, 'Stop');
    this.closeBtn = h('button', { type: 'button', class: 'close-panel', 'aria-label': `Close the panel of ${this.id}`,
      title: 'Close panel', onclick: () => this.onClose(this) }, '\u00d7');
    const head = h('header', { class: 'panel-head' }, title, h('div', { class: 'panel-actions' }, this.stopBtn,
      this.closeBtn));

    this.badge = h('div', { class: 'badge', dataset: { graded: '' }, role: 'status', 'aria-live': 'polite',
      title: 'rolling verdict (exponentially weighted over recent windows)' },
    h('span', { class: 'badge-caption' }, 'rolling'),
    this.gradeEl = h('span', { class: 'grade' }, 'waiting…'),
    this.scoreEl = h('span', { class: 'score' }, '—'));
    this.fusedKv = kv('this window');
    this.windowKv = kv('window');
    this.methodKv = kv('fusion');
    this.doubtsEl = h('p', { class: 'doubts', hidden: true, 'aria-label': 'why this window is uncertain' }, '');
    const verdictMeta = h('div', { class: 'verdict-meta' }, this.fusedKv, this.windowKv, this.methodKv,
      this.doubtsEl);
    const verdict = h('div', { class: 'verdict' }, this.badge, verdictMeta);
    const top = h('div', { class: 'panel-top' }, verdict);
    if (camera) {
      this.preview = h('video', { class: 'preview', autoplay: true, muted: true, playsinline: true,
        'aria-label': 'local camera preview' });
      this.preview.muted = true;
      this.preview.srcObject = camera;
      top.append(this.preview);
    }

    this.modalityRows = {};
    const rows = MODALITIES.map((m) => {
      const bar = divergingBar();
      const row = h('div', { class: 'modality', dataset: { modality: m } },
        h('span', { class: 'm-name' }, h('i', { class: 'swatch', style: { background: COLORS[m] } }),
          MODALITY_NAMES[m]),
        bar,
        h('span', { class: 'm-score' }, '—'),
        h('span', { class: 'm-label' }, 'waiting…'),
        h('span', { class: 'm-conf', title: 'confidence' }, ''));
      row.bar = bar;
      this.modalityRows[m] = row;
      return row;
    });
    const modalities = h('section', { class: 'modalities', 'aria-label': 'modalities' }, rows);

    this.summarySlot = h('div', { class: 'summary-slot' });
    const body = h('div', { class: 'panel-body' },
      top, this.alerts.el, this.summarySlot, this.chart.el,
      h('div', { class: 'panel-columns' }, modalities, this.evidence.el),
      this.people.el,
      h('h3', { class: 'section-title' }, 'Transcript'),
      this.transcript.el);

    this.el = h('article', { class: 'stream-panel', dataset: { stream: this.id, series: '5', ended: 'false',
      kind: camera ? 'webrtc' : '' }, 'aria-label': `stream ${this.id}` }, head, body, this.status.el);
  }

  /** Call once the element is in the document (uPlot measures its container). */
  mount() {
    this.el.dataset.series = String(this.chart.mount());
  }

  destroy() {
    this.chart.destroy();
    if (this.preview) this.preview.srcObject = null;
    this.el.remove();
  }

  /** The server's scale changed (a hello after a reconnect): the chart's bands follow. */
  rescale() {
    this.chart.rescale();
  }

  setSource(text) {
    if (!text || this.sourceEl.textContent) return;
    this.sourceEl.textContent = text;
    this.sourceEl.title = text;
  }

  onWindow(w) {
    if (!isNum(w.index) || w.index <= this.lastIndex) return;  // seen already (a re-subscribe after reconnecting)
    this.lastIndex = w.index;
    const mods = w.modalities || {};
    const fused = w.fused || {};
    const rolling = w.rolling || {};

    this.chart.push(w);
    if (!this.languageFromStatus && languageCode(w.language)) {
      this._language({ language: w.language, p: w.language_p, since: null, previous: null });
    }

    // badge: the rolling verdict; an uncertain one (in the middle, or its windows' modalities pulling apart) says
    // so instead of showing a confident grade
    showGrade(this.badge, rolling);
    const certainty = isNum(rolling.certainty) ? ` · certainty ${num(rolling.certainty)}` : '';
    this.badge.title = `rolling verdict (exponentially weighted over recent windows)${certainty}`;
    const doubt = fused.uncertain && (fused.doubts || []).length ? ` · uncertain: ${fused.doubts.join('; ')}` : '';
    this.fusedKv.value.textContent = isNum(fused.score) ? `${num(fused.score)} ${fused.graded || ''}`.trim() : '—';
    this.fusedKv.value.title = isNum(fused.certainty) ? `certainty ${num(fused.certainty)}, disagreement ` +
      `${num(fused.disagreement)}${doubt}` : '';
    this.fusedKv.value.dataset.graded = fused.uncertain ? '' : (fused.graded || '');
    this.fusedKv.value.dataset.uncertain = fused.uncertain ? 'true' : 'false';
    const doubts = fused.uncertain ? (fused.doubts || []) : [];
    this.doubtsEl.hidden = !doubts.length;
    this.doubtsEl.textContent = doubts.length ? `uncertain: ${doubts.join('; ')}` : '';
    this.windowKv.value.textContent = `#${w.index} · ${seconds(w.t_start)}–${seconds(w.t_end)}`;
    const missing = (fused.missing || []).length ? ` (missing ${fused.missing.join(', ')})` : '';
    this.methodKv.value.textContent = `${fused.method || '—'}${missing}`;

    for (const m of MODALITIES) this._modality(m, mods[m]);
    this.evidence.update(mods, w.language);
    this.people.update(w);
    this.status.setLatency(w.latency_s);
    this.transcript.addWindow({ index: w.index, t_start: w.t_start, t_end: w.t_end,
      label: fused.label || labelOf(fused.score), score: fused.score });
  }

  _modality(m, info) {
    const row = this.modalityRows[m];
    const [scoreEl, labelEl, confEl] = [row.querySelector('.m-score'), row.querySelector('.m-label'),
      row.querySelector('.m-conf')];
    if (!info || !info.available) {
      row.dataset.available = 'false';
      row.dataset.label = '';
      row.bar.set(null);
      scoreEl.textContent = '—';
      labelEl.textContent = `missing: ${(info && info.reason) || 'unknown'}`;
      confEl.textContent = '';
      return;
    }
    row.dataset.available = 'true';
    row.dataset.label = info.label || '';
    row.bar.set(info.score);
    scoreEl.textContent = num(info.score);
    labelEl.textContent = info.label || '—';
    confEl.textContent = isNum(info.confidence) ? `conf ${pct(info.confidence)}` : '';
    // the input's quality, when the scorer assessed it: what lowered it beside the confidence, its features on hover
    const quality = info.quality;
    row.dataset.poor = quality && quality.value < 0.5 ? 'true' : 'false';
    if (quality && (quality.notes || []).length) confEl.textContent += ` · ${quality.notes.join(', ')}`;
    confEl.title = quality ? `confidence; input quality ${num(quality.value)}` +
      Object.entries(quality.features || {}).map(([k, v]) => `\n${k}: ${num(v)}`).join('') : 'confidence';
  }

  onTranscript(t) {
    this.transcript.add(t);
    this.people.heard(t);
  }

  onStatus(s) {
    if (this.ended) return;
    if (s.source) this.setSourceInfo(s.source);
    this.status.update(s);
    if (Object.hasOwn(s, 'language')) {
      this.languageFromStatus = true;
      this._language(s.language);
    }
  }

  /** The current spoken language ({language, p, since, previous} or null: none identified) in the badge. */
  _language(info) {
    const code = info && typeof info === 'object' ? languageCode(info.language) : null;
    const badge = this.langBadge;
    badge.hidden = !code;
    badge.dataset.language = code || '';
    this.el.dataset.language = code || '';
    if (!code) {
      badge.textContent = '';
      badge.removeAttribute('title');
      return;
    }
    badge.textContent = languageShort(code, info.p);
    const since = isNum(info.since) ? ` since ${seconds(info.since)}` : '';
    const previous = languageCode(info.previous);
    badge.title = `spoken language: ${languageLong(code, info.p)}${since}` +
      (previous ? ` (before: ${languageName(previous)})` : '');
  }

  setSourceInfo(src) {
    this.el.dataset.kind = src.kind || '';
    this.kindEl.textContent = src.kind === 'webrtc' ? 'camera' : src.kind || '';
    if (src.name) {
      this.sourceEl.textContent = src.name;
      this.sourceEl.title = src.name;
    }
    this.status.setSource(src);
  }

  /** An alert rule raised or cleared; the panel is marked while any is raised. */
  onAlert(a) {
    this.alerts.update(a);
    this.el.dataset.alerting = String(this.alerts.raised);
  }

  /** The stream is over: show its summary and disable stop. */
  onEnd(summary = {}) {
    this._markEnded(summary.reason || 'ended');
    this.summarySlot.replaceChildren(summaryView(summary));
  }

  /** After a reconnect the stream was gone: it ended while this page was away. */
  markLost() {
    if (this.ended) return;
    this._markEnded('lost');
    this.el.dataset.lost = 'true';
    this.summarySlot.replaceChildren(lostView());
  }

  _markEnded(reason) {
    this.ended = true;
    this.el.dataset.ended = 'true';
    this.stopBtn.disabled = true;
    this.stopBtn.textContent = 'Ended';
    this.status.markEnded(reason);
    if (this.preview) this.preview.dataset.ended = 'true';
  }

  /** While the stop request is on its way. */
  markStopping() {
    this.stopBtn.disabled = true;
    this.stopBtn.textContent = 'Stopping…';
  }
}
