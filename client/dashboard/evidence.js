// What each modality's score rests on (a window's modalities.*.details, README "Evidence"): one card per modality.

import { languageCode, languageLong } from './language.js';
import { labelOf } from './scale.js';
import { clamp, h, isNum, num, pct, signed } from './util.js';
import { MODALITIES, divergingBar, kv, meter } from './widgets.js';

const EMOTIONS = ['happy', 'surprise', 'neutral', 'sad', 'fear', 'angry', 'disgust'];
const SIGN_OF_LABEL = { positive: 'pos', negative: 'neg' };
// text details.head: which head scored the words
const HEADS = { text: 'English head', text_multilingual: 'multilingual head' };

export class Evidence {
  constructor() {
    this.missing = {};
    for (const m of MODALITIES) this.missing[m] = h('span', { class: 'ev-missing' });
    this.el = h('section', { class: 'evidence', 'aria-label': 'evidence' }, this._textCard(), this._audioCard(),
      this._visualCard());
  }

  _textCard() {
    this.vaderBar = divergingBar('vader-bar');
    this.vader = kv('VADER compound');
    this.vaderLine = h('div', { class: 'ev-line vader-line' }, this.vader, this.vaderBar);
    this.head = kv('scored by');
    this.textLanguage = kv('language');
    this.words = kv('words');
    this.keyWords = h('span', { class: 'key-words', 'aria-label': 'the words that moved the text score most' });
    this.keyWordsKv = kv('moved by');
    this.probs = h('span', { class: 'probs', 'aria-hidden': 'true' },
      this.pNeg = h('span', { class: 'p-neg' }), this.pNeu = h('span', { class: 'p-neu' }),
      this.pPos = h('span', { class: 'p-pos' }));
    this.probsKv = kv('neg / neu / pos');
    return h('div', { class: 'ev-card', dataset: { modality: 'text' } },
      h('h4', {}, 'Text'), this.missing.text, h('div', { class: 'ev-line wrap' }, this.head, this.textLanguage),
      this.vaderLine, this.words,
      h('div', { class: 'ev-line wrap' }, this.keyWordsKv, this.keyWords),
      h('div', { class: 'ev-line' }, this.probsKv, this.probs));
  }

  _audioCard() {
    this.activeMeter = meter('db');
    this.rmsMeter = meter('db rms');
    this.active = kv('active');
    this.rms = kv('rms');
    this.voicedMeter = meter('voiced');
    this.voiced = kv('voiced');
    this.heard = h('span', { class: 'heard', 'aria-hidden': 'true' },
      this.hSpeech = h('span', { class: 'h-speech' }), this.hOther = h('span', { class: 'h-other' }),
      this.hSilence = h('span', { class: 'h-silence' }));
    this.heardKv = kv('speech / other / silence');
    this.pitch = kv('pitch');
    this.features = kv('pushed by');
    return h('div', { class: 'ev-card', dataset: { modality: 'audio' } },
      h('h4', {}, 'Audio'), this.missing.audio, h('div', { class: 'ev-line' }, this.active, this.activeMeter),
      h('div', { class: 'ev-line' }, this.rms, this.rmsMeter), h('div', { class: 'ev-line' }, this.voiced,
        this.voicedMeter),
      h('div', { class: 'ev-line' }, this.heardKv, this.heard), this.pitch, this.features);
  }

  _visualCard() {
    this.faces = kv('faces');
    this.top = kv('top');
    this.scene = kv('scene');
    this.share = kv('face share');
    this.peopleKv = kv('people');
    this.people = h('span', { class: 'key-words people', 'aria-label': 'each tracked face: top expression, score' });
    this.strongest = kv('strongest');
    this.emotionRows = {};
    this.emotionList = h('div', { class: 'emotions', 'aria-label': 'face emotion distribution' },
      EMOTIONS.map((name) => {
        const bar = meter('emotion');
        const value = h('span', { class: 'e-v' }, '');
        const row = h('div', { class: 'emotion', dataset: { emotion: name } }, h('span', { class: 'e-name' }, name),
          bar, value);
        row.bar = bar;
        row.value = value;
        this.emotionRows[name] = row;
        return row;
      }));
    return h('div', { class: 'ev-card', dataset: { modality: 'visual' } },
      h('h4', {}, 'Visual'), this.missing.visual, h('div', { class: 'ev-line wrap' }, this.faces, this.top),
      this.emotionList, h('div', { class: 'ev-line wrap' }, this.scene, this.share),
      h('div', { class: 'ev-line wrap' }, this.peopleKv, this.people), this.strongest);
  }

  /** A window's modalities (and its spoken language, the window's `language`). */
  update(mods, language = null) {
    for (const m of MODALITIES) {
      const info = mods[m];
      this.missing[m].textContent = info && !info.available ? `missing: ${info.reason || 'unknown'}` : '';
    }
    this._text((mods.text && mods.text.details) || {}, language);
    this._audio((mods.audio && mods.audio.details) || {});
    this._visual((mods.visual && mods.visual.details) || {});
  }

  _text(text, windowLanguage) {
    const head = typeof text.head === 'string' ? text.head : '';
    this.head.value.textContent = head ? HEADS[head] || head : '—';
    this.head.value.dataset.head = head;
    const language = languageCode(text.language) || languageCode(windowLanguage);
    this.textLanguage.value.textContent = language ? languageLong(language) : '—';
    this.textLanguage.value.dataset.language = language || '';
    // VADER is English-only: a window in another language shows why it has no VADER score (the server's
    // vader_skipped), never a number, even one a server sent
    const english = !language || language.toLowerCase().split('-')[0] === 'en';
    const skipped = typeof text.vader_skipped === 'string' && text.vader_skipped ? text.vader_skipped : '';
    const vader = english && !skipped && isNum(text.vader) ? text.vader : null;
    this.vaderLine.dataset.skipped = String(vader === null && (!!skipped || !english));
    this.vader.value.textContent = vader !== null ? signed(vader) : skipped || '—';
    this.vader.value.classList.toggle('skipped', !!skipped && vader === null);
    this.vaderBar.set(vader, -1, 1);
    this.words.value.textContent = isNum(text.words) ? String(text.words) : '—';
    const keyWords = Array.isArray(text.key_words) ? text.key_words : [];
    this.keyWordsKv.value.textContent = keyWords.length ? '' : '—';
    if (language) this.keyWords.setAttribute('lang', language);
    else this.keyWords.removeAttribute('lang');
    this.keyWords.replaceChildren(...keyWords.map((k) => h('span', {
      class: 'key-word', dataset: { sign: k.effect > 0 ? 'pos' : 'neg' },
      title: `without it the score would be ${signed(-k.effect)}`,
    }, h('bdi', {}, k.word), h('small', { lang: 'en', dir: 'ltr' }, signed(k.effect)))));
    const probs = text.probs;
    if (probs && isNum(probs.negative)) {
      this.pNeg.style.width = pct(probs.negative, 1);
      this.pNeu.style.width = pct(probs.neutral, 1);
      this.pPos.style.width = pct(probs.positive, 1);
      this.probsKv.value.textContent = `${pct(probs.negative)} / ${pct(probs.neutral)} / ${pct(probs.positive)}`;
      this.probs.hidden = false;
    } else {
      this.probsKv.value.textContent = '—';
      this.probs.hidden = true;
    }
  }

  _audio(audio) {
    const db = (v) => (isNum(v) ? clamp((v + 60) / 60) : null);  // −60 dB … 0 dB
    this.active.value.textContent = isNum(audio.active_db) ? `${audio.active_db.toFixed(1)} dB` : '—';
    this.rms.value.textContent = isNum(audio.rms_db) ? `${audio.rms_db.toFixed(1)} dB` : '—';
    this.activeMeter.set(db(audio.active_db));
    this.rmsMeter.set(db(audio.rms_db));
    this.voiced.value.textContent = pct(audio.voiced_ratio);
    this.voicedMeter.set(audio.voiced_ratio);
    const heard = [audio.speech_share, audio.other_sound_share, audio.silence_share];
    if (heard.every(isNum)) {
      [this.hSpeech, this.hOther, this.hSilence].forEach((el, i) => { el.style.width = pct(heard[i], 1); });
      this.heardKv.value.textContent = heard.map((v) => pct(v)).join(' / ');
      this.heard.hidden = false;
    } else {
      this.heardKv.value.textContent = '—';
      this.heard.hidden = true;
    }
    this.pitch.value.textContent = isNum(audio.pitch_hz)
      ? `${Math.round(audio.pitch_hz)} Hz ± ${num(audio.pitch_variability_st, 1)} st` : '—';
    const features = Array.isArray(audio.top_features) ? audio.top_features : [];
    this.features.value.textContent = features.length
      ? features.map((f) => `${f.feature.replaceAll('_', ' ')} ${signed(f.effect)}`).join(' · ') : '—';
  }

  _visual(visual) {
    this.faces.value.textContent = isNum(visual.frames)
      ? `${isNum(visual.frames_with_faces) ? visual.frames_with_faces : 0}/${visual.frames} frames` : '—';
    this.top.value.textContent = visual.top_emotion || '—';
    this.scene.value.textContent = num(visual.scene_score);
    this.share.value.textContent = pct(visual.face_share);
    const emotions = visual.emotions || null;
    for (const name of EMOTIONS) {
      const row = this.emotionRows[name];
      const p = emotions ? emotions[name] : null;
      row.bar.set(isNum(p) ? p : null);
      row.value.textContent = isNum(p) ? pct(p) : '';
      row.dataset.top = String(!!emotions && visual.top_emotion === name);
    }
    this.emotionList.dataset.empty = String(!emotions);
    const people = Array.isArray(visual.people) ? visual.people : [];
    this.peopleKv.value.textContent = people.length ? '' : '—';
    this.people.replaceChildren(...people.map((p) => h('span', {
      class: 'key-word person', dataset: { person: String(p.person), sign: SIGN_OF_LABEL[labelOf(p.score)] || '' },
      title: `person ${p.person}: in ${p.frames} frames, ${pct(p.share)} of the face weight`,
    }, `#${p.person} ${p.top_emotion}`, h('small', {}, num(p.score)))));
    const source = visual.strongest_source === 'face'
      ? [isNum(visual.strongest_person) ? `#${visual.strongest_person}` : 'face', visual.strongest_emotion].join(' ')
      : visual.strongest_source;
    this.strongest.value.textContent = isNum(visual.strongest_t)
      ? `${num(visual.strongest_t, 1)} s · ${source} (${num(visual.strongest_score)})` : '—';
  }
}
