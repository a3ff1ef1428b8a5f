"""Turn a results folder into tidy tables, cross-seed statistics and paper-style figures.

Final statistics and mean curves use complete trials only (``status`` from ``load_results``).
RL problems (those logging ``rl/episode_return``) also get rliable statistics (``rl_stats``).
"""

from pbrl_dist.report.figures import FIGURES, draw_figures, mean_curve
from pbrl_dist.report.rl_stats import format_rl_stats, rl_stats
from pbrl_dist.report.tables import (
    final_summary,
    format_table,
    left_out_message,
    load_results,
)

__all__ = [
    "FIGURES",
    "draw_figures",
    "final_summary",
    "format_rl_stats",
    "format_table",
    "left_out_message",
    "load_results",
    "mean_curve",
    "rl_stats",
]
