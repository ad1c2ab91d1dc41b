"""Train detect: videos + AVA ground truth → checkpoints of the detect job's two models.

    python -m jobs.train_detect --config configs/detect/train_demo.py --input VIDEOS \
        --annotations AVA_CSV --output OUT [--cfg-options detector.iterations=100 ...]

Trains the person detector and the action model of the training config's ``detect_config``
(:mod:`core.detect.train`) on the annotated keyframes of VIDEOS (a folder, glob or manifest,
ids as ``jobs.detect`` gives them) and writes ``OUT/detector.pth``, ``OUT/action.pth`` (what
``jobs.detect`` takes as ``detector.checkpoint`` / ``action.checkpoint``), ``OUT/history.json``
(every step's loss) and ``OUT/config.py``. Small models on CPU, in one process (no Ray).
Exit codes: 0 done, 1 training failed, 2 bad config or unusable input.
"""

from __future__ import annotations

import argparse
import logging
import sys

from core import config, runtime
from core.detect.train import TrainDetectConfig, run_training
from core.detect.train_data import TrainDataError
from core.eval.ava import AVAInputError

log = logging.getLogger("jobs.train_detect")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    config.add_config_args(parser)
    parser.add_argument("--input", required=True, help="videos: directory, glob or manifest")
    parser.add_argument("--annotations", required=True, help="AVA CSV ground truth")
    parser.add_argument("--output", required=True, help="output URI for the checkpoints")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from core.pipeline.inputs import InputError, list_inputs

    args = parse_args(argv)
    runtime.setup_logging()
    try:
        cfg, raw = config.load(args.config, TrainDetectConfig, args.cfg_options)
        videos = list_inputs(args.input)
        summary = run_training(cfg, videos, args.annotations, args.output, raw.pretty_text)
    except (config.ConfigError, InputError, TrainDataError, AVAInputError, FileNotFoundError) as e:
        log.error("%s", e)
        return 2
    except Exception:
        log.exception("training failed")
        return 1
    out = args.output.rstrip("/")
    lines = [f"trained on {summary['num_keyframes']} keyframes of {summary['num_videos']} videos "
             f"in {summary['seconds']:.0f} s"]  # fmt: skip
    for kind in ("detector", "action"):
        s = summary[kind]
        lines.append(f"  {kind}: {s['iterations']} steps in {s['seconds']:.0f} s, loss "
                     f"{s['loss_first_mean']:.3f} -> {s['loss_last_mean']:.3f}: {s['checkpoint']}")  # fmt: skip
    lines.append(f"  detect with: python -m jobs.detect --config {cfg.detect_config} ... "
                 f"--cfg-options detector.checkpoint={out}/detector.pth "
                 f"action.checkpoint={out}/action.pth")  # fmt: skip
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
