// One watched stream: verdict badge, uPlot chart, modalities, evidence, transcript, status and, at the end, a summary.

import uPlot from '/dashboard/vendor/uplot/uPlot.esm.js';
import { clamp, h, isNum, num, pct, seconds, signed, tick } from './util.js';

export const MAX_POINTS = 300;    // windows kept on the chart
export const MAX_PHRASES = 200;   // committed transcript phrases kept
const MAX_ALERTS = 20;            // alert episodes listed
const MAX_WINDOWS_FOR_PHRASES = 60;  // recent windows kept to colour phrases that arrive after their window
const CHART_HEIGHT = 200;

export const MODALITIES = ['text', 'audio', 'visual'];
const MODALITY_NAMES = { text: 'Text', audio: 'Audio', visual: 'Visual' };
export const COLORS = {
  rolling: '#f1f5f9',
  fused: '#a5b4fc',
  text: '#38bdf8',
  audio: '#f472b6',
  visual: '#34d399',
};
const EMOTIONS = ['happy', 'surprise', 'neutral', 'sad', 'fear', 'angry', 'disgust'];
// The graded scale for the score-based fusion methods (README): ≥0.5 Positive, ≥0.35 Slight, ≥0.2 Negative.
const BANDS = [
  [0.5, 1, 'rgba(34,197,94,0.07)'],
  [0.35, 0.5, 'rgba(251,191,36,0.07)'],
  [0.2, 0.35, 'rgba(249,115,22,0.08)'],
  [0, 0.2, 'rgba(239,68,68,0.09)'],
];

function labelOf(score) {
  if (!isNum(score)) return null;
  return score >= 0.6 ? 'positive' : score <= 0.4 ? 'negative' : 'neutral';
}

/** A bar that grows from the middle (0.5) towards the score: left of centre is negative, right positive. */
function divergingBar(cls = '') {
  const fill = h('span', { class: 'fill' });
  const bar = h('span', { class: `diverging ${cls}`.trim(), 'aria-hidden': 'true' }, fill, h('span', { class: 'mid' }));
  bar.set = (value, lo = 0, hi = 1) => {
    if (!isNum(value)) {
      fill.style.width = '0';
      bar.dataset.sign = '';
      return;
    }
    const mid = (lo + hi) / 2;
    const at = clamp((value - lo) / (hi - lo));
    const m = (mid - lo) / (hi - lo);
    fill.style.left = `${Math.min(at, m) * 100}%`;
    fill.style.width = `${Math.abs(at - m) * 100}%`;
    bar.dataset.sign = value > mid ? 'pos' : value < mid ? 'neg' : '';
  };
  return bar;
}

/** A plain 0..1 meter. */
function meter(cls = '') {
  const fill = h('span', { class: 'fill' });
  const bar = h('span', { class: `meter ${cls}`.trim(), 'aria-hidden': 'true' }, fill);
  bar.set = (value) => { fill.style.width = `${isNum(value) ? clamp(value) * 100 : 0}%`; };
  return bar;
}

function kv(label, cls) {
  const value = h('span', { class: `v ${cls || ''}`.trim() }, '—');
  const row = h('span', { class: 'kv' }, h('span', { class: 'k' }, label), ' ', value);
  row.value = value;
  return row;
}

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
    this.data = { x: [], rolling: [], fused: [], text: [], audio: [], visual: [] };
    this.windows = [];  // recent {t_start, t_end, label, score, index}
    this.phrases = [];  // committed {mid, el, dist}
    this.plot = null;
    this._build(source, camera);
  }

  // ---------------------------------------------------------------- DOM

  _build(source, camera) {
    const title = h('div', { class: 'panel-title' },
      h('span', { class: 'stream-id', title: 'stream id' }, this.id),
      this.kindEl = h('span', { class: 'source-kind' }, camera ? 'camera' : ''),
      this.sourceEl = h('span', { class: 'source-name', title: source }, source));
    this.stopBtn = h('button', { type: 'button', class: 'stop', 'aria-label': `Stop stream ${this.id}`,
      onclick: () => this.onStop(this) }, 'Stop');
    this.closeBtn = h('button', { type: 'button', class: 'close-panel', 'aria-label': `Close the panel of ${this.id}`,
      title: 'Close panel', onclick: () => this.onClose(this) }, '\u00d7');
    const head = h('header', { class: 'panel-head' }, title, h('div', { class: 'panel-actions' }, this.stopBtn,
      this.closeBtn));

    // verdict
    this.badge = h('div', { class: 'badge', dataset: { graded: '' }, role: 'status', 'aria-live': 'polite',
      title: 'rolling verdict (exponentially weighted over recent windows)' },
    h('span', { class: 'badge-caption' }, 'rolling'),
    this.gradeEl = h('span', { class: 'grade' }, 'waiting…'),
    this.scoreEl = h('span', { class: 'score' }, '—'));
    this.fusedKv = kv('this window');
    this.windowKv = kv('window');
    this.methodKv = kv('fusion');
    const verdictMeta = h('div', { class: 'verdict-meta' }, this.fusedKv, this.windowKv, this.methodKv);
    const verdict = h('div', { class: 'verdict' }, this.badge, verdictMeta);
    const top = h('div', { class: 'panel-top' }, verdict);
    if (camera) {
      this.preview = h('video', { class: 'preview', autoplay: true, muted: true, playsinline: true,
        'aria-label': 'local camera preview' });
      this.preview.muted = true;
      this.preview.srcObject = camera;
      top.append(this.preview);
    }

    // chart
    this.chartEl = h('div', { class: 'chart', dataset: { points: '0' }, role: 'img',
      'aria-label': 'sentiment over media time: rolling, fused and per-modality scores' });

    // modalities
    this.modalityRows = {};
    const rows = MODALITIES.map((m) => {
      const bar = divergingBar();
      const row = h('div', { class: 'modality', dataset: { modality: m } },
        h('span', { class: 'm-name' }, h('i', { class: 'swatch', style: { background: COLORS[m] } }), MODALITY_NAMES[m]),
        bar,
        h('span', { class: 'm-score' }, '—'),
        h('span', { class: 'm-label' }, 'waiting…'),
        h('span', { class: 'm-conf', title: 'confidence' }, ''));
      row.bar = bar;
      this.modalityRows[m] = row;
      return row;
    });
    this.modalitiesEl = h('section', { class: 'modalities', 'aria-label': 'modalities' }, rows);

    // evidence
    this.ev = { missing: {} };
    const e = this.ev;
    for (const m of MODALITIES) e.missing[m] = h('span', { class: 'ev-missing' });
    e.vaderBar = divergingBar('vader-bar');
    e.vader = kv('VADER compound');
    e.words = kv('words');
    e.keyWords = h('span', { class: 'key-words', 'aria-label': 'the words that moved the text score most' });
    e.keyWordsKv = kv('moved by');
    e.probs = h('span', { class: 'probs', 'aria-hidden': 'true' },
      e.pNeg = h('span', { class: 'p-neg' }), e.pNeu = h('span', { class: 'p-neu' }), e.pPos = h('span', { class: 'p-pos' }));
    e.probsKv = kv('neg / neu / pos');
    const textCard = h('div', { class: 'ev-card', dataset: { modality: 'text' } },
      h('h4', {}, 'Text'), e.missing.text, h('div', { class: 'ev-line' }, e.vader, e.vaderBar), e.words,
      h('div', { class: 'ev-line wrap' }, e.keyWordsKv, e.keyWords),
      h('div', { class: 'ev-line' }, e.probsKv, e.probs));

    e.activeMeter = meter('db');
    e.rmsMeter = meter('db rms');
    e.active = kv('active');
    e.rms = kv('rms');
    e.voicedMeter = meter('voiced');
    e.voiced = kv('voiced');
    e.heard = h('span', { class: 'heard', 'aria-hidden': 'true' },
      e.hSpeech = h('span', { class: 'h-speech' }), e.hOther = h('span', { class: 'h-other' }),
      e.hSilence = h('span', { class: 'h-silence' }));
    e.heardKv = kv('speech / other / silence');
    e.pitch = kv('pitch');
    e.features = kv('pushed by');
    const audioCard = h('div', { class: 'ev-card', dataset: { modality: 'audio' } },
      h('h4', {}, 'Audio'), e.missing.audio, h('div', { class: 'ev-line' }, e.active, e.activeMeter),
      h('div', { class: 'ev-line' }, e.rms, e.rmsMeter), h('div', { class: 'ev-line' }, e.voiced, e.voicedMeter),
      h('div', { class: 'ev-line' }, e.heardKv, e.heard), e.pitch, e.features);

    e.faces = kv('faces');
    e.top = kv('top');
    e.scene = kv('scene');
    e.share = kv('face share');
    e.peopleKv = kv('people');
    e.people = h('span', { class: 'key-words people', 'aria-label': 'each tracked face: top expression, score' });
    e.strongest = kv('strongest');
    e.emotionRows = {};
    const emotionList = h('div', { class: 'emotions', 'aria-label': 'face emotion distribution' },
      EMOTIONS.map((name) => {
        const bar = meter('emotion');
        const value = h('span', { class: 'e-v' }, '');
        const row = h('div', { class: 'emotion', dataset: { emotion: name } }, h('span', { class: 'e-name' }, name),
          bar, value);
        row.bar = bar;
        row.value = value;
        e.emotionRows[name] = row;
        return row;
      }));
    const visualCard = h('div', { class: 'ev-card', dataset: { modality: 'visual' } },
      h('h4', {}, 'Visual'), e.missing.visual, h('div', { class: 'ev-line wrap' }, e.faces, e.top), emotionList,
      h('div', { class: 'ev-line wrap' }, e.scene, e.share), h('div', { class: 'ev-line wrap' }, e.peopleKv, e.people),
      e.strongest);
    this.evidenceEl = h('section', { class: 'evidence', 'aria-label': 'evidence' }, textCard, audioCard, visualCard);

    // transcript
    this.pendingEl = h('span', { class: 'pending' });
    this.transcriptEl = h('div', { class: 'transcript', dataset: { empty: 'true' }, 'aria-label': 'transcript',
      'aria-live': 'off', tabindex: '0' }, this.pendingEl);

    // status
    this.statusEl = h('footer', { class: 'status', dataset: { state: 'starting' } },
      this.stateEl = h('span', { class: 'state-pill' }, 'starting'),
      this.mediaKv = kv('media'),
      this.lagKv = kv('lag'),
      this.droppedKv = kv('dropped frames'),
      this.latencyKv = kv('latency'),
      this.sourceInfoEl = h('span', { class: 'source-info' }, ''),
      this.detailEl = h('span', { class: 'detail' }, ''),
      this.progress = h('span', { class: 'progress', 'aria-hidden': 'true' }, h('span', { class: 'fill' })));

    this.summarySlot = h('div', { class: 'summary-slot' });
    // alert episodes (the server's --alert rules): one row per episode, raised then cleared
    this.alertRows = new Map();  // `${rule}@${t_start}` → row
    this.alertsEl = h('ul', { class: 'alerts', 'aria-label': 'alerts', 'aria-live': 'assertive', hidden: true });
    const body = h('div', { class: 'panel-body' },
      top, this.alertsEl, this.summarySlot, this.chartEl,
      h('div', { class: 'panel-columns' }, this.modalitiesEl, this.evidenceEl),
      h('h3', { class: 'section-title' }, 'Transcript'),
      this.transcriptEl);

    this.el = h('article', { class: 'stream-panel', dataset: { stream: this.id, series: '5', ended: 'false',
      kind: camera ? 'webrtc' : '' }, 'aria-label': `stream ${this.id}` }, head, body, this.statusEl);
  }

  /** Call once the element is in the document (uPlot measures its container). */
  mount() {
    this._makeChart();
    this.resizer = new ResizeObserver(() => this._resize());
    this.resizer.observe(this.chartEl);
  }

  destroy() {
    if (this.resizer) this.resizer.disconnect();
    if (this.plot) this.plot.destroy();
    this.plot = null;
    if (this.preview) this.preview.srcObject = null;
    this.el.remove();
  }

  // ---------------------------------------------------------------- chart

  _makeChart() {
    const axisStroke = '#94a3b8';
    const grid = { stroke: 'rgba(148,163,184,0.10)', width: 1 };
    const ticks = { stroke: 'rgba(148,163,184,0.25)', width: 1, size: 4 };
    const val = (u, v) => (isNum(v) ? v.toFixed(2) : '—');
    const line = (label, key, extra = {}) => ({ label, stroke: COLORS[key], width: 1.5, spanGaps: false, value: val,
      points: { size: 4 }, ...extra });
    const opts = {
      width: Math.max(240, this.chartEl.clientWidth || 480),
      height: CHART_HEIGHT,
      pxAlign: false,
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      legend: { show: true, live: true },
      scales: {
        x: { time: false, range: (u, min, max) => {
          if (!isNum(min) || !isNum(max)) return [0, 20];
          return [Math.max(0, min - 0.5), Math.max(max, min + 20)];
        } },
        y: { range: [0, 1] },
      },
      axes: [
        { stroke: axisStroke, grid, ticks, values: (u, vals) => vals.map(tick), font: '11px system-ui, sans-serif' },
        { stroke: axisStroke, grid, ticks, size: 36, splits: () => [0, 0.2, 0.35, 0.5, 0.75, 1],
          values: (u, vals) => vals.map((v) => String(+v.toFixed(2))),
          font: '11px system-ui, sans-serif' },
      ],
      series: [
        { label: 'media', value: (u, v) => (isNum(v) ? seconds(v) : '—') },
        line('rolling', 'rolling', { width: 3 }),
        line('fused', 'fused', { dash: [5, 4] }),
        line('text', 'text'),
        line('audio', 'audio'),
        line('visual', 'visual'),
      ],
      hooks: {
        drawClear: [(u) => this._drawBands(u)],
        setCursor: [(u) => { if (u.cursor.left < 0) queueMicrotask(() => this._legendToLast()); }],
      },
    };
    this.plot = new uPlot(opts, this._chartData(), this.chartEl);
    this.el.dataset.series = String(opts.series.length - 1);
  }

  _drawBands(u) {
    const { ctx, bbox } = u;
    ctx.save();
    for (const [lo, hi, color] of BANDS) {
      const top = u.valToPos(hi, 'y', true);
      const bottom = u.valToPos(lo, 'y', true);
      ctx.fillStyle = color;
      ctx.fillRect(bbox.left, top, bbox.width, bottom - top);
    }
    const y = Math.round(u.valToPos(0.5, 'y', true)) + 0.5;
    ctx.strokeStyle = 'rgba(226,232,240,0.45)';
    ctx.lineWidth = 1;
    ctx.setLineDash([3, 3]);
    ctx.beginPath();
    ctx.moveTo(bbox.left, y);
    ctx.lineTo(bbox.left + bbox.width, y);
    ctx.stroke();
    ctx.restore();
  }

  _chartData() {
    const d = this.data;
    return [d.x, d.rolling, d.fused, d.text, d.audio, d.visual];
  }

  /** With the cursor off the chart, the legend shows the latest window's values instead of dashes. */
  _legendToLast() {
    const u = this.plot;
    const n = this.data.x.length;
    if (!u || !n || (u.cursor && u.cursor.left >= 0)) return;
    u.setLegend({ idx: n - 1 });
  }

  _resize() {
    if (!this.plot) return;
    const width = Math.floor(this.chartEl.clientWidth);
    if (width > 0 && Math.abs(width - this.plot.width) > 1) {
      this.plot.setSize({ width, height: CHART_HEIGHT });
    }
  }

  // ---------------------------------------------------------------- messages

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
    const score = (m) => (mods[m] && mods[m].available && isNum(mods[m].score) ? mods[m].score : null);

    // chart, bounded
    const d = this.data;
    d.x.push(w.t_end);
    d.rolling.push(isNum(rolling.score) ? rolling.score : null);
    d.fused.push(isNum(fused.score) ? fused.score : null);
    for (const m of MODALITIES) d[m].push(score(m));
    if (d.x.length > MAX_POINTS) {
      for (const key of Object.keys(d)) d[key].splice(0, d.x.length - MAX_POINTS);
    }
    if (this.plot) {
      this.plot.setData(this._chartData());
      this._legendToLast();
    }
    this.chartEl.dataset.points = String(d.x.length);

    // badge: the rolling verdict
    const graded = rolling.graded || '';
    this.badge.dataset.graded = graded;
    this.badge.dataset.label = rolling.label || '';
    this.gradeEl.textContent = graded || 'no verdict';
    this.scoreEl.textContent = num(rolling.score);
    this.fusedKv.value.textContent = isNum(fused.score) ? `${num(fused.score)} ${fused.graded || ''}`.trim() : '—';
    this.fusedKv.value.dataset.graded = fused.graded || '';
    this.windowKv.value.textContent = `#${w.index} · ${seconds(w.t_start)}–${seconds(w.t_end)}`;
    const missing = (fused.missing || []).length ? ` (missing ${fused.missing.join(', ')})` : '';
    this.methodKv.value.textContent = `${fused.method || '—'}${missing}`;

    // modalities
    for (const m of MODALITIES) this._modality(m, mods[m]);
    this._evidence(mods);

    // status
    this.latencyKv.value.textContent = isNum(w.latency_s) ? `${w.latency_s.toFixed(2)} s` : '—';

    // colour committed phrases that fall in this window
    const entry = { index: w.index, t_start: w.t_start, t_end: w.t_end, label: fused.label || labelOf(fused.score),
      score: fused.score };
    this.windows.push(entry);
    if (this.windows.length > MAX_WINDOWS_FOR_PHRASES) this.windows.shift();
    if (entry.label) {
      for (let i = this.phrases.length - 1; i >= 0; i -= 1) {
        const p = this.phrases[i];
        if (p.mid < entry.t_start - 30) break;
        this._match(p, entry);
      }
    }
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
  }

  _evidence(mods) {
    const e = this.ev;
    const text = (mods.text && mods.text.details) || {};
    e.vader.value.textContent = isNum(text.vader) ? signed(text.vader) : '—';
    e.vaderBar.set(isNum(text.vader) ? text.vader : null, -1, 1);
    e.words.value.textContent = isNum(text.words) ? String(text.words) : '—';
    const keyWords = Array.isArray(text.key_words) ? text.key_words : [];
    e.keyWordsKv.value.textContent = keyWords.length ? '' : '—';
    e.keyWords.replaceChildren(...keyWords.map((k) => h('span', {
      class: 'key-word', dataset: { sign: k.effect > 0 ? 'pos' : 'neg' },
      title: `without it the score would be ${signed(-k.effect)}`,
    }, k.word, h('small', {}, signed(k.effect)))));
    for (const m of MODALITIES) {
      const info = mods[m];
      e.missing[m].textContent = info && !info.available ? `missing: ${info.reason || 'unknown'}` : '';
    }
    const probs = text.probs;
    if (probs && isNum(probs.negative)) {
      e.pNeg.style.width = pct(probs.negative, 1);
      e.pNeu.style.width = pct(probs.neutral, 1);
      e.pPos.style.width = pct(probs.positive, 1);
      e.probsKv.value.textContent = `${pct(probs.negative)} / ${pct(probs.neutral)} / ${pct(probs.positive)}`;
      e.probs.hidden = false;
    } else {
      e.probsKv.value.textContent = '—';
      e.probs.hidden = true;
    }

    const audio = (mods.audio && mods.audio.details) || {};
    const db = (v) => (isNum(v) ? clamp((v + 60) / 60) : null);  // −60 dB … 0 dB
    e.active.value.textContent = isNum(audio.active_db) ? `${audio.active_db.toFixed(1)} dB` : '—';
    e.rms.value.textContent = isNum(audio.rms_db) ? `${audio.rms_db.toFixed(1)} dB` : '—';
    e.activeMeter.set(db(audio.active_db));
    e.rmsMeter.set(db(audio.rms_db));
    e.voiced.value.textContent = pct(audio.voiced_ratio);
    e.voicedMeter.set(audio.voiced_ratio);
    const heard = [audio.speech_share, audio.other_sound_share, audio.silence_share];
    if (heard.every(isNum)) {
      [e.hSpeech, e.hOther, e.hSilence].forEach((el, i) => { el.style.width = pct(heard[i], 1); });
      e.heardKv.value.textContent = heard.map((v) => pct(v)).join(' / ');
      e.heard.hidden = false;
    } else {
      e.heardKv.value.textContent = '—';
      e.heard.hidden = true;
    }
    e.pitch.value.textContent = isNum(audio.pitch_hz)
      ? `${Math.round(audio.pitch_hz)} Hz ± ${num(audio.pitch_variability_st, 1)} st` : '—';
    const features = Array.isArray(audio.top_features) ? audio.top_features : [];
    e.features.value.textContent = features.length
      ? features.map((f) => `${f.feature.replaceAll('_', ' ')} ${signed(f.effect)}`).join(' · ') : '—';

    const visual = (mods.visual && mods.visual.details) || {};
    e.faces.value.textContent = isNum(visual.frames)
      ? `${isNum(visual.frames_with_faces) ? visual.frames_with_faces : 0}/${visual.frames} frames` : '—';
    e.top.value.textContent = visual.top_emotion || '—';
    e.scene.value.textContent = num(visual.scene_score);
    e.share.value.textContent = pct(visual.face_share);
    const emotions = visual.emotions || null;
    for (const name of EMOTIONS) {
      const row = e.emotionRows[name];
      const p = emotions ? emotions[name] : null;
      row.bar.set(isNum(p) ? p : null);
      row.value.textContent = isNum(p) ? pct(p) : '';
      row.dataset.top = String(!!emotions && visual.top_emotion === name);
    }
    e.emotionRows.happy.parentElement.dataset.empty = String(!emotions);
    const people = Array.isArray(visual.people) ? visual.people : [];
    e.peopleKv.value.textContent = people.length ? '' : '—';
    const signOf = { positive: 'pos', negative: 'neg' };
    e.people.replaceChildren(...people.map((p) => h('span', {
      class: 'key-word person', dataset: { person: String(p.person), sign: signOf[labelOf(p.score)] || '' },
      title: `person ${p.person}: in ${p.frames} frames, ${pct(p.share)} of the face weight`,
    }, `#${p.person} ${p.top_emotion}`, h('small', {}, num(p.score)))));
    const source = visual.strongest_source === 'face'
      ? [isNum(visual.strongest_person) ? `#${visual.strongest_person}` : 'face', visual.strongest_emotion].join(' ')
      : visual.strongest_source;
    e.strongest.value.textContent = isNum(visual.strongest_t)
      ? `${num(visual.strongest_t, 1)} s · ${source} (${num(visual.strongest_score)})` : '—';
  }

  onTranscript(t) {
    const stick = this._atBottom();
    if (!t.final) {
      this.pendingEl.textContent = t.text || '';
      this.transcriptEl.dataset.empty = String(!this.phrases.length && !t.text);
      if (stick) this._scrollToEnd();
      return;
    }
    const text = (t.text || '').trim();
    this.pendingEl.textContent = '';
    if (!text) return;
    const el = h('span', { class: 'committed', title: `${seconds(t.t_start)}–${seconds(t.t_end)}` }, `${text} `);
    this.transcriptEl.insertBefore(el, this.pendingEl);
    const phrase = { mid: (t.t_start + t.t_end) / 2, t_start: t.t_start, t_end: t.t_end, el, dist: Infinity };
    if (!isNum(phrase.mid)) phrase.mid = t.t_start;
    this.phrases.push(phrase);
    while (this.phrases.length > MAX_PHRASES) this.phrases.shift().el.remove();
    for (let i = this.windows.length - 1; i >= 0; i -= 1) this._match(phrase, this.windows[i]);
    this.transcriptEl.dataset.empty = 'false';
    if (stick) this._scrollToEnd();
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
    const el = this.transcriptEl;
    return el.scrollHeight - el.scrollTop - el.clientHeight < 24;
  }

  _scrollToEnd() {
    this.transcriptEl.scrollTop = this.transcriptEl.scrollHeight;
  }

  onStatus(s) {
    if (this.ended) return;
    this.statusEl.dataset.state = s.state || '';
    this.stateEl.textContent = s.state || '—';
    this.mediaKv.value.textContent = seconds(s.media_time);
    this.lagKv.value.textContent = isNum(s.lag_s) ? `${s.lag_s.toFixed(1)} s` : '—';
    this.droppedKv.value.textContent = isNum(s.dropped_frames) ? String(s.dropped_frames) : '—';
    this.detailEl.textContent = s.detail || '';
    if (s.source) this.setSourceInfo(s.source);
    const duration = this.sourceInfo && this.sourceInfo.duration;
    const fill = this.progress.firstChild;
    if (isNum(duration) && duration > 0 && isNum(s.media_time)) {
      this.progress.hidden = false;
      fill.style.width = `${clamp(s.media_time / duration) * 100}%`;
    } else {
      this.progress.hidden = true;
    }
  }

  setSourceInfo(src) {
    this.sourceInfo = src;
    this.el.dataset.kind = src.kind || '';
    this.kindEl.textContent = src.kind === 'webrtc' ? 'camera' : src.kind || '';
    if (src.name) {
      this.sourceEl.textContent = src.name;
      this.sourceEl.title = src.name;
    }
    const parts = [];
    if (src.width && src.height) parts.push(`${src.width}×${src.height}`);
    if (isNum(src.fps) && src.fps > 0) parts.push(`${+src.fps.toFixed(1)} fps`);
    if (isNum(src.duration) && src.duration > 0) parts.push(seconds(src.duration));
    const tracks = [src.has_audio && 'audio', src.has_video && 'video'].filter(Boolean);
    parts.push(tracks.length ? tracks.join(' + ') : 'no tracks');
    this.sourceInfoEl.textContent = parts.join(' · ');
  }

  /** An alert rule raised or cleared: one row per episode, newest first; the panel is marked while any is raised. */
  onAlert(a) {
    const key = `${a.rule}@${a.t_start}`;
    let row = this.alertRows.get(key);
    if (!row) {
      const valueEl = h('span', { class: 'alert-value' });
      const timeEl = h('span', { class: 'alert-time' });
      row = h('li', { class: 'alert', dataset: { rule: a.rule } },
        h('span', { class: 'alert-icon', 'aria-hidden': 'true' }, '\u26a0'),
        h('span', { class: 'alert-rule' }, a.rule), valueEl, timeEl);
      Object.assign(row, { valueEl, timeEl });
      this.alertRows.set(key, row);
      this.alertsEl.prepend(row);
      while (this.alertsEl.children.length > MAX_ALERTS) {
        const last = this.alertsEl.lastElementChild;
        this.alertRows.delete([...this.alertRows].find(([, r]) => r === last)[0]);
        last.remove();
      }
    }
    row.dataset.state = a.state;
    const value = isNum(a.value) ? `${a.signal} ${num(a.value)}` : a.signal;
    row.valueEl.textContent = a.state === 'raised' ? `${value} (threshold ${num(a.threshold)})`
      : `cleared${a.detail ? ` · ${a.detail}` : isNum(a.value) ? ` at ${value}` : ''}`;
    row.timeEl.textContent = a.state === 'raised' ? `since ${seconds(a.t_start)}`
      : `${seconds(a.t_start)} – ${seconds(a.t_end)}`;
    this.alertsEl.hidden = false;
    this.el.dataset.alerting = String(this.alertsEl.querySelector('.alert[data-state="raised"]') !== null);
  }

  /** The stream is over: show its summary and disable stop. */
  onEnd(summary = {}) {
    this._markEnded(summary.reason || 'ended');
    this.summarySlot.replaceChildren(this._summary(summary));
  }

  /** After a reconnect the stream was gone: it ended while this page was away. */
  markLost() {
    if (this.ended) return;
    this._markEnded('lost');
    this.el.dataset.lost = 'true';
    this.summarySlot.replaceChildren(h('div', { class: 'summary lost', role: 'note' },
      h('h3', {}, 'Stream lost'),
      h('p', {}, 'The connection to the server dropped and this stream was no longer running when it came back; ' +
        'its end summary was missed.')));
  }

  _markEnded(reason) {
    this.ended = true;
    this.el.dataset.ended = 'true';
    this.stopBtn.disabled = true;
    this.stopBtn.textContent = 'Ended';
    this.statusEl.dataset.state = 'ended';
    this.stateEl.textContent = `ended · ${reason}`;
    if (this.preview) this.preview.dataset.ended = 'true';
  }

  /** While the stop request is on its way. */
  markStopping() {
    this.stopBtn.disabled = true;
    this.stopBtn.textContent = 'Stopping…';
  }

  _summary(s) {
    const graded = s.graded || (s.fused && s.fused.graded) || '';
    const modRows = MODALITIES.map((m) => {
      const info = (s.modalities || {})[m] || {};
      const windows = info.details && isNum(info.details.windows) ? `${info.details.windows} windows` : '';
      return h('tr', { dataset: { modality: m, available: String(!!info.available) } },
        h('th', { scope: 'row' }, h('i', { class: 'swatch', style: { background: COLORS[m] } }), MODALITY_NAMES[m]),
        h('td', { class: 'num' }, info.available ? num(info.score) : '—'),
        h('td', {}, info.available ? info.label || '—' : `missing: ${info.reason || 'unknown'}`),
        h('td', { class: 'muted' }, windows));
    });
    const facts = [
      ['reason', s.reason || '—'],
      ['duration', seconds(s.duration)],
      ['windows', isNum(s.windows) ? String(s.windows) : '—'],
      ['dropped frames', isNum(s.dropped_frames) ? String(s.dropped_frames) : '—'],
    ];
    if (s.rolling && isNum(s.rolling.score)) facts.push(['final rolling', `${num(s.rolling.score)} ${s.rolling.graded || ''}`]);
    const people = Array.isArray(s.people) ? s.people : [];
    if (people.length) {
      const shown = people.slice(0, 5).map((p) => `#${p.person} ${p.top_emotion} ${num(p.score)} `
        + `(${seconds(p.first_seen)}–${seconds(p.last_seen)})`);
      facts.push(['people', shown.join(' · ') + (people.length > 5 ? ` +${people.length - 5} more` : '')]);
    }
    return h('section', { class: 'summary', dataset: { reason: s.reason || '' }, 'aria-label': 'summary' },
      h('div', { class: 'summary-head' },
        h('h3', {}, 'Summary'),
        h('span', { class: 'badge small', dataset: { graded } },
          h('span', { class: 'grade' }, graded || 'no verdict'), h('span', { class: 'score' }, num(s.score))),
        h('span', { class: 'summary-label' }, s.label ? `overall ${s.label}` : '')),
      h('dl', { class: 'facts' }, facts.map(([k, v]) => h('div', { dataset: { fact: k } }, h('dt', {}, k), h('dd', {}, v)))),
      h('table', { class: 'summary-modalities' },
        h('caption', {}, 'per-modality means'), h('tbody', {}, modRows)),
      s.transcript ? h('p', { class: 'summary-transcript' }, `“${s.transcript}”`) : null);
  }
}
