"""Placeholder for mmaction2's DRN (``mmaction.models.localizers.drn.drn``).

The mmaction2 1.2.0 wheel on PyPI ships no ``mmaction/models/localizers/drn`` package
(open-mmlab/mmaction2#2714), yet ``mmaction/models/localizers/__init__.py`` imports
``.drn.drn.DRN``, so ``import mmaction.models`` fails. This module stands in for it: ``DRN`` is
registered under its upstream name and raises a clear error when built; every other model works.

One source, two uses (see ``core.compat``): ``make setup`` copies this file into the installed
``mmaction/models/localizers/drn/`` (so MMAction2's own tools import), and ``core.compat`` loads
it in memory where an environment was set up differently. It imports nothing from this project.
Delete it when the pin moves to an mmaction2 wheel that ships DRN.
"""

from mmaction.registry import MODELS

MESSAGE = (
    "DRN is not available: the mmaction2 1.2.0 wheel on PyPI does not ship "
    "mmaction/models/localizers/drn (open-mmlab/mmaction2#2714). Install mmaction2 from "
    "source to use DRN."
)


@MODELS.register_module(force=True)
class DRN:
    """Stands in for mmaction2's DRN, which the 1.2.0 wheel does not ship."""

    def __init__(self, *args, **kwargs) -> None:
        raise RuntimeError(MESSAGE)
