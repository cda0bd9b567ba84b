"""Attention inspection above alignment: labelled heatmaps (matplotlib, imported only when drawing),
probe texts and the offline explorer page."""
