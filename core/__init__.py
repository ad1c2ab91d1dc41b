"""The library behind the jobs: models, video, features, storage, evaluation, pipelines."""

from core import compat as _compat  # noqa: F401  (upstream shims before any mmaction import)
