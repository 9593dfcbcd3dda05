"""The NUS-WIDE folder checker (python -m deephash.data.check_nuswide)."""

import numpy as np

from deephash.data import check_nuswide


def _write(root, name, rows):
    (root / name).write_text(
        "".join(f"{p} {' '.join(str(int(v)) for v in lab)}\n" for p, lab in rows)
    )


def _rows(n, width, seed, prefix):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, width)) < 0.3).astype(int)
    labels[np.arange(n), rng.integers(0, width, n)] = 1
    return [(f"{prefix}/{i:04d}.jpg", labels[i]) for i in range(n)]


def _touch(root, rows, skip=()):
    for i, (p, _) in enumerate(rows):
        if i not in skip:
            (root / p).parent.mkdir(parents=True, exist_ok=True)
            (root / p).write_bytes(b"\xff\xd8jpeg")


def test_given_lists_report_missing_images_with_their_list_line(tmp_path, capsys):
    db, q, tr = _rows(12, 21, 0, "db"), _rows(4, 21, 1, "q"), _rows(5, 21, 2, "tr")
    for name, rows in (("database.txt", db), ("test.txt", q), ("train.txt", tr)):
        _write(tmp_path, name, rows)
        _touch(tmp_path, rows, skip={1} if name == "test.txt" else ())
    (tmp_path / "db" / "0003.jpg").write_bytes(b"")
    report = check_nuswide.check(str(tmp_path))
    assert report.mode == "given" and not report.ok and report.listed_images == 21
    assert report.lists == {"train.txt": 5, "test.txt": 4, "database.txt": 12}
    assert report.missing_images == [
        (str(tmp_path / "q" / "0001.jpg"), f"{tmp_path / 'test.txt'}, line 2")
    ]
    assert report.empty_images == [str(tmp_path / "db" / "0003.jpg")]
    assert check_nuswide.main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "missing: 1" in out and "q/0001.jpg" in out and "test.txt, line 2" in out


def test_complete_full_list_with_81_labels_is_ok_and_counts_the_21_kept(tmp_path):
    rows = _rows(30, 81, 3, "img")
    _write(tmp_path, "all.txt", rows)
    _touch(tmp_path, rows)
    report = check_nuswide.check(str(tmp_path), query_per_class=0, train_per_class=1)
    assert (
        report.ok
        and report.mode == "full"
        and report.lists == {"all.txt": 30}
        and not report.missing_images
    )
    assert (
        len(report.label_counts) == 21 and check_nuswide.main([str(tmp_path), "--no_images"]) == 1
    )  # DSRH needs 600/label


def test_missing_lists_unreadable_lists_and_short_labels_are_problems(tmp_path):
    assert "no list files" in check_nuswide.check(str(tmp_path)).problems[0]
    assert "does not exist" in check_nuswide.check(str(tmp_path / "absent")).problems[0]
    _write(tmp_path, "test.txt", _rows(3, 21, 0, "q"))
    report = check_nuswide.check(str(tmp_path), check_images=False)
    assert report.lists["train.txt"] == "MISSING" and report.lists["database.txt"] == "MISSING"
    (tmp_path / "test.txt").write_text("a.jpg 0 1 2\n")
    report = check_nuswide.check(str(tmp_path), check_images=False)
    assert report.lists["test.txt"].startswith("UNREADABLE") and not report.ok
    for name in ("test.txt",):
        (tmp_path / name).unlink()
    _write(tmp_path, "all.txt", _rows(10, 21, 4, "x"))
    report = check_nuswide.check(str(tmp_path), check_images=False)
    assert any("fewer than 600 images" in p for p in report.problems)
