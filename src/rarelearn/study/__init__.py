"""The paper's studies, one command each: `rarelearn study NAME --out DIR`.

A study is a set of independent campaigns or pulls compared in one table and one figure:

- ``ensemble`` (paper Fig. 5, 6): committees of 3, 5 and 7 members x random / inherited splits;
- ``selection``: UQ selection against random frames of the NNP pull and of a reference pull at
  the same label budget, and warm starts against training from scratch;
- ``transfer`` (Fig. 7b): one trained committee pulled on other chain lengths beside the
  reference;
- ``speeds`` (Fig. S7): the same model and the reference at other pulling speeds;
- ``convergence``: one or more recipes (named campaign settings) over several model seeds on
  one shared reference: a campaign is one draw, so a recipe is judged by the spread of its
  final errors between seeds, not by one campaign's interval.

The study folder holds its campaigns (``campaigns/<name>/``) or pull folders
(``references/<name>/``, ``nnp/<name>/``) as ordinary run folders, each resumable as a campaign
is, plus ``study.json`` (rows, `rarelearn.study.folder.write_study_json`), ``figures/`` and
``report.html``. Campaign studies compute their reference once (``shared/``) and copy it into
every campaign. Independent work runs side by side on the configured executor.

Entry point: `rarelearn.study.run.run_study` (kept out of this namespace so that the CLI can
list the studies without importing the machinery).
"""

#: The studies `rarelearn study NAME` runs.
STUDIES = ("ensemble", "selection", "transfer", "speeds", "convergence")
#: The studies made of whole campaigns on one shared reference.
CAMPAIGN_STUDIES = ("ensemble", "selection", "convergence")
