from nmt.evaluation.metrics import corpus_scores

__all__ = ["corpus_scores"]
