// A stream's alert episodes (the server's --alert rules): one row per episode, newest first, raised then cleared.

import { h, isNum, num, seconds } from './util.js';

const MAX_ALERTS = 20;            // alert episodes listed

export class AlertList {
  /** @param {{personName?: (id: string) => string}} options personName: the name of a person id (alert `person`) */
  constructor({ personName = (id) => id } = {}) {
    this.personName = personName;
    this.rows = new Map();  // `${rule}@${t_start}` (and `@${person}` for a rule scoped to each person) → row
    this.el = h('ul', { class: 'alerts', 'aria-label': 'alerts', 'aria-live': 'assertive', hidden: true });
  }

  /** An `alert` message: its episode's row, added or brought up to date. */
  update(a) {
    const person = typeof a.person === 'string' && a.person ? a.person : null;
    const key = `${a.rule}@${a.t_start}${person ? `@${person}` : ''}`;
    let row = this.rows.get(key);
    if (!row) {
      const valueEl = h('span', { class: 'alert-value' });
      const timeEl = h('span', { class: 'alert-time' });
      const personEl = person ? h('span', { class: 'alert-person', title: person }) : null;
      row = h('li', { class: 'alert', dataset: { rule: a.rule, person: person || '' } },
        h('span', { class: 'alert-icon', 'aria-hidden': 'true' }, '\u26a0'),
        h('span', { class: 'alert-rule' }, a.rule), personEl, valueEl, timeEl);
      Object.assign(row, { valueEl, timeEl, personEl });
      this.rows.set(key, row);
      this.el.prepend(row);
      while (this.el.children.length > MAX_ALERTS) {
        const last = this.el.lastElementChild;
        this.rows.delete([...this.rows].find(([, r]) => r === last)[0]);
        last.remove();
      }
    }
    row.dataset.state = a.state;
    // a per-person rule's detail names them first ("person 3 (voice 1)", "voice 2: the stream ended"): the name is
    // the person's tag, the rest of it the detail
    let detail = a.detail || '';
    if (row.personEl) {
      row.personEl.textContent = this.personName(person);
      row.personEl.title = detail ? `${person} · ${detail}` : person;
      const colon = detail.indexOf(': ');
      detail = colon >= 0 ? detail.slice(colon + 2) : '';
    }
    const value = isNum(a.value) ? `${a.signal} ${num(a.value)}` : a.signal;
    row.valueEl.textContent = a.state === 'raised' ? `${value} (threshold ${num(a.threshold)})`
      : `cleared${detail ? ` · ${detail}` : isNum(a.value) ? ` at ${value}` : ''}`;
    row.timeEl.textContent = a.state === 'raised' ? `since ${seconds(a.t_start)}`
      : `${seconds(a.t_start)} – ${seconds(a.t_end)}`;
    this.el.hidden = false;
  }

  /** Whether any episode is raised now. */
  get raised() {
    return this.el.querySelector('.alert[data-state="raised"]') !== null;
  }
}
