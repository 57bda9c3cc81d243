"""Data: readers, dataset layouts, the decode-once cache and the embedded synthetic datasets."""
