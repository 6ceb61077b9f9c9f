"""The HTML report of a finished run (``audiobench report RUN_DIR``): see :mod:`audiobench.report.build`."""

from audiobench.report.build import build_report, markdown_table_html

__all__ = ["build_report", "markdown_table_html"]
