"""VOC XML and COCO JSON readers on small fixture datasets written into tmp_path, and open_dataset's spec parsing."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ssdtrt.data import open_dataset
from ssdtrt.data.coco import COCODataset
from ssdtrt.data.voc import VOC_CLASSES, VOCDataset
from ssdtrt.core.errors import DatasetError

# --------------------------------------------------------------------------------------------------------- VOC

VOC_OBJECTS = {  # id -> (width, height, [(name, xmin, ymin, xmax, ymax, difficult)]) in VOC's 1-based pixels
    "000001": (64, 48, [("dog", 1, 1, 64, 48, 0), ("person", 10, 5, 20, 30, 1)]),
    "000002": (50, 40, [("tvmonitor", 5, 6, 25, 16, 0)]),
    "000003": (40, 30, []),
}


def _voc_xml(image_id: str, w: int, h: int, objects) -> str:
    objs = "".join(
        f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>{d}</difficult>"
        f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for n, x0, y0, x1, y1, d in objects
    )
    return (
        f"<annotation><folder>VOC2007</folder><filename>{image_id}.jpg</filename>"
        f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objs}</annotation>"
    )


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    root = tmp_path / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    for image_id, (w, h, objects) in VOC_OBJECTS.items():
        image = np.full((h, w, 3), 40, np.uint8)
        image[:, :, 2] = 200  # BGR on disk: red channel high -> the reader must return R=200 first
        assert cv2.imwrite(str(root / "JPEGImages" / f"{image_id}.jpg"), image)
        (root / "Annotations" / f"{image_id}.xml").write_text(_voc_xml(image_id, w, h, objects))
    (root / "ImageSets/Main/train.txt").write_text("000001\n000003\n")
    (root / "ImageSets/Main/val.txt").write_text("000002\n")
    (root / "ImageSets/Main/dog_train.txt").write_text("000001  1\n")  # per-class lists are not splits
    return root


def test_voc_reader_boxes_labels_difficult(voc_root: Path) -> None:
    ds = open_dataset(f"voc:{voc_root}", "train")
    assert isinstance(ds, VOCDataset) and len(ds) == 2 and ds.class_names == VOC_CLASSES and ds.num_classes == 21
    s = ds[0]
    assert s.image.shape == (48, 64, 3) and s.image.dtype == np.uint8
    assert abs(int(s.image[0, 0, 0]) - 200) <= 3 and abs(int(s.image[0, 0, 2]) - 40) <= 3, "RGB order"
    # 1-based inclusive -> continuous: (xmin - 1, ymin - 1, xmax, ymax); the first box covers the whole image
    np.testing.assert_array_equal(s.boxes_xyxy, [[0, 0, 64, 48], [9, 4, 20, 30]])
    assert s.boxes_xyxy.dtype == np.float32
    np.testing.assert_array_equal(s.labels, [VOC_CLASSES.index("dog") + 1, VOC_CLASSES.index("person") + 1])
    np.testing.assert_array_equal(s.difficult, [False, True])
    assert s.image_id == 0 and s.path is not None and s.path.endswith("000001.jpg")
    empty = ds[1]
    assert empty.boxes_xyxy.shape == (0, 4) and empty.labels.shape == (0,) and empty.difficult.shape == (0,)
    val = open_dataset(f"voc:{voc_root}", "val")
    assert len(val) == 1 and val[0].labels.tolist() == [20]
    # a VOCdevkit folder holding one VOC20xx folder is accepted too; size keeps the first images
    assert len(open_dataset(f"voc:{voc_root.parent}", "train", size=1)) == 1


def test_voc_errors_name_the_file(voc_root: Path) -> None:
    with pytest.raises(DatasetError, match=r"test\.txt: split file not found.*train, val"):
        open_dataset(f"voc:{voc_root}", "test")
    with pytest.raises(DatasetError, match="not a VOC folder"):
        open_dataset(f"voc:{voc_root / 'JPEGImages'}")
    (voc_root / "JPEGImages" / "000002.jpg").unlink()
    with pytest.raises(DatasetError, match=r"000002\.jpg: image file not found"):
        open_dataset(f"voc:{voc_root}", "val")
    (voc_root / "Annotations" / "000001.xml").write_text("<annotation><object><name>dog</name>")
    with pytest.raises(DatasetError, match=r"000001\.xml: malformed XML"):
        open_dataset(f"voc:{voc_root}", "train")
    (voc_root / "Annotations" / "000001.xml").write_text(_voc_xml("000001", 9, 9, [("unicorn", 1, 1, 5, 5, 0)]))
    with pytest.raises(DatasetError, match=r"000001\.xml: unknown VOC class name\(s\) 'unicorn'"):
        open_dataset(f"voc:{voc_root}", "train")
    (voc_root / "Annotations" / "000001.xml").write_text(
        "<annotation><object><name>dog</name><bndbox><xmin>1</xmin></bndbox></object></annotation>"
    )
    with pytest.raises(DatasetError, match=r"000001\.xml: malformed annotation: <bndbox> has no <ymin>"):
        open_dataset(f"voc:{voc_root}", "train")
    (voc_root / "Annotations" / "000001.xml").unlink()
    with pytest.raises(DatasetError, match=r"000001\.xml: annotation file not found"):
        open_dataset(f"voc:{voc_root}", "train")


def test_voc_unreadable_image(voc_root: Path) -> None:
    (voc_root / "JPEGImages" / "000002.jpg").write_bytes(b"not a jpeg")
    ds = open_dataset(f"voc:{voc_root}", "val")
    with pytest.raises(DatasetError, match=r"000002\.jpg: cannot decode image"):
        ds[0]


# -------------------------------------------------------------------------------------------------------- COCO


def _coco_fixture(tmp_path: Path) -> tuple[Path, Path, dict]:
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    images = [
        {"id": 42, "file_name": "a.png", "width": 60, "height": 40},
        {"id": 7, "file_name": "b.png", "width": 30, "height": 50},
        {"id": 9, "file_name": "c.png", "width": 20, "height": 20},  # no annotations: kept
    ]
    for im in images:
        assert cv2.imwrite(str(images_dir / im["file_name"]), np.zeros((im["height"], im["width"], 3), np.uint8))
    data = {
        "images": images,
        "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
        "annotations": [
            {"id": 1, "image_id": 42, "category_id": 18, "bbox": [10.5, 5.0, 20.0, 10.0], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [0, 0, 30, 50], "iscrowd": 1},
            {"id": 3, "image_id": 42, "category_id": 3, "bbox": [1, 2, 3, 4]},
            {"id": 4, "image_id": 42, "category_id": 1, "bbox": [5, 5, 0, 7], "iscrowd": 0},  # zero width: dropped
        ],
    }
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps(data))
    return images_dir, ann, data


def test_coco_reader_mapping_boxes_crowd(tmp_path: Path) -> None:
    images_dir, ann, _ = _coco_fixture(tmp_path)
    ds = open_dataset(f"coco:{images_dir}:{ann}", "val")
    assert isinstance(ds, COCODataset) and len(ds) == 3
    assert ds.category_ids == (1, 3, 18) and ds.class_names == ("person", "car", "dog") and ds.num_classes == 4
    assert ds.label_to_category_id == {1: 1, 2: 3, 3: 18}
    a = ds[0]
    assert a.image_id == 42 and a.image.shape == (40, 60, 3) and a.path.endswith("a.png")
    np.testing.assert_allclose(a.boxes_xyxy, [[10.5, 5, 30.5, 15], [1, 2, 4, 6]])
    np.testing.assert_array_equal(a.labels, [3, 2])  # dog -> 3, car -> 2 (annotation order kept)
    np.testing.assert_array_equal(a.difficult, [False, False])
    b = ds[1]
    assert b.image_id == 7
    np.testing.assert_array_equal(b.boxes_xyxy, [[0, 0, 30, 50]])
    np.testing.assert_array_equal(b.labels, [1])
    np.testing.assert_array_equal(b.difficult, [True])  # iscrowd -> difficult
    c = ds[2]
    assert c.image_id == 9 and c.boxes_xyxy.shape == (0, 4) and c.labels.shape == (0,)
    assert len(open_dataset(f"coco:{images_dir}:{ann}", size=2)) == 2
    assert [ds[i].image_id for i in range(-1, 0)] == [9]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("annotations"), "missing or non-list 'annotations'"),
        (lambda d: d["annotations"][0].update(category_id=99), "unknown category_id 99"),
        (lambda d: d["annotations"][0].update(image_id=1234), "unknown image_id 1234"),
        (lambda d: d["annotations"][0].pop("bbox"), "missing key 'bbox'"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, -3, 4]), "negative bbox"),
        (lambda d: d["images"].append(dict(d["images"][0])), "duplicate image ids"),
    ],
)
def test_coco_malformed_errors_name_the_file(tmp_path: Path, mutate, message: str) -> None:
    images_dir, ann, data = _coco_fixture(tmp_path)
    mutate(data)
    ann.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"instances\.json: malformed COCO file: .*" + message):
        COCODataset(images_dir, ann)


def test_coco_file_errors(tmp_path: Path) -> None:
    images_dir, ann, _ = _coco_fixture(tmp_path)
    (images_dir / "b.png").unlink()
    with pytest.raises(DatasetError, match=r"b\.png: image file not found \(listed in .*instances\.json\)"):
        COCODataset(images_dir, ann)
    ann.write_text('{"images": [')
    with pytest.raises(DatasetError, match=r"instances\.json: malformed JSON"):
        COCODataset(images_dir, ann)
    with pytest.raises(DatasetError, match=r"nope\.json: annotation file not found"):
        COCODataset(images_dir, tmp_path / "nope.json")
    with pytest.raises(DatasetError, match=r"missing_dir: images folder not found"):
        open_dataset(f"coco:{tmp_path / 'missing_dir'}:{ann}")


def test_unknown_spec_lists_accepted_forms() -> None:
    for spec in ("imagenet", "voc", "coco:onlyone", "synthetic:3"):
        with pytest.raises(DatasetError, match="synthetic.*voc:PATH.*coco:IMAGES_DIR:ANNOTATIONS_JSON"):
            open_dataset(spec)
    with pytest.raises(DatasetError, match="size must be >= 0"):
        open_dataset("synthetic", size=-1)
