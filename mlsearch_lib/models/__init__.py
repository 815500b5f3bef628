"""Stage 3, models: the RelevanceModel interface, the references, the encoder, the causal LM, embeddings, neighbour labels, stacking, offline model resolution, the scoring engines."""
