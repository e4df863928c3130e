"""Built-in training configs: ``sciml forecast train --config NAME`` (demo, quick, tiny)."""
