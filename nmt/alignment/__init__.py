"""Does the attention align, and does it explain? (docs/alignment.md)

links (Pharaoh/talp gold files), aer (Och & Ney 2003), extract (subword -> word alignments of any
cross-attention slot/layer/head), corpus + pipeline (forced decoding of a corpus, AER per selection),
counterfactual + explain (Jain & Wallace 2019; Serrano & Smith 2019).
"""
