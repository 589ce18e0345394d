"""Per-modality scorers, their heads, training, evaluation and fusion."""
