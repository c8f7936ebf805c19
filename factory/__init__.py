"""livedemix engine: the factory of separators (corpus, training, export, evaluation)."""
