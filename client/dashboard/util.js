// Small DOM and formatting helpers shared by the dashboard's modules.

/** An element: h('div', {class: 'x', dataset: {a: '1'}, onclick}, 'text', child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'style' && typeof value === 'object') Object.assign(el.style, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

/** A number with `digits` decimals, or an em dash when missing. */
export function num(v, digits = 2) {
  return isNum(v) ? v.toFixed(digits) : '—';
}

/** A signed number (VADER compound): +0.32 / −0.44. */
export function signed(v, digits = 2) {
  if (!isNum(v)) return '—';
  const s = Math.abs(v).toFixed(digits);
  return v > 0 ? `+${s}` : v < 0 ? `\u2212${s}` : s;
}

export function pct(v, digits = 0) {
  return isNum(v) ? `${(v * 100).toFixed(digits)}%` : '—';
}

/** Media seconds: "12.3 s", or "1:02.5" past a minute. */
export function seconds(v, digits = 1) {
  if (!isNum(v)) return '—';
  if (Math.abs(v) < 60) return `${v.toFixed(digits)} s`;
  const m = Math.floor(v / 60);
  const s = v - m * 60;
  return `${m}:${s.toFixed(digits).padStart(digits ? digits + 3 : 2, '0')}`;
}

/** An axis tick for media time. */
export function tick(v) {
  if (!isNum(v)) return '';
  if (Math.abs(v) < 60) return `${+v.toFixed(1)}s`;
  const m = Math.floor(v / 60);
  return `${m}:${String(Math.round(v - m * 60)).padStart(2, '0')}`;
}

export function clamp(v, lo = 0, hi = 1) {
  return Math.min(hi, Math.max(lo, v));
}

/** Grade names → the key used in CSS (data-graded keeps the server's string). */
export const GRADES = ['Positive', 'Slight Negative', 'Negative', 'Strong Negative'];

export function bytes(n) {
  if (!isNum(n)) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} kB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}
