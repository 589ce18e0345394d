"""Training and evaluation: manifests, the embedding cache, head training, text fine-tuning, fusion fitting,
evaluation tables and metrics. Nothing in the live path (pipeline, server, scorers) imports from here."""
