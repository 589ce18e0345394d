// A stream's timeline: the rolling, fused and per-modality scores over media time on a uPlot chart, over the
// grade bands of the server's scale.

import uPlot from '/dashboard/vendor/uplot/uPlot.esm.js';
import { gradeBands } from './scale.js';
import { h, isNum, seconds, tick } from './util.js';
import { COLORS, MODALITIES } from './widgets.js';

export const MAX_POINTS = 300;    // windows kept on the chart
const CHART_HEIGHT = 200;
const BAND_COLORS = {
  Positive: 'rgba(34,197,94,0.07)',
  'Slight Negative': 'rgba(251,191,36,0.07)',
  Negative: 'rgba(249,115,22,0.08)',
  'Strong Negative': 'rgba(239,68,68,0.09)',
};
const OTHER_BAND_COLOR = 'rgba(148,163,184,0.06)';  // a grade this page has no colour for

export class TimelineChart {
  constructor() {
    this.data = { x: [], rolling: [], fused: [], text: [], audio: [], visual: [] };
    this.plot = null;
    this.el = h('div', { class: 'chart', dataset: { points: '0' }, role: 'img',
      'aria-label': 'sentiment over media time: rolling, fused and per-modality scores' });
  }

  /** Call once the element is in the document (uPlot measures its container). Returns the number of series. */
  mount() {
    const opts = this._options();
    this.plot = new uPlot(opts, this._chartData(), this.el);
    this.resizer = new ResizeObserver(() => this._resize());
    this.resizer.observe(this.el);
    return opts.series.length - 1;
  }

  destroy() {
    if (this.resizer) this.resizer.disconnect();
    if (this.plot) this.plot.destroy();
    this.plot = null;
  }

  /** One window's scores, the oldest dropped past MAX_POINTS. */
  push(w) {
    const mods = w.modalities || {};
    const score = (m) => (mods[m] && mods[m].available && isNum(mods[m].score) ? mods[m].score : null);
    const d = this.data;
    d.x.push(w.t_end);
    d.rolling.push(w.rolling && isNum(w.rolling.score) ? w.rolling.score : null);
    d.fused.push(w.fused && isNum(w.fused.score) ? w.fused.score : null);
    for (const m of MODALITIES) d[m].push(score(m));
    if (d.x.length > MAX_POINTS) {
      for (const key of Object.keys(d)) d[key].splice(0, d.x.length - MAX_POINTS);
    }
    if (this.plot) {
      this.plot.setData(this._chartData());
      this._legendToLast();
    }
    this.el.dataset.points = String(d.x.length);
  }

  /** Draws the bands and axis of the scale in use again (after a hello brought another). */
  rescale() {
    if (this.plot) this.plot.redraw(false, true);  // the bands and the axis's splits read the scale as they draw
  }

  _splits() {
    return [...new Set([0, ...gradeBands().map((b) => b.lo), 0.75, 1])].filter((v) => v >= 0 && v <= 1)
      .sort((a, b) => a - b);
  }

  _options() {
    const axisStroke = '#94a3b8';
    const grid = { stroke: 'rgba(148,163,184,0.10)', width: 1 };
    const ticks = { stroke: 'rgba(148,163,184,0.25)', width: 1, size: 4 };
    const val = (u, v) => (isNum(v) ? v.toFixed(2) : '—');
    const line = (label, key, extra = {}) => ({ label, stroke: COLORS[key], width: 1.5, spanGaps: false, value: val,
      points: { size: 4 }, ...extra });
    return {
      width: Math.max(240, this.el.clientWidth || 480),
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
        { stroke: axisStroke, grid, ticks, size: 36, splits: () => this._splits(),
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
  }

  _drawBands(u) {
    const { ctx, bbox } = u;
    ctx.save();
    for (const { grade, lo, hi } of gradeBands()) {
      const top = u.valToPos(hi, 'y', true);
      const bottom = u.valToPos(lo, 'y', true);
      ctx.fillStyle = BAND_COLORS[grade] || OTHER_BAND_COLOR;
      ctx.fillRect(bbox.left, top, bbox.width, bottom - top);
    }
    // the middle of the scale: P(positive) 0.5
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
    const width = Math.floor(this.el.clientWidth);
    if (width > 0 && Math.abs(width - this.plot.width) > 1) {
      this.plot.setSize({ width, height: CHART_HEIGHT });
    }
  }
}
