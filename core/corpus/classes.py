"""The action class table: every class is a (motion, colour, shape) triple.

Class ``k`` is the same in every corpus (``bouncing_red_circle`` is always class 0), and any
two of the first :data:`MAX_CLASSES` classes differ in at least two of the three attributes.
"""

from __future__ import annotations

from dataclasses import dataclass

SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond")
MOTIONS = ("bouncing", "orbiting", "zigzagging", "pulsing", "sliding")
# Fully saturated colours with hues spread around the wheel (RGB).
COLORS = (
    ("red", (255, 0, 0)),
    ("orange", (255, 128, 0)),
    ("yellow", (255, 230, 0)),
    ("green", (0, 220, 0)),
    ("cyan", (0, 230, 230)),
    ("blue", (30, 80, 255)),
    ("purple", (160, 0, 255)),
    ("pink", (255, 0, 160)),
)
# Class k takes shape k % 6, colour k % 8, motion k % 5. Two classes share two attributes only
# when their indices differ by a common multiple of two of (6, 8, 5): 24, 30 or 40. Up to 24
# classes, every pair therefore differs in at least two of shape, colour and motion.
MAX_CLASSES = 24


class CorpusArgumentError(ValueError):
    """An argument of a corpus function (class count, plan, workers) is out of range."""


@dataclass(frozen=True)
class ActionClass:
    """One action class: what moves, in which colour, and how."""

    label_id: int
    name: str  # "<motion>_<colour>_<shape>", e.g. "bouncing_red_circle"
    motion: str
    color: str
    rgb: tuple[int, int, int]
    shape: str


def _build_class_table() -> tuple[ActionClass, ...]:
    table = []
    for k in range(MAX_CLASSES):
        shape = SHAPES[k % len(SHAPES)]
        color, rgb = COLORS[k % len(COLORS)]
        motion = MOTIONS[k % len(MOTIONS)]
        table.append(ActionClass(k, f"{motion}_{color}_{shape}", motion, color, rgb, shape))
    return tuple(table)


CLASS_TABLE: tuple[ActionClass, ...] = _build_class_table()


def check_num_classes(num_classes: int) -> None:
    """Raises :class:`CorpusArgumentError` unless the table holds ``num_classes`` classes."""
    if not 1 <= num_classes <= MAX_CLASSES:
        raise CorpusArgumentError(
            f"num_classes must be between 1 and {MAX_CLASSES} (the class table's size), "
            f"got {num_classes}"
        )


def class_names(num_classes: int) -> list[str]:
    """The names of the first ``num_classes`` classes; index = ``label_id``."""
    check_num_classes(num_classes)
    return [c.name for c in CLASS_TABLE[:num_classes]]
