// A stream's people (window `people`): one row per person seen or heard — a tracked face, a voice, or a face with
// its voice bound to it — with their face thumbnail, their rolling verdict, their text / voice / face scores (or why
// one is missing) and a sparkline of their rolling score; and who is speaking now.

import { h, isNum, num, pct, seconds } from './util.js';
import { COLORS, showGrade } from './widgets.js';

export const MAX_PEOPLE = 12;      // rows kept: past it, the person seen longest ago makes room
export const MAX_SPARK = 150;      // windows on a person's sparkline
const MIN_SPAN = 20;               // windows a sparkline's width stands for until it has more
export const STALE_AFTER_S = 60;   // media seconds without a window before a row greys out
const MAX_VOICES = 64;             // voice → person bindings remembered
const MAX_THUMBNAIL = 96 * 1024;   // characters of a thumbnail's data: URL
const THUMBNAIL = /^data:image\/jpeg;base64,[A-Za-z0-9+/]+={0,2}$/;
const MODALITY_WORDS = { text: 'text', audio: 'voice', visual: 'face' };  // what a person's modalities are of
const SVG = 'http://www.w3.org/2000/svg';

const isId = (v) => Number.isInteger(v) && v >= 0;

/** A thumbnail the page may show: a data:image/jpeg;base64 URL of a sane size, else null (never markup, never
 * another scheme). */
export function safeThumbnail(url) {
  return typeof url === 'string' && url.length <= MAX_THUMBNAIL && THUMBNAIL.test(url) ? url : null;
}

/** A voice's name: speaker ids count from 0, names from 1 (as the transcript's "speaker N"). */
export const voiceName = (speaker) => `voice ${speaker + 1}`;

/** A person's name: "person 3", "person 3 · voice 1" (a face with its voice; `short`: "person 3"), "voice 1" (a
 * voice alone). */
export function personName(p, { short = false } = {}) {
  const face = isId(p && p.person) ? `person ${p.person}` : null;
  const voice = isId(p && p.speaker) ? voiceName(p.speaker) : null;
  if (face && voice && !short) return `${face} · ${voice}`;
  return face || voice || idName(p && p.id);
}

/** A person id ("person-3", "voice-0") as a name, for someone no window has shown. */
export function idName(id) {
  const m = /^(person|voice)-(\d{1,9})$/.exec(String(id));
  if (!m) return typeof id === 'string' && id ? id : 'someone';
  return m[1] === 'person' ? `person ${Number(m[2])}` : voiceName(Number(m[2]));
}

function svg(tag, attrs = {}) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  return el;
}

/** A person's rolling score over their last MAX_SPARK windows, growing from the left as the stream's chart does
 * (then scrolling, newest on the right), gaps where they had none: an inline SVG path (cheap: no uPlot per person). */
class Sparkline {
  constructor() {
    this.points = [];
    this.line = svg('path', { class: 'spark-line', 'vector-effect': 'non-scaling-stroke' });
    this.el = svg('svg', { class: 'spark', viewBox: `0 0 ${MAX_SPARK - 1} 100`, preserveAspectRatio: 'none',
      role: 'img', 'aria-label': 'their rolling score over their recent windows' });
    this.mid = svg('line', { class: 'spark-mid', x1: 0, x2: MAX_SPARK - 1, y1: 50, y2: 50,
      'vector-effect': 'non-scaling-stroke' });
    this.el.append(this.mid, this.line);
    this.el.dataset.points = '0';
    this.el.dataset.graded = '';
  }

  push(score) {
    this.points.push(isNum(score) ? Math.min(1, Math.max(0, score)) : null);
    if (this.points.length > MAX_SPARK) this.points.splice(0, this.points.length - MAX_SPARK);
    this.draw();
  }

  adopt(points) {
    this.points = points.slice(-MAX_SPARK);
    this.draw();
  }

  draw() {
    const n = this.points.length;
    const span = Math.max(n, MIN_SPAN) - 1;
    const parts = [];
    let open = false;
    this.points.forEach((v, i) => {
      if (v === null) { open = false; return; }
      const x = i;
      const y = ((1 - v) * 100).toFixed(1);
      const lone = !open && (i + 1 >= n || this.points[i + 1] === null);
      parts.push(`${open ? 'L' : 'M'}${x} ${y}${lone ? 'h0.3' : ''}`);  // a lone point still shows
      open = true;
    });
    this.line.setAttribute('d', parts.join(''));
    this.el.setAttribute('viewBox', `0 0 ${span} 100`);
    this.mid.setAttribute('x2', String(span));
    this.el.dataset.points = String(n);
  }
}

export class People {
  /** @param {{onBindings?: () => void}} options onBindings: a voice was bound to another face (names changed) */
  constructor({ onBindings = () => {} } = {}) {
    this.onBindings = onBindings;
    this.rows = new Map();    // id → row {id, el, first, lastT, ...}
    this.voices = new Map();  // speaker → the latest people entry's {id, person} that carried the voice
    this.latestT = null;      // the latest window's end (media seconds)
    this.fromWindow = null;   // {t, id, name}: who spoke most in the latest window (id null: nobody)
    this.fromWords = null;    // {t, speaker}: the latest committed words' speaker
    this.nowEl = h('span', { class: 'speaking-now', dataset: { who: '' }, role: 'status', 'aria-live': 'polite',
      title: 'who spoke most in the latest window, or said the latest committed words' },
    h('span', { class: 'speaking-dot', 'aria-hidden': 'true' }), h('span', { class: 'k' }, 'speaking now'),
    this.nowName = h('span', { class: 'v' }, 'nobody'));
    this.list = h('ol', { class: 'people-list', 'aria-label': 'people seen or heard' });
    this.el = h('section', { class: 'people-section', hidden: true, 'aria-label': 'people' },
      h('div', { class: 'people-head' }, h('h3', { class: 'section-title' }, 'People'),
        this.countEl = h('span', { class: 'count' }, '0'), this.nowEl),
      this.list);
  }

  /** A window: its people (null where the stream tracks none) and who spoke in it. */
  update(w) {
    if (isNum(w.t_end)) this.latestT = w.t_end;
    let rebound = false;
    if (Array.isArray(w.people)) {
      this.el.hidden = false;
      const entries = w.people.filter((p) => p && typeof p === 'object' && typeof p.id === 'string' && p.id);
      for (const p of entries) rebound = this._bind(p) || rebound;
      const ids = new Set(entries.map((p) => p.id));
      for (const p of entries) this._row(p, ids);
      const talker = entries.filter((p) => isNum(p.seconds) && p.seconds > 0)
        .sort((a, b) => b.seconds - a.seconds || (b.speaking || 0) - (a.speaking || 0))[0];
      this.fromWindow = { t: w.t_end, id: talker ? talker.id : null, name: talker ? personName(talker, { short: true })
        : null };
    } else if (Array.isArray(w.speakers)) {  // people not tracked here: the voices heard, named as bound before
      const talker = w.speakers.filter((s) => s && isId(s.speaker) && isNum(s.seconds) && s.seconds > 0)
        .sort((a, b) => b.seconds - a.seconds)[0];
      const bound = talker ? this.voices.get(talker.speaker) : null;
      this.fromWindow = { t: w.t_end, id: bound ? bound.id : null,
        name: talker ? this.speakerName(talker.speaker) : null };
    }
    for (const row of this.rows.values()) {
      row.el.dataset.stale = String(isNum(this.latestT) && this.latestT - row.lastT >= STALE_AFTER_S);
    }
    this._speakingNow();
    if (rebound) this.onBindings();
  }

  /** A committed transcript message with its speaker: who spoke last, when its words are later than the latest
   * window. */
  heard(t) {
    if (!t.final || !isId(t.speaker) || !isNum(t.t_end)) return;
    if (this.fromWords && this.fromWords.t > t.t_end) return;
    this.fromWords = { t: t.t_end, speaker: t.speaker };
    this._speakingNow();
  }

  /** The name of the face a voice is bound to ("person 3"), or null while it is bound to none. */
  faceOfSpeaker(speaker) {
    const bound = this.voices.get(speaker);
    return bound && isId(bound.person) ? `person ${bound.person}` : null;
  }

  /** A voice's name: its face's when bound to one, else "voice N+1". */
  speakerName(speaker) {
    return this.faceOfSpeaker(speaker) || voiceName(speaker);
  }

  /** A person id's name as its row shows it (or as the id reads, for someone with no row). */
  nameOfId(id) {
    const row = this.rows.get(id);
    return row ? row.name : idName(id);
  }

  /** Remembers which person each voice belongs to; true when a voice's face changed. */
  _bind(p) {
    if (!isId(p.speaker)) return false;
    const person = isId(p.person) ? p.person : null;
    const before = this.voices.get(p.speaker);
    this.voices.delete(p.speaker);
    this.voices.set(p.speaker, { id: p.id, person });
    while (this.voices.size > MAX_VOICES) this.voices.delete(this.voices.keys().next().value);
    return (before ? before.person : null) !== person;
  }

  _row(p, present) {
    let row = this.rows.get(p.id);
    if (!row) row = this._add(p, present);
    row.lastT = isNum(this.latestT) ? this.latestT : row.lastT;
    row.name = personName(p);
    row.nameEl.textContent = row.name;
    row.nameEl.title = p.id;
    row.el.dataset.person = isId(p.person) ? String(p.person) : '';
    row.el.dataset.speaker = isId(p.speaker) ? String(p.speaker) : '';
    row.el.dataset.face = String(isId(p.person));
    this._thumbnail(row, p);

    const spoke = isNum(p.seconds) && p.seconds > 0 ? `spoke ${seconds(p.seconds)}` : 'silent';
    row.metaEl.textContent = isNum(p.speaking) ? `${spoke} · lips ${pct(p.speaking)}` : spoke;
    row.metaEl.title = isNum(p.speaking) ? 'their speech in this window · how likely their face is the one talking'
      : 'their speech in this window';

    const mods = p.modalities && typeof p.modalities === 'object' ? p.modalities : {};
    for (const [m, el] of Object.entries(row.mods)) {
      const info = mods[m];
      const word = MODALITY_WORDS[m];
      const available = !!(info && info.available && isNum(info.score));
      el.dataset.available = String(available);
      el.dataset.label = available ? info.label || '' : '';
      el.value.textContent = available ? num(info.score) : '—';
      el.title = available ? `${word}: ${num(info.score)} ${info.label || ''}`.trim() +
        (isNum(info.confidence) ? ` · confidence ${pct(info.confidence)}` : '')
        : `${word}: missing: ${(info && info.reason) || 'unknown'}`;
    }

    const rolling = p.rolling && typeof p.rolling === 'object' ? p.rolling : {};
    const fused = p.fused && typeof p.fused === 'object' ? p.fused : {};
    showGrade(row.badge, rolling);
    row.badge.title = `their rolling verdict${isNum(rolling.certainty) ? ` · certainty ${num(rolling.certainty)}`
      : ''} · this window ${num(fused.score)}${fused.graded ? ` ${fused.graded}` : ''}` +
      (fused.uncertain && (fused.doubts || []).length ? ` · uncertain: ${fused.doubts.join('; ')}` : '');
    row.spark.el.dataset.graded = rolling.uncertain === true ? '' : rolling.graded || '';
    row.spark.push(rolling.score);
  }

  /** A new row, at the end (rows keep the order people appeared in); past MAX_PEOPLE the person seen longest ago
   * goes. A face that took over a voice row (the voice now bound to it) carries on that row's sparkline. */
  _add(p, present) {
    let inherited = null;
    if (isId(p.person) && isId(p.speaker)) {
      const voice = [...this.rows.values()].find((r) => r.el.dataset.face === 'false'
        && r.el.dataset.speaker === String(p.speaker) && !present.has(r.id));
      if (voice) {
        inherited = voice.spark.points;
        this._remove(voice);
      }
    }
    while (this.rows.size >= MAX_PEOPLE) {
      let oldest = null;
      for (const r of this.rows.values()) if (!oldest || r.lastT < oldest.lastT) oldest = r;
      this._remove(oldest);
    }
    const mods = {};
    for (const m of Object.keys(MODALITY_WORDS)) {
      const value = h('span', { class: 'pm-v' }, '—');
      mods[m] = h('span', { class: 'p-mod', dataset: { modality: m, available: 'false' } },
        h('i', { class: 'swatch', style: { background: COLORS[m] } }), h('span', { class: 'pm-k' }, MODALITY_WORDS[m]),
        value);
      mods[m].value = value;
    }
    const row = {
      id: p.id, name: '', lastT: isNum(this.latestT) ? this.latestT : 0, mods,
      thumb: h('span', { class: 'p-thumb' }),
      nameEl: h('span', { class: 'p-name' }),
      metaEl: h('span', { class: 'p-meta' }),
      badge: h('span', { class: 'badge small', dataset: { graded: '', uncertain: 'false' } },
        h('span', { class: 'grade' }, 'waiting…'), h('span', { class: 'score' }, '—')),
      spark: new Sparkline(),
    };
    if (inherited) row.spark.adopt(inherited);
    row.el = h('li', { class: 'person-row', dataset: { id: p.id, stale: 'false', speaking: 'false' } },
      row.thumb,
      h('div', { class: 'p-main' }, h('div', { class: 'p-line' }, row.nameEl, row.metaEl),
        h('div', { class: 'p-mods' }, Object.values(mods))),
      row.badge, row.spark.el);
    this.rows.set(p.id, row);
    this.list.append(row.el);
    this.countEl.textContent = String(this.rows.size);
    return row;
  }

  _remove(row) {
    row.el.remove();
    this.rows.delete(row.id);
    this.countEl.textContent = String(this.rows.size);
  }

  /** The face's latest valid thumbnail (kept until another comes), or a placeholder: "voice only" for a voice. */
  _thumbnail(row, p) {
    const url = safeThumbnail(p.thumbnail);
    if (url) {
      if (!row.img) {
        row.img = h('img', { alt: '', width: 40, height: 40, decoding: 'async' });
        row.thumb.replaceChildren(row.img);
      }
      row.img.src = url;
      row.img.alt = `face of ${personName(p, { short: true })}`;
      row.thumb.dataset.kind = 'face';
      return;
    }
    if (row.img) return;
    const kind = isId(p.person) ? 'no-image' : 'voice';
    if (row.thumb.dataset.kind === kind) return;
    row.thumb.dataset.kind = kind;
    row.thumb.replaceChildren(h('span', { class: 'p-placeholder' }, kind === 'voice' ? 'voice only'
      : String(p.person)));
  }

  /** Who speaks now: the latest committed words' speaker when they are later than the latest window, else who
   * spoke most in the latest window (nobody when no one did); their row is marked. */
  _speakingNow() {
    const words = this.fromWords;
    const win = this.fromWindow;
    let id = null;
    let name = null;
    if (words && (!win || words.t > win.t)) {
      const bound = this.voices.get(words.speaker);
      id = bound ? bound.id : null;
      name = this.speakerName(words.speaker);
    } else if (win) {
      ({ id, name } = win);
    }
    this.nowName.textContent = name || 'nobody';
    this.nowEl.dataset.who = id || '';
    this.nowEl.dataset.speaking = String(!!name);
    for (const row of this.rows.values()) row.el.dataset.speaking = String(!!id && row.id === id);
  }
}
