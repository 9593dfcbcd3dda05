"""Check a NUS-WIDE folder before training: ``python -m deephash.data.check_nuswide ROOT``.

NUS-WIDE stays list-file based (its Flickr images are not redistributed, so no tool can
fetch them): the layout is the one of ``deephash.data.listfile`` (docs/data.md)::

    ROOT/
      train.txt  test.txt  database.txt   the given split (all three), or
      all.txt                             one full list split with the seeded protocol
      <images as named in the lists, relative to ROOT or to --image_root>

Each list line is ``relative/path.jpg`` followed by 21 (or 81: the 21 most frequent are
kept) 0/1 labels. The checker reports which lists are present and readable, how many
listed images are missing (with the first ones and the list line naming them), empty
files, images without any of the 21 labels (dropped by the loader) and, for a full list,
whether every label has enough images for the DSRH protocol (100 queries + 500 training
images per label). It exits with status 1 when something would stop the loader.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from deephash.data.listfile import FULL_LIST, GIVEN_LISTS, SPECS, read_list, top_labels


@dataclass
class Report:
    """What :func:`check` found; ``ok`` is False when the loader would stop."""

    root: str
    mode: str = "none"  # "given", "full" or "none"
    lists: dict = field(default_factory=dict)  # list file -> number of lines, or an error text
    missing_images: list = field(default_factory=list)  # (image path, "list, line n")
    empty_images: list = field(default_factory=list)
    listed_images: int = 0
    without_labels: int = 0
    label_counts: list | None = None
    problems: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self, show: int = 10) -> str:
        lines = [
            f"NUS-WIDE at {self.root}: " + ("OK" if self.ok else f"{len(self.problems)} problem(s)")
        ]
        for name, value in self.lists.items():
            lines.append(f"  {name}: {value if isinstance(value, str) else f'{value} lines'}")
        lines.append(
            f"  listed images: {self.listed_images}, missing: {len(self.missing_images)}, "
            f"empty: {len(self.empty_images)}, without any of the 21 labels: {self.without_labels}"
        )
        for path, where in self.missing_images[:show]:
            lines.append(f"    missing {path}  ({where})")
        if len(self.missing_images) > show:
            lines.append(f"    ... and {len(self.missing_images) - show} more")
        for path in self.empty_images[:show]:
            lines.append(f"    empty {path}")
        if self.label_counts is not None:
            lines.append(f"  images per label (21 kept): {self.label_counts}")
        lines.extend(f"  problem: {p}" for p in self.problems)
        return "\n".join(lines)


def check(
    root: str,
    image_root: str | None = None,
    query_per_class: int = 100,
    train_per_class: int = 500,
    check_images: bool = True,
) -> Report:
    """Inspect ``root`` (see module docstring); never raises for a bad folder, reports instead."""
    spec = SPECS["nuswide21"]
    root = os.path.abspath(os.path.expanduser(root))
    report = Report(root)
    if not os.path.isdir(root):
        report.problems.append(f"{root} does not exist")
        return report
    image_root = os.path.abspath(os.path.expanduser(image_root)) if image_root else root
    widths = (spec.num_classes, *spec.accept_labels)
    names = _list_names(root, report)
    if names is None:
        return report
    all_labels, seen = [], set()
    for name in names:
        path = os.path.join(root, name)
        if os.path.isfile(path):
            _check_list(path, name, widths, image_root, check_images, report, all_labels, seen)
    report.listed_images = len(seen)
    if report.missing_images:
        report.problems.append(
            f"{len(report.missing_images)} listed images are missing (under {image_root})"
        )
    if report.empty_images:
        report.problems.append(f"{len(report.empty_images)} images are empty files")
    if all_labels:
        _check_label_counts(np.concatenate(all_labels), query_per_class, train_per_class, report)
    return report


def _list_names(root: str, report: Report) -> list[str] | None:
    """The list files to read (given splits, or the full list); None when there are none.
    Sets ``report.mode`` and notes missing given lists."""
    given = [name for name in GIVEN_LISTS.values() if os.path.isfile(os.path.join(root, name))]
    if given:
        report.mode = "given"
        names = list(GIVEN_LISTS.values())
        for name in names:
            if name not in given:
                report.lists[name] = "MISSING"
                report.problems.append(
                    f"{name} is missing: with given splits all of {', '.join(names)} are needed"
                )
        return names
    if os.path.isfile(os.path.join(root, FULL_LIST)):
        report.mode = "full"
        return [FULL_LIST]
    report.problems.append(
        f"no list files: expected {', '.join(GIVEN_LISTS.values())} (given split) or "
        f"{FULL_LIST} (full list) in {root}"
    )
    return None


def _check_list(path, name, widths, image_root, check_images, report, all_labels, seen) -> None:
    """One list file: readable, its labels (21 kept), and its images (once each)."""
    spec = SPECS["nuswide21"]
    try:
        rel, paths, labels = read_list(path, widths, image_root)
    except ValueError as e:
        report.lists[name] = f"UNREADABLE ({e})"
        report.problems.append(str(e))
        return
    report.lists[name] = len(rel)
    if labels.shape[1] != spec.num_classes:
        labels = labels[:, top_labels(labels, spec.num_classes)]
    all_labels.append(labels)
    report.without_labels += int(np.sum(labels.sum(axis=1) == 0))
    for i, p in enumerate(paths):
        if p in seen:
            continue
        seen.add(p)
        if not check_images:
            continue
        if not os.path.isfile(p):
            report.missing_images.append((p, f"{path}, line {i + 1}"))
        elif os.path.getsize(p) == 0:
            report.empty_images.append(p)


def _check_label_counts(labels, query_per_class: int, train_per_class: int, report) -> None:
    counts = labels.sum(axis=0).astype(int)
    report.label_counts = counts.tolist()
    if report.mode == "full":
        need = query_per_class + train_per_class
        short = [i for i, c in enumerate(counts) if c < need]
        if short:
            report.problems.append(
                f"labels {short} have fewer than {need} images ({query_per_class} queries + "
                f"{train_per_class} training per label in the DSRH protocol)"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Report what is missing in a NUS-WIDE folder (list files, images)."
    )
    parser.add_argument("root", help="folder holding train.txt/test.txt/database.txt or all.txt")
    parser.add_argument(
        "--image_root", default=None, help="folder the list paths are relative to (default: root)"
    )
    parser.add_argument("--show", type=int, default=10, help="how many missing images to name")
    parser.add_argument(
        "--no_images", action="store_true", help="check the lists only, not the image files"
    )
    args = parser.parse_args(argv)
    report = check(args.root, args.image_root, check_images=not args.no_images)
    print(report.format(args.show))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
