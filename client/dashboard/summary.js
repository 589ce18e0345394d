// What a panel shows once its stream is over: the `end` summary, or a note that the end was missed.

import { languageCode, languageName } from './language.js';
import { personName } from './people.js';
import { h, isNum, num, pct, seconds } from './util.js';
import { COLORS, MODALITIES, MODALITY_NAMES, showGrade } from './widgets.js';

const MAX_LANGUAGES = 6;  // language shares named in the summary; the rest are summed as "other"
const MAX_PEOPLE = 12;    // people listed in the summary (the server sends up to 50)

/** The summary's people of a server that sends their voices and verdicts (each with an `id`): one row each, with
 * their overall verdict, their speech and their windows; null for an older server's (faces alone). */
function peopleTable(people) {
  const rich = people.filter((p) => p && typeof p === 'object' && typeof p.id === 'string' && p.id);
  if (!rich.length) return null;
  const rows = rich.slice(0, MAX_PEOPLE).map((p) => {
    const fused = p.fused && typeof p.fused === 'object' ? p.fused : {};
    const badge = h('span', { class: 'badge small' }, h('span', { class: 'grade' }), h('span', { class: 'score' }));
    showGrade(badge, { ...fused, label: p.label || fused.label });
    const face = Number.isInteger(p.person) && p.top_emotion ? `face ${p.top_emotion} ${num(p.score)}` : '';
    return h('tr', { class: 'summary-person', dataset: { id: p.id, label: p.label || '' } },
      h('th', { scope: 'row' }, personName(p)),
      h('td', {}, badge),
      h('td', { class: 'p-label' }, p.label || '—'),
      h('td', { class: 'num', title: 'their speech' }, isNum(p.seconds) && p.seconds > 0 ? `spoke ${seconds(p.seconds)}`
        : 'silent'),
      h('td', { class: 'num', title: 'windows they were seen or heard in' },
        isNum(p.windows) ? `${p.windows} windows` : '—'),
      h('td', { class: 'muted', title: `seen ${seconds(p.first_seen)}–${seconds(p.last_seen)}` }, face));
  });
  if (rich.length > MAX_PEOPLE) {
    rows.push(h('tr', { class: 'more' }, h('td', { colspan: 6, class: 'muted' }, `+${rich.length - MAX_PEOPLE} more`)));
  }
  return h('table', { class: 'summary-modalities summary-people' }, h('caption', {}, 'people'), h('tbody', {}, rows));
}

/** The summary's `languages` ({code: share of the speech time}) as named shares, largest first, and a bar; "no
 * speech" for {}; null when the server sent none. */
function languageShares(languages) {
  if (!languages || typeof languages !== 'object' || Array.isArray(languages)) return null;
  const shares = Object.entries(languages)
    .map(([code, share]) => [languageCode(code), share])
    .filter(([code, share]) => code && isNum(share) && share > 0)
    .sort((a, b) => b[1] - a[1]);
  if (!shares.length) return h('span', { class: 'lang-shares', dataset: { empty: 'true' } }, 'no speech');
  const shown = shares.slice(0, MAX_LANGUAGES);
  const rest = shares.slice(MAX_LANGUAGES).reduce((sum, [, share]) => sum + share, 0);
  const items = shown.map(([code, share], i) => h('span', { class: 'lang-share', dataset: { language: code,
    share: String(share), n: String(i) }, title: `${languageName(code)} (${code}): ${pct(share, 1)} of the speech` },
  `${languageName(code)} ${pct(share)}`));
  if (rest > 0) items.push(h('span', { class: 'lang-share', dataset: { language: 'other', n: 'other' } },
    `other ${pct(rest)}`));
  const bar = h('span', { class: 'lang-bar', 'aria-hidden': 'true' },
    shown.map(([code, share], i) => h('span', { dataset: { language: code, n: String(i) },
      style: { width: pct(share, 1) } })));
  return h('span', { class: 'lang-shares' }, bar, items);
}

/** The `end` message's summary: the overall verdict, facts, per-modality means, each person's verdict, the language
 * shares and the whole transcript. */
export function summaryView(s) {
  const graded = s.graded || (s.fused && s.fused.graded) || '';
  const fused = s.fused || {};
  const uncertain = fused.uncertain === true;
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
  if (s.rolling && isNum(s.rolling.score)) {
    facts.push(['final rolling', `${num(s.rolling.score)} ${s.rolling.graded || ''}`]);
  }
  if (isNum(fused.certainty)) {
    const doubts = uncertain && (fused.doubts || []).length ? ` — uncertain: ${fused.doubts.join('; ')}` : '';
    facts.push(['certainty', `${num(fused.certainty)} (disagreement ${num(fused.disagreement)})${doubts}`]);
  }
  const people = Array.isArray(s.people) ? s.people : [];
  const peopleRows = peopleTable(people);
  if (people.length && !peopleRows) {
    const shown = people.slice(0, 5).map((p) => `#${p.person} ${p.top_emotion} ${num(p.score)} `
      + `(${seconds(p.first_seen)}–${seconds(p.last_seen)})`);
    facts.push(['people', shown.join(' · ') + (people.length > 5 ? ` +${people.length - 5} more` : '')]);
  }
  const languages = languageShares(s.languages);
  if (languages) facts.push(['languages', languages]);
  return h('section', { class: 'summary', dataset: { reason: s.reason || '' }, 'aria-label': 'summary' },
    h('div', { class: 'summary-head' },
      h('h3', {}, 'Summary'),
      h('span', { class: 'badge small', dataset: { graded: uncertain ? '' : graded, uncertain: String(uncertain) } },
        h('span', { class: 'grade' }, !graded ? 'no verdict' : uncertain ? `uncertain (${graded})` : graded),
        h('span', { class: 'score' }, num(s.score))),
      h('span', { class: 'summary-label' }, s.label ? `overall ${s.label}` : '')),
    h('dl', { class: 'facts' },
      facts.map(([k, v]) => h('div', { dataset: { fact: k } }, h('dt', {}, k), h('dd', {}, v)))),
    h('table', { class: 'summary-modalities' },
      h('caption', {}, 'per-modality means'), h('tbody', {}, modRows)),
    peopleRows,
    s.transcript ? h('p', { class: 'summary-transcript', dir: 'auto' }, `“${s.transcript}”`) : null);
}

/** After a reconnect the stream was gone: it ended while the page was away, its summary missed. */
export function lostView() {
  return h('div', { class: 'summary lost', role: 'note' },
    h('h3', {}, 'Stream lost'),
    h('p', {}, 'The connection to the server dropped and this stream was no longer running when it came back; ' +
      'its end summary was missed.'));
}
