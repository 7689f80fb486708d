"""One module validates every label and scribble map: same problem, same message."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from dmsps.data import labels as lb
from dmsps.data.layout import DatasetWriter, cardiac_meta
from dmsps.errors import DataError, DmspsError
from dmsps.io.nifti import Geometry


def test_integer_maps_pass_and_floats_must_be_whole():
    assert lb.as_class_map(np.array([0, 2], np.uint8)).dtype == np.int64
    assert lb.as_class_map(np.array([0.0, 3.0])).tolist() == [0, 3]
    assert lb.as_class_map(np.array([2.9999998]), tolerance=1e-3).tolist() == [3]
    with pytest.raises(lb.LabelError, match="non-integer"):
        lb.as_class_map(np.array([1.5]))
    with pytest.raises(lb.LabelError, match="NaN"):
        lb.as_class_map(np.array([np.nan]))


def test_messages_name_the_file_or_the_array():
    with pytest.raises(DataError, match=r"^x/a.nii.gz: label values 7 outside 0\.\.3$"):
        lb.check_label(np.array([0, 7]), 4, Path("x/a.nii.gz"))
    with pytest.raises(ValueError, match=r"^prediction values 9 outside 0\.\.1"):
        lb.check_label(np.array([9]), 2, "prediction")
    # a LabelError is a DmspsError (CLI: one line) and a ValueError (array callers)
    assert issubclass(lb.LabelError, DmspsError) and issubclass(lb.LabelError, ValueError)


def test_scribbles_allow_classes_and_the_ignore_value_only():
    assert lb.check_scribble(np.array([0, 3, 4]), 4, 4).tolist() == [0, 3, 4]
    with pytest.raises(lb.LabelError, match=r"values 5 outside 0\.\.3 for classes and 4"):
        lb.check_scribble(np.array([0, 5]), 4, 4)


def test_convert_scribble_maps_values_then_unannotated():
    src = np.array([0, 1, 2, 3, 4])  # 0 unannotated, 1..4 = classes 0..3
    out = lb.convert_scribble(src, 4, 0, None, {1: 0, 2: 1, 3: 2, 4: 3})
    assert out.tolist() == [4, 0, 1, 2, 3]
    with pytest.raises(lb.LabelError, match="neither classes"):
        lb.convert_scribble(np.array([7]), 4, 255)


def test_remap_and_value_map_parsing():
    word = np.array([0, 1, 7, 8, 16])
    assert lb.remap(word, {1: 1, 8: 7}).tolist() == [0, 1, 0, 7, 0]
    assert lb.remap(word, {8: 7}, default=None).tolist() == [0, 1, 7, 7, 16]
    assert lb.parse_value_map("4:0,0:4") == {4: 0, 0: 4}
    with pytest.raises(DmspsError, match="OLD:NEW"):
        lb.parse_value_map("4-0")
    with pytest.raises(DmspsError, match="twice"):
        lb.parse_value_map("1:2,1:3")
    assert lb.max_label(np.array([[0, 5], [2, 1]])) == 5
    with pytest.raises(lb.LabelError, match="negative"):
        lb.max_label(np.array([-1, 2]))


@pytest.mark.parametrize(
    ("label", "scribble", "words"),
    [
        (256, None, "values 256 outside 0..3 (case c)"),  # uint8 would have made it 0
        (-1, None, "values -1 outside 0..3"),  # ... and this 255
        (None, 7, "values 7 outside 0..3 for classes and 4 for unannotated"),
    ],
)
def test_dataset_writer_refuses_values_a_uint8_cast_would_wrap(tmp_path, label, scribble, words):
    writer = DatasetWriter(tmp_path / "ds", cardiac_meta("toy"))
    geom = Geometry.from_spacing((2, 3, 3), (1.0, 1.0, 1.0))
    image = np.zeros((2, 3, 3), np.float32)
    lab = None if label is None else np.full((2, 3, 3), label, np.int64)
    scr = None if scribble is None else np.full((2, 3, 3), scribble, np.int64)
    with pytest.raises(DataError, match=re.escape(words)):
        writer.write_case("c", image, geom, label=lab, scribble=scr)
    kind = "labelsTr" if label is not None else "scribblesTr"
    assert not (tmp_path / "ds" / kind).exists() or not any((tmp_path / "ds" / kind).iterdir())
