"""Thin entry points: compose a config, call the library."""
