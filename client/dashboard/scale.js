// The server's sentiment scale: the score thresholds of the labels and the grade bands (hello's `scale`, made by
// models/fusion.py). Until a hello brings them, the values protocol v1 documents (README), here and nowhere else.

const FALLBACK = Object.freeze({
  labels: { positive: 0.6, negative: 0.4 },
  grades: [
    { grade: 'Positive', min: 0.5 },
    { grade: 'Slight Negative', min: 0.35 },
    { grade: 'Negative', min: 0.2 },
    { grade: 'Strong Negative', min: 0 },
  ],
});

let current = FALLBACK;

const isScore = (v) => typeof v === 'number' && v >= 0 && v <= 1;

function readable(scale) {
  if (!scale || typeof scale !== 'object' || !scale.labels || !Array.isArray(scale.grades)) return false;
  const { positive, negative } = scale.labels;
  return isScore(positive) && isScore(negative) && negative <= positive && scale.grades.length > 0
    && scale.grades.every((g) => g && typeof g.grade === 'string' && isScore(g.min));
}

/** Takes the scale a `hello` brought; a server that sends none (or one this page cannot read) leaves the
 * fallback. Returns whether the scale changed. */
export function setScale(scale) {
  const next = readable(scale)
    ? { labels: { ...scale.labels }, grades: [...scale.grades].sort((a, b) => b.min - a.min) }
    : FALLBACK;
  const changed = JSON.stringify(next) !== JSON.stringify(current);
  current = next;
  return changed;
}

/** The scale in use: {labels: {positive, negative}, grades: [{grade, min}] highest first}. */
export function scale() {
  return current;
}

/** The label of a P(positive) score: positive from labels.positive up, negative up to labels.negative. */
export function labelOf(score) {
  if (typeof score !== 'number' || !Number.isFinite(score)) return null;
  const { positive, negative } = current.labels;
  return score >= positive ? 'positive' : score <= negative ? 'negative' : 'neutral';
}

/** The grade bands as score ranges, highest first: [{grade, lo, hi}], the top one up to 1. */
export function gradeBands() {
  return current.grades.map((g, i) => ({ grade: g.grade, lo: g.min, hi: i ? current.grades[i - 1].min : 1 }));
}
