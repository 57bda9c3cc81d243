"""Where results live: the SQLite store of runs (and, later, tables over it)."""

from medad.results.store import ResultsStore, RunRow

__all__ = ["ResultsStore", "RunRow"]
