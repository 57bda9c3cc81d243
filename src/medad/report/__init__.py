"""The static HTML report of a results folder (``medad report``)."""

from medad.report.html import build_report

__all__ = ["build_report"]
