"""The image gate on a bad-input corpus made from real tiles: every file is trained on or quarantined."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from core.errors import DataCheckFailed
from data_checks.images.gate import ChecksConfig, check_image_dataset
from tests.fixtures.data import CLASSES


def _first(folder: Path, k: int = 0) -> Path:
    return sorted(folder.glob("*.jpg"))[k]


def make_bad_corpus(root: Path) -> dict[str, str]:
    """Plant one bad item per rule; returns {file name: rule it must break}."""
    crack, free = root / "MT_Crack" / "Imgs", root / "MT_Free" / "Imgs"
    source = _first(free)
    raw = source.read_bytes()
    (crack / "truncated.jpg").write_bytes(raw[: len(raw) // 3])
    (crack / "empty.jpg").write_bytes(b"")
    png = io.BytesIO()
    Image.open(source).save(png, format="PNG")
    (crack / "png_named.jpg").write_bytes(png.getvalue())
    Image.open(source).convert("CMYK").save(crack / "cmyk.jpg", quality=95)
    Image.new("L", (1, 1), 128).save(crack / "one_pixel.jpg")
    # A near-copy of a Free tile (re-encoded) filed as Crack: two labels on one photo.
    Image.open(_first(free, 1)).save(crack / "copy_of_free.jpg", quality=90)
    scratch = root / "MT_Scratch" / "Imgs"
    scratch.mkdir(parents=True)
    shutil.copy2(_first(crack, 0), scratch / "unknown_class.jpg")
    return {
        "truncated.jpg": "decode",
        "empty.jpg": "decode",
        "png_named.jpg": "format_mismatch",
        "cmyk.jpg": "mode",
        "one_pixel.jpg": "size",
        "copy_of_free.jpg": "duplicate_label_conflict",
        "unknown_class.jpg": "label",
    }


def _config(tmp_path: Path, **kw) -> ChecksConfig:
    base = {
        "classes": tuple(CLASSES),
        "quarantine_dir": tmp_path / "quarantine",
        "cache_dir": tmp_path / "cache",
        "max_error_fraction": 0.2,
    }
    return ChecksConfig(**(base | kw))


def test_every_bad_item_gets_its_own_message_and_nothing_is_lost(tile_subset, tmp_path):
    planted = make_bad_corpus(tile_subset)
    inputs = {p.name: p for p in tile_subset.rglob("*.jpg")}
    checked = check_image_dataset(_config(tmp_path), tile_subset, tmp_path / "out")

    by_name = {}
    for finding in checked.findings:
        if finding.path:
            by_name.setdefault(Path(finding.path).name, set()).add(finding.rule)
    for name, rule in planted.items():
        assert rule in by_name.get(name, set()), f"{name}: expected [{rule}], got {by_name.get(name)}"

    quarantined = {Path(item.original).name for item in checked.quarantined}
    assert set(planted) <= quarantined
    trained = {Path(p).name for p in checked.manifest["path"]}
    assert trained | quarantined == set(inputs), "a file was neither trained on nor quarantined"
    assert not trained & quarantined
    for item in checked.quarantined:
        kept = Path(item.kept_at)
        assert kept.exists() and Path(item.original).exists()  # excluded: the data folder is left as it is
        entry = json.loads((kept.parent / "entry.json").read_text())
        assert entry["findings"] and entry["relpath"].endswith(Path(item.original).name)
        assert not Path(entry["relpath"]).is_absolute() and not Path(entry["dataset_root"]).is_absolute()
    assert (tmp_path / "quarantine" / "quarantine_log.csv").exists()
    assert (checked.docs_dir / "index.html").exists()  # GX Data Docs rendered


def test_messages_say_what_was_expected_and_found(tile_subset, tmp_path):
    make_bad_corpus(tile_subset)
    checked = check_image_dataset(_config(tmp_path), tile_subset, tmp_path / "out")
    text: dict[str, str] = {}
    for f in checked.findings:
        if f.path:
            text[Path(f.path).name] = text.get(Path(f.path).name, "") + f.describe() + "\n"
    assert "shorter side must be >= 32 px; found min_side=1" in text["one_pixel.jpg"]
    assert "'CMYK'" in text["cmyk.jpg"]
    assert "label must be one of" in text["unknown_class.jpg"] and "MT_Scratch" in text["unknown_class.jpg"]
    assert "cannot decode" in text["empty.jpg"]
    # what a person reads: no numpy or Python object reprs (findings: np.False_, <_io.BytesIO object at 0x...>)
    assert "format does not match suffix .jpg: PNG data" in text["png_named.jpg"]
    for message in text.values():
        assert "np." not in message and "BytesIO" not in message and "object at 0x" not in message, message


def test_too_many_bad_items_stop_the_flow_and_move_nothing(tile_subset, tmp_path):
    make_bad_corpus(tile_subset)
    before = sorted(tile_subset.rglob("*"))
    with pytest.raises(DataCheckFailed, match="checks.max_error_fraction=1%, so nothing was excluded") as err:
        check_image_dataset(_config(tmp_path, max_error_fraction=0.01), tile_subset, tmp_path / "out")
    assert "--set checks.max_error_fraction=" in str(err.value) and "one_pixel.jpg" in str(err.value)
    assert sorted(tile_subset.rglob("*")) == before


def test_a_class_below_the_minimum_stops_the_flow(tile_subset, tmp_path):
    for extra in sorted((tile_subset / "MT_Fray" / "Imgs").glob("*"))[8:]:
        extra.unlink()  # 4 Fray images left
    with pytest.raises(DataCheckFailed, match="MT_Fray"):
        check_image_dataset(_config(tmp_path), tile_subset, tmp_path / "out")


def test_near_copies_never_straddle_groups(tile_subset, tmp_path):
    free = tile_subset / "MT_Free" / "Imgs"
    twin = free / "exp9_num_99999999.jpg"  # far from every frame number: only pixels can join it
    Image.open(_first(free, 2)).save(twin, quality=92)
    checked = check_image_dataset(_config(tmp_path), tile_subset, tmp_path / "out")
    groups = dict(
        zip(checked.manifest["path"].map(lambda p: Path(p).name), checked.manifest["group"], strict=True)
    )
    assert groups[twin.name] == groups[_first(free, 2).name]


def test_annotator_manifest_reports_agreement_and_quarantines_ties(tile_subset, tmp_path):
    import pandas as pd

    images = sorted(tile_subset.rglob("*.jpg"))
    tie = len(images) // 2  # far from image 0: the first two Blowhole shots are near-copies of each other
    rows = []
    for i, image in enumerate(images):
        label = image.parts[-3]
        for annotator in ("day-shift", "night-shift", "qa"):
            given = label
            if i == 0 and annotator == "day-shift":  # one of three says otherwise: majority wins
                given = "MT_Crack" if label != "MT_Crack" else "MT_Free"
            if i == tie:  # three different answers: no majority
                given = {"day-shift": "MT_Free", "night-shift": "MT_Crack", "qa": "MT_Break"}[annotator]
            rows.append({"path": str(image), "label": given, "annotator": annotator})
    csv = tmp_path / "labels.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    checked = check_image_dataset(_config(tmp_path), csv, tmp_path / "out")
    assert checked.agreement is not None and 0.9 < checked.agreement.fleiss_overall < 1.0
    assert set(checked.agreement.disagreements["path"]) == {str(images[0]), str(images[tie])}
    assert [Path(q.original).name for q in checked.quarantined] == [images[tie].name]  # the tie
    assert len(checked.manifest) == len(images) - 1


def test_bounds_follow_the_line_so_a_bright_product_passes_and_bad_frames_still_do_not(tile_subset, tmp_path):
    """Finding: fixed bounds tuned on tiles (mean grey <= 245) quarantined valid bright steel images (246).
    Here every tile is made a bright product (mean grey ~246, as a white part under strong light)."""
    import numpy as np

    for path in tile_subset.rglob("*.jpg"):
        grey = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
        Image.fromarray(np.clip(grey * 0.2 + 225, 0, 255).astype(np.uint8)).save(path, quality=95)
    free = tile_subset / "MT_Free" / "Imgs"
    source = np.asarray(Image.open(_first(free)).convert("L"), dtype=np.float32)
    Image.fromarray(np.full(source.shape, 255, np.uint8)).save(free / "saturated.jpg", quality=95)
    Image.fromarray((source * 0.005).astype(np.uint8)).save(free / "lamp_off.jpg", quality=95)

    checked = check_image_dataset(_config(tmp_path), tile_subset, tmp_path / "out")

    quarantined = {Path(item.original).name for item in checked.quarantined}
    reasons = [(Path(f.path).name, f.rule) for f in checked.findings if f.path and f.severity == "error"]
    assert quarantined == {"saturated.jpg", "lamp_off.jpg"}, reasons
    said = {Path(f.path).name: f.describe() for f in checked.findings if f.rule == "brightness"}
    assert "from this data set's spread" in said["saturated.jpg"]

    pinned = _config(tmp_path, rules={"max_brightness": 245.0})  # a bound set in config is kept as it is
    strict = check_image_dataset(pinned, tile_subset, tmp_path / "pinned")
    assert len(strict.quarantined) > len(checked.quarantined)
