// A stream's alert episodes (the server's --alert rules): one row per episode, newest first, raised then cleared.

import { h, isNum, num, seconds } from './util.js';

const MAX_ALERTS = 20;            // alert episodes listed

export class AlertList {
  constructor() {
    this.rows = new Map();  // `${rule}@${t_start}` → row
    this.el = h('ul', { class: 'alerts', 'aria-label': 'alerts', 'aria-live': 'assertive', hidden: true });
  }

  /** An `alert` message: its episode's row, added or brought up to date. */
  update(a) {
    const key = `${a.rule}@${a.t_start}`;
    let row = this.rows.get(key);
    if (!row) {
      const valueEl = h('span', { class: 'alert-value' });
      const timeEl = h('span', { class: 'alert-time' });
      row = h('li', { class: 'alert', dataset: { rule: a.rule } },
        h('span', { class: 'alert-icon', 'aria-hidden': 'true' }, '\u26a0'),
        h('span', { class: 'alert-rule' }, a.rule), valueEl, timeEl);
      Object.assign(row, { valueEl, timeEl });
      this.rows.set(key, row);
      this.el.prepend(row);
      while (this.el.children.length > MAX_ALERTS) {
        const last = this.el.lastElementChild;
        this.rows.delete([...this.rows].find(([, r]) => r === last)[0]);
        last.remove();
      }
    }
    row.dataset.state = a.state;
    const value = isNum(a.value) ? `${a.signal} ${num(a.value)}` : a.signal;
    row.valueEl.textContent = a.state === 'raised' ? `${value} (threshold ${num(a.threshold)})`
      : `cleared${a.detail ? ` · ${a.detail}` : isNum(a.value) ? ` at ${value}` : ''}`;
    row.timeEl.textContent = a.state === 'raised' ? `since ${seconds(a.t_start)}`
      : `${seconds(a.t_start)} – ${seconds(a.t_end)}`;
    this.el.hidden = false;
  }

  /** Whether any episode is raised now. */
  get raised() {
    return this.el.querySelector('.alert[data-state="raised"]') !== null;
  }
}
