"""Datasets and sources: captions, image-text shards, the synthetic compositional world."""
