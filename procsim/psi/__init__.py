"""Pressure stall information (kernel/sched/psi.c).

  group.py     a psi_group: stall totals per state, the averages and
               their update every psi_period (update_averages, calc_avgs)
  accounting.py  the task states PSI counts, per CPU and cgroup, as the
               clock moves (psi_group_change's test_state, then the
               per-CPU times weighted by non-idle time, get_recent_times)
  show.py      psi_show(): the some/full lines
"""

from procsim.psi.accounting import PsiState  # noqa: F401
from procsim.psi.group import PsiGroup  # noqa: F401
