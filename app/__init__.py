"""How a process is put together: the options several commands share (options) and the composition root that
builds the engine, the history and the pipeline's configuration from them (compose)."""
