"""Media in: sources, ring buffers, windows over media time, and incremental speech recognition."""
