// What the parts of a stream panel share: the modalities and their colours, and small widgets (bars, meters and
// key-value rows).

import { clamp, h, isNum, num } from './util.js';

export const MODALITIES = ['text', 'audio', 'visual'];
export const MODALITY_NAMES = { text: 'Text', audio: 'Audio', visual: 'Visual' };
export const COLORS = {
  rolling: '#f1f5f9',
  fused: '#a5b4fc',
  text: '#38bdf8',
  audio: '#f472b6',
  visual: '#34d399',
};

/** A bar that grows from the middle (0.5) towards the score: left of centre is negative, right positive. */
export function divergingBar(cls = '') {
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
export function meter(cls = '') {
  const fill = h('span', { class: 'fill' });
  const bar = h('span', { class: `meter ${cls}`.trim(), 'aria-hidden': 'true' }, fill);
  bar.set = (value) => { fill.style.width = `${isNum(value) ? clamp(value) * 100 : 0}%`; };
  return bar;
}

/** A "key value" row; row.value is the value's element. */
export function kv(label, cls) {
  const value = h('span', { class: `v ${cls || ''}`.trim() }, '—');
  const row = h('span', { class: 'kv' }, h('span', { class: 'k' }, label), ' ', value);
  row.value = value;
  return row;
}

/** Shows a graded verdict ({graded, label, score, uncertain}: a rolling or fused verdict) in a badge that has a
 * `.grade` and a `.score`: its grade in the grade's colour, or "uncertain (grade)" without the colour (an uncertain
 * verdict never reads as a confident one), or "no verdict". */
export function showGrade(badge, verdict) {
  const v = verdict && typeof verdict === 'object' ? verdict : {};
  const graded = typeof v.graded === 'string' ? v.graded : '';
  const uncertain = v.uncertain === true;
  badge.dataset.graded = uncertain ? '' : graded;
  badge.dataset.label = typeof v.label === 'string' ? v.label : '';
  badge.dataset.uncertain = uncertain ? 'true' : 'false';
  badge.querySelector('.grade').textContent = !graded ? 'no verdict' : uncertain ? `uncertain (${graded})` : graded;
  badge.querySelector('.score').textContent = num(v.score);
}
