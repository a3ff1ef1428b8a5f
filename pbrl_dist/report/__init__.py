"""Turn a results folder into tidy tables, cross-seed statistics and paper-style figures."""

from pbrl_dist.report.figures import FIGURES, draw_figures
from pbrl_dist.report.tables import final_summary, format_table, load_results

__all__ = ["FIGURES", "draw_figures", "final_summary", "format_table", "load_results"]
