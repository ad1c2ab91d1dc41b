"""Makes a synthetic annotated video corpus: ``python -m jobs.make_corpus``.

    python -m jobs.make_corpus --output URI --num-videos N --num-classes K --seed S \\
        [--val-fraction F] [--min-duration SEC] [--max-duration SEC] \\
        [--resolutions 320x240,480x360] [--fps 15,24,25,30] [--workers W]

Writes ``URI/videos/<video_id>.mp4`` (H.264, yuv420p), ``URI/annotations.json`` (ActivityNet
v1.3, ``training`` / ``validation`` subsets, class list under ``classes``) and
``URI/manifest.csv``. The same seed and arguments give byte-identical annotations and manifest,
whatever the number of workers. See :mod:`core.corpus`.

measured: 200 videos 2–8 s at 320x240 in 96 s on 2 cores (1,024 s of video, 25,058 frames,
8.5 MB), with the 2 cores shared with a C++ compile (load average 5-7): 61 CPU-seconds in all,
about 2.4 ms per frame, so about 31 s on 2 idle cores. x264 (preset veryfast) takes about
two thirds of it, rendering the rest. Command:

    python -m jobs.make_corpus --output /tmp/c200 --num-videos 200 --num-classes 10 --seed 0 \
        --min-duration 2 --max-duration 8 --resolutions 320x240 --workers 2
"""

from __future__ import annotations

import argparse
import logging
import os

from core import corpus


def _resolution_list(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        width, sep, height = item.strip().lower().partition("x")
        if not sep or not width.isdigit() or not height.isdigit():
            raise argparse.ArgumentTypeError(f"{item!r} is not WIDTHxHEIGHT, e.g. 320x240")
        sizes.append((int(width), int(height)))
    return sizes


def _float_list(text: str) -> list[float]:
    try:
        return [float(item) for item in text.split(",")]
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of numbers"
        ) from err


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.make_corpus", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--output", required=True, help="output URI (local, file://, s3://, ...)")
    parser.add_argument("--num-videos", type=int, required=True)
    parser.add_argument("--num-classes", type=int, required=True, help=f"1 to {corpus.MAX_CLASSES}")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument(
        "--val-fraction", type=float, default=0.2, help="share of validation videos, in [0, 1)"
    )
    parser.add_argument(
        "--min-duration", type=float, default=corpus.DEFAULT_MIN_DURATION, help="seconds"
    )
    parser.add_argument(
        "--max-duration", type=float, default=corpus.DEFAULT_MAX_DURATION, help="seconds"
    )
    parser.add_argument(
        "--resolutions",
        type=_resolution_list,
        default=",".join(f"{w}x{h}" for w, h in corpus.DEFAULT_RESOLUTIONS),
        help="comma-separated WIDTHxHEIGHT sizes, even numbers (default: %(default)s)",
    )
    parser.add_argument(
        "--fps",
        type=_float_list,
        default=",".join(f"{fps:g}" for fps in corpus.DEFAULT_FPS),
        help="comma-separated frame rates (default: %(default)s)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help=f"processes (default: {os.cpu_count()})"
    )
    parser.add_argument(
        "--spatiotemporal",
        action="store_true",
        help="videos of moving people doing AVA actions, with AVA ground truth (the people's "
        "four actions are fixed: --num-classes is not used)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.spatiotemporal:
        from core.corpus.people import make_people_corpus

        written = make_people_corpus(args.output, args.num_videos, args.seed)
        print(f"wrote {args.num_videos} videos with people to {args.output}")
        for name, uri in written.items():
            print(f"  {name}: {uri}")
        return 0
    try:
        summary = corpus.make_corpus(
            args.output,
            args.num_videos,
            args.num_classes,
            args.seed,
            val_fraction=args.val_fraction,
            min_duration=args.min_duration,
            max_duration=args.max_duration,
            resolutions=args.resolutions,
            fps_choices=args.fps,
            workers=args.workers,
        )
    except corpus.CorpusArgumentError as err:
        parser.error(str(err))
    print(
        f"wrote {summary.num_videos} videos ({summary.num_training} training, "
        f"{summary.num_validation} validation, {summary.num_instances} action instances, "
        f"{summary.total_duration:.1f} s of video) to {summary.output_uri} "
        f"in {summary.elapsed:.1f} s"
    )
    print(f"annotations: {summary.annotations_uri}")
    print(f"manifest:    {summary.manifest_uri}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
