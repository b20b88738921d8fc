"""Reports from run and study folders, by concern.

`run_folder` reads a campaign's folder; `campaign_figures` draws its figures (and several
campaigns side by side); `html` writes its offline ``report.html``; `study_figures` draws a
study's figures and page (import it from there: it selects matplotlib's Agg backend);
`tables` prints their tables as Markdown or for a terminal.
"""

from rarelearn.report.campaign_figures import compare_runs
from rarelearn.report.html import build_report

__all__ = ["build_report", "compare_runs"]
