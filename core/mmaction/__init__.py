"""What MMAction2's own tools import: ``custom_imports = dict(imports=['core.mmaction'])``.

Importing this package registers, in MMAction2's registries, the model ``BMNwActionCls``
(:mod:`core.models`) and the pipeline transform ``GenerateSegmentLabels``, which gives the
model's action head its per-segment labels. See ``configs/mmaction2/`` for a config that runs
with MMAction2's ``tools/train.py`` and ``tools/test.py``.

``drn_placeholder.py`` is not imported here: it is the file that ``make setup`` installs as
mmaction's missing ``drn`` module (see :mod:`core.compat`).
"""

import core.models.bmn  # noqa: F401  (registers BMNwActionCls)
from core.mmaction.transforms import GenerateSegmentLabels

__all__ = ["GenerateSegmentLabels"]
