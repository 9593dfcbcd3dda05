"""Every experiment of both papers on the embedded data sets, then the report, with the
quick preset (deep methods trained to their validation plateau); seeds 0, 1, 2 at 32 bits
and seed 0 at the other code lengths by default (``--seed_bits``).

    python experiments/run_all.py                   # writes docs/results/
    python experiments/run_all.py --out=/tmp/results --seeds=0,1

digits (single label) stands in for CIFAR-10 (DSRH) and ImageNet (DSEH); digits_multi
(multi-label) for NUS-WIDE (both papers). Runs:

* DSRH Fig. 3 on digits and Fig. 4 on digits_multi (12/24/32/48 bits, PR at 48 bits);
* DSEH Table 1 on digits_multi and digits (16/32/48/64 bits);
* DSEH Fig. 3 / Fig. 4 at 32 bits (reusing Table 1's 32-bit runs);
* DSEH Table 2 (ablations at 32 bits, ``deephash.reproduce.dseh_ablation``).

Trained runs are kept in --runs_dir and reused by a second invocation (only the reports
are rebuilt). OUT/README.md indexes the results (tables and plots).
"""

from __future__ import annotations

import os
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _flags  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
flags.DEFINE_string("out", os.path.join(REPO, "docs", "results"), "where the reports go")
flags.DEFINE_string(
    "runs_dir", os.path.join(REPO, "runs", "experiments"), "run directories (kept and reused)"
)
flags.DEFINE_list(
    "seeds", ["0", "1", "2"], "seeds (each also draws the split); tables show mean ± std"
)
flags.DEFINE_list(
    "seed_bits",
    ["32"],
    "code lengths run with every seed; the others with the first seed only "
    "(empty: every seed at every code length)",
)
_flags.define_flag("reuse")
_flags.define_flag("allow_missing")
_flags.define_flag("jobs")
flags.DEFINE_list(
    "only",
    [],
    "run only these experiments (names as in OUT/: dsrh_fig3, dsrh_fig4, "
    "dseh_table1, dseh_figures, dseh_table2)",
)
flags.DEFINE_list(
    "datasets",
    ["digits", "digits_multi"],
    "run only the experiments on these embedded sets (digits: DSRH Fig. 3, DSEH Table 1 / "
    "figures / Table 2 as the ImageNet stand-in; digits_multi: the NUS-WIDE stand-in)",
)
flags.DEFINE_integer(
    "epochs", None, "override the quick preset's epochs of every deep method (tests)"
)
flags.DEFINE_list("dsrh_methods", [], "override the DSRH figures' methods (tests)")
flags.DEFINE_list("dseh_methods", [], "override DSEH Table 1's methods (tests)")
flags.DEFINE_list("dsrh_bits", [], "override the DSRH figures' code lengths (tests)")
flags.DEFINE_list("dseh_bits", [], "override DSEH Table 1's code lengths (tests)")

SINGLE, MULTI = "digits", "digits_multi"


def _selected(name: str) -> bool:
    return not FLAGS.only or name in FLAGS.only


def _experiments(experiment, tables: dict) -> list[tuple]:
    """``(name, title, function, dataset, out subdirectory, keyword arguments)`` of every
    experiment, in order."""
    from deephash import reproduce

    dsrh = dict(methods=tables["dsrh_methods"], bits=tables["dsrh_bits"])
    dsrh["pr_bits"] = tables["pr_bits"]
    dseh = dict(methods=tables["dseh_methods"])
    fig_bits = tables["fig_bits"]
    todo = [
        ("dsrh_fig3", "DSRH Fig. 3 (CIFAR-10 stand-in: digits)", reproduce.dsrh_figures,
         SINGLE, "dsrh_fig3_digits", dsrh),
        ("dsrh_fig4", "DSRH Fig. 4 (NUS-WIDE stand-in: digits_multi)", reproduce.dsrh_figures,
         MULTI, "dsrh_fig4_digits_multi", dsrh),
    ]  # fmt: skip
    for ds, stand_in in ((MULTI, "NUS-WIDE"), (SINGLE, "ImageNet")):
        todo += [
            ("dseh_table1", f"DSEH Table 1 ({stand_in} stand-in: {ds})", reproduce.dseh_table1,
             ds, f"dseh_table1_{ds}", {**dseh, "bits": tables["dseh_bits"]}),
            ("dseh_figures", f"DSEH Fig. 3 / Fig. 4 at {fig_bits} bits ({stand_in} stand-in: {ds})",
             reproduce.dseh_figures, ds, f"dseh_figures_{ds}", {**dseh, "bits": fig_bits}),
        ]  # fmt: skip
    return [t for t in todo if _selected(t[0]) and t[3] in FLAGS.datasets]


def _tables() -> dict:
    """The methods and code lengths of the tables (the presets', or the flags')."""
    from deephash import presets

    dsrh_bits = [int(b) for b in FLAGS.dsrh_bits] or list(presets.DSRH_BITS)
    dseh_bits = [int(b) for b in FLAGS.dseh_bits] or list(presets.DSEH_BITS)
    return {
        "dsrh_methods": FLAGS.dsrh_methods or list(presets.DSRH_FIGURE_METHODS),
        "dseh_methods": FLAGS.dseh_methods or list(presets.DSEH_TABLE1_METHODS),
        "dsrh_bits": dsrh_bits,
        "dseh_bits": dseh_bits,
        "fig_bits": (
            presets.DSEH_FIGURE_BITS if presets.DSEH_FIGURE_BITS in dseh_bits else dseh_bits[0]
        ),
        "pr_bits": presets.DSRH_PR_BITS if presets.DSRH_PR_BITS in dsrh_bits else dsrh_bits[-1],
    }


def main(argv):
    del argv
    from deephash import reproduce, sweep
    from deephash.io import atomic_write

    unknown = set(FLAGS.datasets) - {SINGLE, MULTI}
    if unknown or not FLAGS.datasets:
        sys.exit(
            f"error: --datasets must name {SINGLE} and/or {MULTI}. "
            f"Received: --datasets={','.join(FLAGS.datasets)}"
        )
    _flags.show_progress()
    log = reproduce.log
    start = time.perf_counter()
    seeds = [int(s) for s in FLAGS.seeds]
    seed_bits = [int(b) for b in FLAGS.seed_bits] or None
    jobs = _flags.jobs()
    experiment = reproduce.ExperimentConfig(
        preset="quick",
        runs_dir=FLAGS.runs_dir,
        seeds=tuple(seeds),
        allow_missing=FLAGS.allow_missing,
        epochs=FLAGS.epochs,
        reuse=FLAGS.reuse,
        seed_bits=seed_bits,
        jobs=jobs,
    )
    with sweep.parallel(jobs):  # one set of worker processes for every experiment
        done = [
            (name, title, run(ds, experiment, out=os.path.join(FLAGS.out, sub), **kw))
            for name, title, run, ds, sub, kw in _experiments(experiment, _tables())
        ]
        ablations = []
        if _selected("dseh_table2"):
            for ds in [d for d in (MULTI, SINGLE) if d in FLAGS.datasets]:  # every seed
                out = os.path.join(FLAGS.out, f"dseh_table2_{ds}")
                reproduce.dseh_ablation(ds, experiment.replace(seed_bits=None), out=out)
                ablations.append((ds, out))
    wall = time.perf_counter() - start
    lines = _index(done, ablations, wall, seeds, seed_bits, jobs)
    with atomic_write(os.path.join(FLAGS.out, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    log.info(f"run_all: {wall / 60:.1f} min; index: {os.path.join(FLAGS.out, 'README.md')}")


def _index(done, ablations, wall: float, seeds, seed_bits=None, jobs: int = 1) -> list[str]:
    """OUT/README.md: what ran, how long, each table and the plots (paths relative to OUT)."""
    import platform

    from deephash import report, sweep

    runs = [r for _, _, rep in done for r in rep["runs"]]
    trained = len({r["run_dir"] for r in runs if not r["reused"]})
    total = len({r["run_dir"] for r in runs})
    lines = [
        "# Results on the embedded data sets",
        "",
        "Generated by `python experiments/run_all.py` (quick preset, seeds "
        f"{', '.join(map(str, seeds))}) in {wall / 60:.1f} minutes on {os.cpu_count()} CPU core(s) "
        f"({platform.machine()}); {trained} of the {total} runs behind the tables and figures were "
        "trained in this invocation"
        + (f", {total - trained} reused from an earlier one" if total > trained else "")
        + " (DSEH Table 2 adds its variants' runs; its DSEH runs are Table 1's 32-bit ones)."
        + (
            f" Runs trained {jobs} at a time in worker processes with "
            f"{sweep.default_threads(jobs)} TensorFlow thread(s) each (each run's "
            "config.json records them; `experiments/train.py --threads=N` repeats a run bit "
            "for bit)."
            if jobs > 1
            else ""
        ),
        "",
        *(
            [
                f"Only the experiments on {', '.join(FLAGS.datasets)} ran in this invocation "
                "(`--datasets`); the others are not shown.",
                "",
            ]
            if set(FLAGS.datasets) != {SINGLE, MULTI}
            else []
        ),
        "digits stands in for CIFAR-10 (DSRH) and ImageNet (DSEH), digits_multi for NUS-WIDE; the "
        "paper rows are the real data sets' published numbers, shown for scale only (`n/t`: in "
        "the paper, not transcribed here).",
        "",
        (
            f"Seeds {', '.join(map(str, seeds))} (each seed also draws the split) at "
            f"{', '.join(map(str, seed_bits))} bits, seed {seeds[0]} only at the other code "
            "lengths (to fit the time budget): cells with `±` are mean ± sample standard deviation "
            "over the seeds, cells without are one seed."
            if seed_bits and len(seeds) > 1
            else f"Seeds {', '.join(map(str, seeds))}; cells are means"
            + (" ± sample standard deviation" if len(seeds) > 1 else "")
            + "."
        ),
        "",
        "Deep methods train to the validation plateau: early stopping on validation mAP (a "
        "seeded split carved from the training split, never the queries), best weights "
        "restored; the DSEH family keeps its three alternating rounds, each ImgNet phase "
        "trained to its own plateau. The quick preset's learning rates, margins and lambdas "
        "were chosen on validation data, per data set (`deephash/tuned/quick.json` for digits, "
        "`quick_digits_multi.json`; `experiments/select_hparams.py`).",
        "",
    ]
    for name, title, rep in done:
        sub = os.path.basename(os.path.dirname(rep["files"][0]))
        lines += [f"## {title}", "", f"Full report: [{sub}/report.md]({sub}/report.md)", ""]
        for h in rep.get("headers", {}).values():  # each its own paragraph or list
            lines += [h, ""]
        if name != "dseh_figures":  # its tables repeat Table 1's column; the figures are the point
            for (dataset, metric), (header, rows) in rep["tables"].items():
                lines += [
                    f"**{report.METRIC_NAMES.get(metric, metric)}**",
                    "",
                    report.markdown_table(header, rows),
                    "",
                ]
        pngs = [p for p in rep["files"] if p.endswith(".png")]
        lines += [f"![{os.path.basename(p)}]({sub}/{os.path.basename(p)})" for p in pngs] + [""]
    for ds, path in ablations:
        sub = os.path.basename(path)
        lines += [
            f"## DSEH Table 2 (ablations at 32 bits, {ds})",
            "",
            f"From `experiments/dseh_ablation.py`: [{sub}/table.md]({sub}/table.md), "
            f"[{sub}/table.csv]({sub}/table.csv)",
            "",
        ]
        with open(os.path.join(path, "table.md"), encoding="utf-8") as f:
            table = [line for line in f.read().splitlines() if not line.startswith("# ")]
        lines += table
        orders = {
            ("paper" if ", paper" in line else "ours"): line.split(": ", 1)[1]
            for line in table
            if line.startswith("Ordering by map_i")
        }
        if len(orders) == 2:
            lines += [
                "",
                "The paper's ordering by map_i "
                + ("holds" if orders["ours"] == orders["paper"] else "does **not** hold")
                + f" with seed(s) {', '.join(map(str, seeds))} (docs/dseh.md: digits_multi over "
                "5 seeds).",
            ]
        lines.append("")
    return lines


if __name__ == "__main__":
    app.run(main)
