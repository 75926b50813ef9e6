"""Stage 3, Direct Conditional Distillation (DCD): one forward per block from a multi-step teacher.

References: ECHO Alg. 1 and sections 4.2-4.3 (``../shared/ECHO_NOTES.md`` section 3).

- :mod:`model.distill.config`: the recipe, ``DCDConfig``;
- :mod:`model.distill.rollouts`: phase 1, the teacher's rollouts as shards of targets, and the
  student-prefix round's (not in ECHO);
- :mod:`model.distill.loss`: phase 2's objective, the student against those targets;
- :mod:`model.distill.loop`: the run that ties them together, resumable at every step.
"""

from model.distill.config import DCDConfig
from model.distill.loop import distill

__all__ = ["DCDConfig", "distill"]
