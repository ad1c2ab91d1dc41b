"""Ground truth in both accepted formats, subsets, class order and id matching."""

from __future__ import annotations

import numpy as np
import pytest

from core import storage
from core.eval import annotations as A

OFFICIAL = {
    "version": "VERSION 1.3",
    "classes": ["Zumba", "Archery", "Bowling"],
    "database": {
        "abc": {
            "subset": "validation",
            "duration": 120.5,
            "fps": 30.0,
            "annotations": [
                {"segment": [1.5, 10.0], "label": "Archery"},
                {"segment": [20, 40], "label": "Zumba"},
            ],
        },
        "def": {"subset": "training", "duration": 60.0, "annotations": []},
        "ghi": {
            "subset": "validation",
            "duration": 30.0,
            "annotations": [{"segment": [0.0, 5.0], "label": "Surfing"}],
        },
    },
}

MMACTION = {
    "v_abc": {
        "duration_second": 120.5,
        "duration_frame": 3615,
        "feature_frame": 3600,
        "annotations": [{"segment": [1.5, 10.0], "label": "Archery"}],
    },
    "v_xyz": {
        "duration_second": 10.0,
        "duration_frame": 300,
        "feature_frame": 288,
        "annotations": [],
    },
}


@pytest.mark.unit
def test_official_format_reads_records(tmp_path):
    uri = str(tmp_path / "anet.json")
    storage.write_json(uri, OFFICIAL)
    annos, classes = A.load_annotations_and_classes(uri)
    assert list(annos) == ["abc", "def", "ghi"]
    abc = annos["abc"]
    assert abc.duration == 120.5 and abc.subset == "validation"
    assert abc.segments_N2.dtype == np.float64 and abc.segments_N2.shape == (2, 2)
    np.testing.assert_array_equal(abc.segments_N2, [[1.5, 10.0], [20.0, 40.0]])
    assert abc.labels == ["Archery", "Zumba"]
    assert abc.extra == {"fps": 30.0}
    assert annos["def"].segments_N2.shape == (0, 2)
    assert classes == ["Zumba", "Archery", "Bowling"]


@pytest.mark.unit
def test_mmaction_format_reads_records(tmp_path):
    uri = "file://" + str(tmp_path / "anet_anno_val.json")
    storage.write_json(uri, MMACTION)
    annos = A.load_annotations(uri)
    assert A.detect_format(MMACTION) == A.FORMAT_MMACTION
    assert set(annos) == {"v_abc", "v_xyz"}
    assert annos["v_abc"].subset is None
    assert annos["v_abc"].duration == 120.5
    assert annos["v_abc"].extra == {"feature_frame": 3600, "duration_frame": 3615}
    assert annos["v_xyz"].segments_N2.shape == (0, 2) and annos["v_xyz"].labels == []


@pytest.mark.unit
@pytest.mark.parametrize("bad", [[1, 2], {}, {"a": {"annotations": []}}, {"database": [1]}])
def test_unknown_format_is_a_clear_error(bad):
    with pytest.raises(A.AnnotationFormatError, match="neither official ActivityNet"):
        A.parse_annotations(bad)


@pytest.mark.unit
def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="annotations not found"):
        A.load_annotations(str(tmp_path / "nope.json"))


@pytest.mark.unit
def test_class_names_uses_classes_list_then_appends_unknown_labels():
    annos = A.parse_annotations(OFFICIAL)
    assert A.class_names(annos) == ["Archery", "Surfing", "Zumba"]
    assert A.class_names(annos, OFFICIAL["classes"]) == ["Zumba", "Archery", "Bowling", "Surfing"]


@pytest.mark.unit
def test_filter_subset():
    annos = A.parse_annotations(OFFICIAL)
    assert list(A.filter_subset(annos, "validation")) == ["abc", "ghi"]
    assert list(A.filter_subset(annos, None)) == ["abc", "def", "ghi"]
    with pytest.raises(A.AnnotationError, match="subsets present"):
        A.filter_subset(annos, "testing")
    with pytest.raises(A.AnnotationError, match="no subsets"):
        A.filter_subset(A.parse_annotations(MMACTION), "validation")


@pytest.mark.unit
def test_resolve_ids_exact_first_then_strip_or_add_prefix():
    official = {"abc": 1, "v_both": 2, "both": 3}
    assert A.resolve_ids(["abc", "v_abc", "v_both", "zzz"], official) == {
        "abc": "abc",
        "v_abc": "abc",
        "v_both": "v_both",  # exact match wins over stripping
    }
    assert A.resolve_ids(["abc", "v_abc"], {"v_abc": 1}) == {"abc": "v_abc", "v_abc": "v_abc"}
