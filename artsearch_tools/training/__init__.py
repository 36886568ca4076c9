"""Fine-tuning on an owner's catalogue: cached backbone features, a projection head, a new model version,
re-indexing into a new collection and an atomic alias switch."""
