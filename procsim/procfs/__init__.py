"""Renderers: kernel state -> bytes, one module per file, and the table that
places them in the tree (tree.py)."""
