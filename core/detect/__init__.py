"""Spatio-temporal action detection (MMAction2's AVA demo as a batch job).

* :mod:`~core.detect.config` the job's config schema;
* :mod:`~core.detect.frames` streaming decode of keyframes and their clips;
* :mod:`~core.detect.models` the mmdet person detector and the MMAction2 action model, batched;
* :mod:`~core.detect.stages` the Ray Data stages;
* :mod:`~core.detect.schema` the detections schema and in-flight columns;
* :mod:`~core.detect.writer` a video's rows together, its tables committed;
* :mod:`~core.detect.render` MP4s with boxes and labels, as the demo draws them;
* :mod:`~core.detect.driver` the pipeline.
"""
