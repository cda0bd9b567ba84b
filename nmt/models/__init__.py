"""Models: embeddings, RNN and Transformer encoders/decoders, Seq2Seq, build_model."""
