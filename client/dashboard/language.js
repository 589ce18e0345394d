// Spoken languages (README "Protocol": window/transcript `language` and `language_p`, status `language`, the end
// summary's `languages`): their codes checked, their English names, their writing direction, and a small tag.

import { h, isNum, pct } from './util.js';

// Languages written right to left (by their ISO 639 code), and scripts that are (a BCP 47 script subtag).
const RTL_LANGUAGES = new Set(['ar', 'he', 'fa', 'ur', 'yi', 'ps', 'sd', 'ug', 'dv', 'iw', 'ji']);
const RTL_SCRIPTS = new Set(['arab', 'hebr', 'thaa', 'syrc', 'nkoo', 'adlm', 'rohg', 'mand', 'samr']);
const CODE = /^[a-z]{2,3}(-[a-z0-9]{1,8})*$/i;

let names = null;
try {
  names = new Intl.DisplayNames(['en'], { type: 'language', fallback: 'code' });
} catch { /* a browser without Intl.DisplayNames: the codes stand for themselves */ }

/** A language code from a message ("es", "zh-Hant", "pt_BR"), or null when it is missing or no code at all. */
export function languageCode(value) {
  if (typeof value !== 'string') return null;
  const code = value.trim().replace(/_/g, '-');
  return CODE.test(code) ? code : null;
}

/** The language's English name ("Spanish"), or its code where the browser has no name for it. */
export function languageName(code) {
  const c = languageCode(code);
  if (!c) return '';
  try {
    const name = names ? names.of(c) : null;
    return name && name !== c ? name : c;
  } catch {
    return c;  // a well-formed code the browser refuses (RangeError)
  }
}

/** `dir` for text in this language: rtl for the right-to-left ones, ltr for the others, auto when unknown. */
export function directionOf(code) {
  const c = languageCode(code);
  if (!c) return 'auto';
  const [base, ...subtags] = c.toLowerCase().split('-');
  if (RTL_LANGUAGES.has(base) || subtags.some((s) => RTL_SCRIPTS.has(s))) return 'rtl';
  return 'ltr';
}

/** "ES · 97%" (the probability left out when there is none). */
export function languageShort(code, p) {
  const c = languageCode(code);
  if (!c) return '';
  return isNum(p) ? `${c.toUpperCase()} \u00b7 ${pct(p)}` : c.toUpperCase();
}

/** "Spanish (es), 97%". */
export function languageLong(code, p) {
  const c = languageCode(code);
  if (!c) return '';
  const name = languageName(c);
  return `${name === c ? c : `${name} (${c})`}${isNum(p) ? `, ${pct(p)}` : ''}`;
}

/** The lang and dir attributes of an element holding text in this language (lang left off when unknown). */
export function setLanguage(el, code) {
  const c = languageCode(code);
  if (c) el.setAttribute('lang', c);
  else el.removeAttribute('lang');
  el.setAttribute('dir', directionOf(c));
  el.dataset.language = c || '';
}

/** A small tag naming a language ("ES"), its name and probability in its title; null when there is no language. */
export function languageTag(code, p, cls = 'lang-tag') {
  const c = languageCode(code);
  if (!c) return null;
  return h('span', { class: cls, lang: 'en', dir: 'ltr', dataset: { language: c }, title: languageLong(c, p) },
    c.toUpperCase());
}
