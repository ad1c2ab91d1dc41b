"""Training the BMN-with-classification localizer on Ray Train.

* :mod:`core.train.config` the train job's config schema.
* :mod:`core.train.data` annotations + features Parquet -> splits, shards, batches.
* :mod:`core.train.loop` model, optimizer, one epoch, train state, the Ray Train worker loop.
* :mod:`core.train.worker` the worker function Ray ships (light: it reads the rows while
  :mod:`core.train.loop` imports) and the torch backend without a process group for one worker.
* :mod:`core.train.evaluation` validation metrics of a localizer on features in memory.
* :mod:`core.train.final_eval` the run's final task: best.pth export, its evaluation.
* :mod:`core.train.figures` its figures and the training curves, drawn side by side on warm
  Ray actors.
* :mod:`core.train.synthetic_features` features Parquet with known ground truth, for tests
  and benchmarks (no videos).
* :mod:`core.train.trainer` the driver: TorchTrainer, resume, outputs.

Only :mod:`core.train.loop`, :mod:`core.train.worker`, :mod:`core.train.figures` and
:mod:`core.train.trainer` touch Ray (the worker module imports Ray Train's torch backend to
extend it; the others only inside the functions that need it).
"""

from core.train.config import TrainConfig
from core.train.data import TrainDataError

__all__ = ["TrainConfig", "TrainDataError"]
