"""The explicit list of method modules: importing one registers its method(s)."""

from medad.methods import ae  # noqa: F401
