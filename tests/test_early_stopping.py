"""Training to the validation plateau (deephash.early_stopping), the quick preset's schedules
relative to the run, settings chosen on validation (deephash.tuning), and train.py's
defaults: every deep method with default flags beats ITQ on digits."""

import dataclasses
import json
import os

import numpy as np
import pytest
from _helpers import Interrupt, StopAt

from deephash import data, early_stopping, losses, methods, metrics, presets, training, tuning

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def test_state_follows_the_curve_by_hand():
    st = early_stopping.state([0.1, 0.5, 0.3, 0.5, 0.2], patience=3)
    assert (st.best, st.best_validation, st.since_best, st.stopped) == (
        0.5,
        2,
        3,
        True,
    )  # a tie is no improvement
    st = early_stopping.state([0.1, 0.5, 0.3, 0.5, 0.2], patience=4)
    assert not st.stopped
    st = early_stopping.state([0.1, 0.12, 0.2], patience=1, min_delta=0.05)
    assert (st.best, st.best_validation, st.since_best, st.stopped) == (0.2, 3, 0, False)
    st = early_stopping.state([0.1, 0.12], patience=1, min_delta=0.05)
    assert (st.best_validation, st.stopped) == (1, True)
    assert early_stopping.state([], patience=2) == early_stopping.State(None, 0, 0, False)
    assert not early_stopping.state([0.5, 0.1, 0.1, 0.1], patience=None).stopped


def test_carve_holds_out_validation_queries_from_training_only(digits):
    trained, val = early_stopping.carve(digits, 0.2, seed=3)
    assert len(val.queries) == 100 and len(trained.train) == 400
    assert set(val.queries.indices).isdisjoint(trained.train.indices)
    assert set(val.queries.indices) <= set(digits.train.indices)
    assert set(val.queries.indices).isdisjoint(digits.query.indices)
    np.testing.assert_array_equal(val.database.indices, trained.train.indices)
    assert trained.query is digits.query and trained.database is digits.database
    again = early_stopping.carve(digits, 0.2, seed=3)[1]
    assert (
        again.checksum()
        == val.checksum()
        != early_stopping.carve(digits, 0.2, seed=4)[1].checksum()
    )
    summary = val.summary()
    assert summary["queries"] == 100 and summary["database"] == 400 and summary["seed"] == 3


def test_validation_map_is_the_metrics_map_of_the_codes(digits):
    trained, val = early_stopping.carve(digits, 0.2, seed=0)
    model = methods.create("dpsh", bits=8, dataset=digits)
    q, db = model.encode(val.queries), model.encode(val.database)
    expected = metrics.mean_average_precision(q, db, val.queries.labels, val.database.labels)
    assert early_stopping.validation_map(model, val) == pytest.approx(float(expected))


def test_validate_counts_the_distinct_validation_database_codes(digits):
    _, val = early_stopping.carve(digits, 0.2, seed=0)
    model = methods.create("dpsh", bits=8, dataset=digits)
    value, distinct = early_stopping.validate(model, val)
    db = model.encode(val.database)
    assert value == pytest.approx(early_stopping.validation_map(model, val))
    assert distinct == len({tuple(row) for row in np.asarray(db, bool)}) > 1
    # a hash layer that gives every image the same code: one distinct code
    layer = model.get_layer("hash")
    layer.kernel.assign(np.zeros(layer.kernel.shape, np.float32))
    layer.bias.assign(np.linspace(-1, 1, 8).astype(np.float32))
    assert early_stopping.validate(model, val)[1] == 1


def test_a_training_collapse_is_recorded_with_its_epoch(digits, monkeypatch):
    ds = _small(digits, 64)
    distinct = iter([40, 12, 1, 1, 1, 1, 1])  # one code from epoch 3 on
    _patch_score(monkeypatch, _scripted(3), lambda: next(distinct))
    config = training.TrainConfig(
        epochs=7, batch_size=16, lr=0.05, lr_decay_steps=None, patience=3, verbose=0
    )
    _, history, record = _fit(ds, config)
    assert record["validation_curve"]["distinct_codes"] == [40, 12, 1, 1, 1]
    assert record["collapsed_at_epoch"] == 3
    assert history[early_stopping.DISTINCT_KEY] == [40, 12, 1, 1, 1]


def test_chance_level_is_the_map_of_one_code_for_every_image_by_hand():
    from deephash.data import Split

    def split(classes):
        classes = np.asarray(classes)
        return Split(
            labels=np.eye(2, dtype=np.uint8)[classes],
            indices=np.arange(len(classes)),
            images=np.zeros((len(classes), 2, 2, 1), np.float32),
            class_ids=classes,
        )

    val = early_stopping.Validation(split([0, 1]), split([1, 0, 0, 1]), None, 0.2, 0)
    # one code for all: the ranking is the database order. Class 0 finds its items at ranks
    # 2 and 3: (1/2 + 2/3) / 2; class 1 at ranks 1 and 4: (1/1 + 2/4) / 2
    expected = ((1 / 2 + 2 / 3) / 2 + (1 + 2 / 4) / 2) / 2
    assert early_stopping.chance_map(val) == pytest.approx(expected)


def test_the_record_carries_the_chance_level_of_its_validation(digits, monkeypatch):
    ds = _small(digits, 64)
    _patch_score(monkeypatch, _scripted(3))
    config = training.TrainConfig(
        epochs=2, batch_size=16, lr=0.05, lr_decay_steps=None, patience=3, verbose=0
    )
    _, _, record = _fit(ds, config)
    _, val = early_stopping.carve(ds, 0.25, seed=0)
    assert record["validation_chance_map"] == early_stopping.chance_map(val)
    assert 0.05 < record["validation_chance_map"] < 0.3  # ten classes: about a tenth relevant


@pytest.mark.parametrize(
    "counts, start",
    [([40, 12, 1, 1, 1], 2), ([1, 1, 5, 40], None), ([300, 1, 9, 1], 3), ([1], 0), ([], None)],
)
def test_only_a_collapse_that_lasts_to_the_end_counts(counts, start):
    from deephash import claims, codes

    assert codes.collapse_start(counts) == start
    row = _row("drh", 0, 0.4)
    row["metrics"]["early_stopping"] = {
        "validation_curve": {"epoch": [5 * (i + 1) for i in range(len(counts))],
                             "distinct_codes": counts},
        "collapsed_at_epoch": 999,  # the curve decides where there is one
    }  # fmt: skip
    expected = {} if start is None else {("digits", "drh", 32): {0: 5 * (start + 1)}}
    assert dict(claims.collapsed([row])) == (
        expected if counts else {("digits", "drh", 32): {0: 999}}
    )


def _small(ds, n):
    return dataclasses.replace(ds, train=ds.train.subset(np.arange(n)))


SCORES = [0.2, 0.6, 0.4, 0.5, 0.3, 0.55, 0.9]  # best at epoch 2; patience 3 stops after epoch 5


def _scripted(steps_per_epoch):
    """validation mAP as a function of the epoch just finished (the optimiser's step count)."""

    def score(model, validation):
        return SCORES[int(model.optimizer.iterations.numpy()) // steps_per_epoch - 1]

    return score


def _patch_score(monkeypatch, score, distinct=lambda: 7):
    """Script ``early_stopping.validate``: mAP from ``score(model, validation)``, the
    distinct validation codes from ``distinct()``."""
    monkeypatch.setattr(early_stopping, "validate", lambda model, v: (score(model, v), distinct()))


class Recorder:
    def __new__(cls):
        import keras

        class _R(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.weights = []

            def on_epoch_end(self, epoch, logs=None):
                self.weights.append([np.array(w) for w in self.model.get_weights()])

        return _R()


def _fit(ds, config, strategy="default", callbacks=()):
    training.set_seed(0)
    with training.get_strategy(strategy).scope():
        model = methods.create("dpsh", bits=8, dataset=ds)
    trained, val = early_stopping.carve(ds, 0.25, seed=0)
    history, record = early_stopping.fit(model, trained, config, val, callbacks=list(callbacks))
    return model, history, record


def _same(a, b, tol=0.0):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b)) <= tol


def test_early_stopping_restores_the_best_epochs_weights(digits, monkeypatch):
    ds = _small(digits, 64)  # 48 trained on, batch 16: 3 steps per epoch
    _patch_score(monkeypatch, _scripted(3))
    config = training.TrainConfig(
        epochs=7, batch_size=16, lr=0.05, lr_decay_steps=None, patience=3, verbose=0
    )
    rec = Recorder()
    model, history, record = _fit(ds, config, callbacks=[rec])
    assert record["epochs_run"] == 5 and record["stopped_early"] and record["best_epoch"] == 2
    assert record["validation_curve"] == {
        "epoch": [1, 2, 3, 4, 5],
        "map": SCORES[:5],
        "distinct_codes": [7] * 5,
    }
    assert record["collapsed_at_epoch"] is None
    assert record["best_validation_map"] == 0.6 and history["val_map"] == SCORES[:5]
    assert len(rec.weights) == 5 and not _same(rec.weights[1], rec.weights[4])
    assert _same(model.get_weights(), rec.weights[1])  # epoch 2's weights, not the last epoch's


def test_validating_every_few_epochs_counts_epochs(digits, monkeypatch):
    ds = _small(digits, 64)
    seen = []
    _patch_score(
        monkeypatch,
        lambda model, v: seen.append(int(model.optimizer.iterations.numpy()) // 3) or 0.5,
    )
    config = training.TrainConfig(
        epochs=7,
        batch_size=16,
        lr=0.05,
        lr_decay_steps=None,
        patience=2,
        validation_every=2,
        verbose=0,
    )
    _, _, record = _fit(ds, config)
    assert seen == [2, 4, 6] and record["best_epoch"] == 2 and record["epochs_run"] == 6
    assert record["validation_curve"]["epoch"] == [2, 4, 6]


def test_dseh_phases_each_stop_on_their_own_plateau_and_the_best_of_all_is_restored(
    digits, monkeypatch
):
    """Patience per ImgNet phase: a phase ends after ``patience`` validations without a new
    best (counted from its start or its best), the next round still runs, LabNet epochs are
    not validated, and the best weights over all phases come back."""
    ds = _small(digits, 64)  # 48 trained on, ImgNet batch 16: 3 steps per epoch
    # ImgNet epochs in order: phase 1 peaks at its 1st epoch then stalls (stops after 3
    # epochs with patience 2); phase 2 never beats 0.7 (stops after 2); phase 3 beats it at
    # its 2nd epoch and stalls (stops after 4)
    scores = [0.7, 0.5, 0.6, 0.4, 0.6, 0.5, 0.8, 0.75, 0.79]
    seen = []

    def score(model, validation):
        seen.append(model._phase)
        return scores[len(seen) - 1]

    _patch_score(monkeypatch, score)
    training.set_seed(0)
    model = methods.create(
        "dseh", bits=8, dataset=ds, rounds=3, labnet_epochs=2, imgnet_epochs=6,
        labnet_hidden=32, semantic_dim=8, labnet_batch_size=16,
    )  # fmt: skip
    trained, val = early_stopping.carve(ds, 0.25, seed=0)
    config = training.TrainConfig(
        epochs=6, batch_size=16, lr=0.01, lr_decay_steps=None, patience=2, verbose=0
    )
    rec = Recorder()
    history, record = early_stopping.fit(model, trained, config, val, callbacks=[rec])
    assert seen == ["imgnet"] * 9  # LabNet epochs are not validated
    assert len(history["labnet_loss"]) == 6  # every round ran
    assert len(history["imgnet_loss"]) == 9  # 3 + 2 + 4 ImgNet epochs
    assert record["validation_curve"]["map"] == scores
    assert record["best_validation_map"] == 0.8 and record["best_epoch"] == 7
    assert record["stopped_early"] and record["patience_counts"].startswith("validations within")
    # Recorder sees LabNet epochs too: 2 + 3 + 2 + 2 + 2 + 4 epochs; ImgNet epoch 7 is the
    # 2nd epoch of the third ImgNet phase, after 2 + 3 + 2 + 2 + 2 = 11 epochs in all
    assert len(rec.weights) == 15
    assert _same(model.get_weights(), rec.weights[12])
    assert not _same(model.get_weights(), rec.weights[-1])


def test_dseh_killed_after_two_bests_in_one_phase_resumes_from_its_checkpoint(
    digits, monkeypatch, tmp_path
):
    """DSEH checkpoints between phases: a phase with two new bests must keep the best file
    the last checkpoint points to (it was deleted once, and the resume then failed)."""
    ds = _small(digits, 64)
    trained, val = early_stopping.carve(ds, 0.25, seed=0)
    # phase 1 stops after 3 validations (best 1); phase 2 finds bests at 4 and 5, stops at 7
    scores = [0.7, 0.5, 0.6, 0.75, 0.8, 0.6, 0.6, 0.5, 0.4]
    pos = [0]
    kill_at = [None]

    def score(model, validation):
        if pos[0] == kill_at[0]:
            kill_at[0] = None
            raise Interrupt
        pos[0] += 1
        return scores[pos[0] - 1]

    _patch_score(monkeypatch, score)

    def run(ckpt):
        training.set_seed(0)
        model = methods.create(
            "dseh", bits=8, dataset=ds, rounds=3, labnet_epochs=1, imgnet_epochs=5,
            labnet_hidden=32, semantic_dim=8, labnet_batch_size=16,
        )  # fmt: skip
        config = training.TrainConfig(
            epochs=5, batch_size=16, lr=0.01, lr_decay_steps=None, patience=2, verbose=0,
            checkpoint_dir=ckpt,
        )  # fmt: skip
        return model, early_stopping.fit(model, trained, config, val)

    whole, (history, record) = run(str(tmp_path / "whole"))
    assert record["validation_curve"]["map"] == scores[:9] and record["best_epoch"] == 5
    pos[0], kill_at[0] = 0, 6  # killed at validation 7, after phase 2's two bests
    with pytest.raises(Interrupt):
        run(str(tmp_path / "killed"))
    pos[0] = 3  # the checkpoint after phase 2 (ImgNet round 1) holds 3 validations
    resumed, (history2, record2) = run(str(tmp_path / "killed"))
    assert record2["validation_curve"] == record["validation_curve"]
    assert history2["imgnet_loss"] == history["imgnet_loss"]
    assert _same(resumed.get_weights(), whole.get_weights())


def test_killed_and_resumed_run_stops_where_an_uninterrupted_run_stops(
    digits, monkeypatch, tmp_path
):
    ds = _small(digits, 64)
    _patch_score(monkeypatch, _scripted(3))
    config = training.TrainConfig(
        epochs=7, batch_size=16, lr=0.05, lr_decay_steps=None, patience=3, verbose=0
    )
    full, h_full, r_full = _fit(ds, config.replace(checkpoint_dir=str(tmp_path / "a")))
    with pytest.raises(Interrupt):  # dies in epoch 4, after the best (epoch 2) was saved
        _fit(ds, config.replace(checkpoint_dir=str(tmp_path / "b")), callbacks=[StopAt(10)])
    # the previous best stays until a newer best is saved (a checkpoint may still point to it);
    # the previous checkpoint stays as the fallback of a damaged latest one (deephash.checkpoints)
    assert sorted(os.listdir(tmp_path / "b")) == [
        "best-1.npz",
        "best-2.npz",
        "ckpt-2.npz",
        "ckpt-3.npz",
    ]
    resumed, h_resumed, r_resumed = _fit(ds, config.replace(checkpoint_dir=str(tmp_path / "b")))
    assert _same(full.get_weights(), resumed.get_weights(), 1e-6)
    assert r_resumed == r_full and set(h_resumed) == set(h_full)
    for k in h_full:
        assert h_resumed[k] == pytest.approx(h_full[k], rel=1e-5)
    # a run that had already stopped is not trained again: it restores the best weights
    again, _, r_again = _fit(ds, config.replace(checkpoint_dir=str(tmp_path / "b")))
    assert _same(full.get_weights(), again.get_weights(), 1e-6) and r_again["epochs_run"] == 5


def test_early_stopping_under_mirrored_matches_one_device(digits):
    """Real validation mAP (encode inside the fit) over 2 logical CPU devices."""
    ds = _small(digits, 80)
    config = training.TrainConfig(
        epochs=4, batch_size=16, lr=0.05, lr_decay_steps=None, patience=2, verbose=0
    )
    one, _, r1 = _fit(ds, config)
    two, _, r2 = _fit(ds, config, strategy="mirrored")
    assert two.distribute_strategy.num_replicas_in_sync == 2
    assert r1["validation_curve"]["map"] == pytest.approx(r2["validation_curve"]["map"], abs=1e-6)
    assert r1["best_epoch"] == r2["best_epoch"]
    assert _same(one.get_weights(), two.get_weights(), 1e-5)


# ----------------------------------------------------------------------------- presets
def test_hashnet_schedule_scaled_to_a_short_run_reaches_its_last_stage():
    spec = presets.spec("hashnet", "digits", 32)
    per_epoch = presets.quick_steps_per_epoch("digits")
    run_steps = spec.config.epochs * per_epoch
    assert run_steps < presets.HASHNET_SCHEDULE["iterations"] / 5  # a short run
    hp = spec.hparams
    last = float(losses.hashnet_beta(run_steps, 1.0, hp["gamma"], 0.5, hp["beta_step"]))
    paper_last = float(losses.hashnet_beta(10000, 1.0, 0.005, 0.5, 200))
    assert last == pytest.approx(paper_last, rel=0.02)  # the whole continuation within the run
    stages = {
        float(losses.hashnet_beta(s, 1.0, hp["gamma"], 0.5, hp["beta_step"]))
        for s in range(0, run_steps + 1)
    }
    assert len(stages) >= 40  # and in about the paper's 50 steps, not one jump
    # the paper preset keeps the papers' values
    assert (
        "beta_step"
        not in presets.spec("hashnet", "cifar10", 32, preset="paper", paper="dseh").hparams
    )


def test_dsrh_learning_rate_step_falls_inside_the_quick_run():
    spec = presets.spec("drh", "digits", 32)
    run_steps = spec.config.epochs * presets.quick_steps_per_epoch("digits")
    assert spec.config.lr_decay_steps == pytest.approx(run_steps / 2, abs=1)
    paper = presets.spec("drh", "cifar10", 32, preset="paper")
    assert paper.config.lr_decay_steps == 5000 and paper.config.patience is None


def test_quick_preset_trains_to_the_validation_plateau():
    for method in ("dsrh", "drh", "drh+", "ninh", "cnnh", "dpsh", "dhn", "hashnet"):
        c = presets.spec(method, "digits", 32).config
        assert (
            c.patience == presets.QUICK_PATIENCE
            and c.epochs * presets.quick_steps_per_epoch("digits") >= presets.QUICK_STEPS
        )
    for dataset in ("digits", "digits_multi"):  # the DSEH family: patience per ImgNet phase
        per_epoch = presets.quick_steps_per_epoch(dataset)
        for method, rounds in (("dseh", 3), ("dseh-s", 3), ("dseh-a", 1)):
            s = presets.spec(method, dataset, 32)
            assert s.config.patience == presets.QUICK_PATIENCE // rounds
            assert s.config.validation_fraction == presets.QUICK_VALIDATION_FRACTION
            phases = s.hparams["imgnet_epochs"] * rounds * per_epoch
            assert presets.QUICK_STEPS <= phases < presets.QUICK_STEPS + rounds * per_epoch
            assert s.config.validation_every * per_epoch == pytest.approx(30, abs=per_epoch)
    assert presets.spec("itq", "digits", 32).config.patience is None


def test_quick_choices_come_from_the_validation_table_with_their_record(tmp_path):
    table = {
        "version": tuning.VERSION,
        "dataset": "digits",
        "bits": 32,
        "seed": 0,
        "selected_on": "validation",
        "command": "python experiments/select_hparams.py",
        "created": "now",
        "stages": {
            "lr": {
                "triplet": {
                    "grid": [0.02, 0.05],
                    "validation_map": {"0.02": 0.7, "0.05": 0.8},
                    "chosen": 0.05,
                    "selected_on": "dpsh",
                }
            },
            "margin_per_bit": {
                "ninh": {
                    "grid": [0.125, 0.25],
                    "validation_map": {"0.125": 0.9, "0.25": 0.8},
                    "chosen": 0.125,
                }
            },
            "ortho_weight": {
                "drh+": {
                    "grid": [0.05, 0.25],
                    "validation_map": {"0.05": 0.8, "0.25": 0.2},
                    "chosen": 0.05,
                }
            },
        },
    }
    path = str(tmp_path / "quick.json")
    with open(path, "w") as f:
        json.dump(table, f)
    values, record = tuning.quick_choice("ninh", 48, path=path)
    assert values == {"lr": 0.05, "margin": 6.0}
    assert (
        record["margin"]["validation_map"] == {"0.125": 0.9, "0.25": 0.8}
        and record["lr"]["chosen"] == 0.05
    )
    values, record = tuning.quick_choice("drh+", 32, path=path)
    assert values == {"lr": 0.05, "ortho_weight": 0.05}  # the triplet family's lr
    assert record["ortho_weight"]["grid"] == [0.05, 0.25]
    assert "lr" not in tuning.quick_choice("dpsh", 32, path=path)[0]  # pairwise: not in it
    assert tuning.quick_choice("itq", 32, path=path) == ({}, {})
    assert tuning._choose({"0.1": 0.5, "0.2": 0.7, "0.3": 0.7}) == 0.2  # ties: the first listed
    with open(path, "w") as f:
        json.dump({**table, "version": 0}, f)
    tuning._cache.clear()
    with pytest.raises(ValueError, match="version"):
        tuning.quick_choice("ninh", 32, path=path)
    tuning._cache.clear()


def test_a_data_set_with_its_own_table_reads_it_and_the_others_read_the_digits_table(
    monkeypatch, tmp_path
):
    def table(dataset, lr):
        return {
            "version": tuning.VERSION,
            "dataset": dataset,
            "bits": 32,
            "seed": 0,
            "stages": {"lr": {"dpsh": {"grid": [0.05, 0.1], "validation_map": {}, "chosen": lr}}},
        }

    monkeypatch.setattr(tuning, "TABLES", str(tmp_path))
    monkeypatch.setattr(tuning, "TABLE", str(tmp_path / "quick.json"))
    tuning._cache.clear()
    with open(tmp_path / "quick.json", "w") as f:
        json.dump(table("digits", 0.1), f)
    assert tuning.default_path("digits") == str(tmp_path / "quick.json")
    assert tuning.default_path("digits_multi") == str(tmp_path / "quick_digits_multi.json")
    with pytest.raises(ValueError, match="Received: dataset='../x'"):
        tuning.default_path("../x")
    # no table of its own yet: digits' applies, and the record says so
    values, record = tuning.quick_choice("dpsh", 32, dataset="digits_multi")
    assert values == {"lr": 0.1}
    assert record["lr"]["table"]["dataset"] == "digits"
    assert record["lr"]["table"]["applied_to"] == "digits_multi"
    assert record["lr"]["table"]["file"] == "quick.json"
    with open(tmp_path / "quick_digits_multi.json", "w") as f:
        json.dump(table("digits_multi", 0.05), f)
    values, record = tuning.quick_choice("dpsh", 32, dataset="digits_multi")
    assert values == {"lr": 0.05}
    assert record["lr"]["table"]["dataset"] == "digits_multi"
    assert record["lr"]["table"]["file"] == "quick_digits_multi.json"
    assert tuning.quick_choice("dpsh", 32, dataset="digits")[0] == {"lr": 0.1}
    assert tuning.quick_choice("dpsh", 32, dataset="cifar10")[0] == {"lr": 0.1}
    # a method's own margin selection, when the table holds one, replaces its representative's
    own = table("digits_multi", 0.05)
    own["stages"]["margin_per_bit"] = {
        m: {"grid": [0.03125, 0.125], "validation_map": {}, "chosen": v}
        for m, v in (("drh", 0.125), ("dsrh", 0.03125))
    }
    with open(tmp_path / "quick_digits_multi.json", "w") as f:
        json.dump(own, f)
    tuning._cache.clear()
    assert tuning.quick_choice("dsrh", 32, dataset="digits_multi")[1]["margin"]["margin"] == 1.0
    assert tuning.quick_choice("drh+", 32, dataset="digits_multi")[0]["margin"] == 4.0
    assert tuning.quick_choice("dsrh", 32, dataset="digits")[0].get("margin") is None
    # the presets read the run's data set's table
    assert presets.spec("dpsh", "digits_multi", 32).config.lr == 0.05
    assert presets.spec("dpsh", "digits", 32).config.lr == 0.1
    tuning._cache.clear()


def test_selection_takes_each_stages_best_validation_point_and_keeps_other_choices(
    monkeypatch, tmp_path
):
    from deephash import sweep

    seen = []

    def fake_run(spec):
        """Validation mAP as a known function of the settings: the best lr is 0.02 for the
        triplet methods and 0.1 for the pairwise ones, margin 4 beats 1 except for NINH at
        lr 0.1, lambda 0.05 beats 0.25."""
        lr, hp = spec.config.lr, spec.hparams
        seen.append((spec.method, lr, hp.get("margin"), hp.get("ortho_weight")))
        v = 0.9 - abs(lr - (0.02 if spec.method in tuning.DSRH_FAMILY else 0.1))
        v += 0.01 * (hp.get("margin") == 4.0) - 0.1 * (hp.get("ortho_weight") == 0.25)
        if spec.method == "ninh" and lr == 0.1 and hp.get("margin") == 4.0:
            v = 0.35  # collapsed
        return {"metrics": {"early_stopping": {"best_validation_map": v}}, "run_dir": None}

    def fake_runs(specs, runs_dir, datasets=None, reuse="any"):
        batches.append(len(specs))
        return [fake_run(s) for s in specs]

    batches = []
    monkeypatch.setattr(sweep, "run_specs", fake_runs)
    path = str(tmp_path / "quick.json")
    table = tuning.select("digits", 32, 0, runs_dir=str(tmp_path), path=path)
    st = table["stages"]
    assert st["lr"]["triplet"]["chosen"] == 0.02 and st["lr"]["dhn"]["chosen"] == 0.1
    assert st["margin_per_bit"]["drh"]["chosen"] == 0.125  # margin 4 at 32 bits
    assert st["margin_per_bit"]["ninh"]["chosen"] == 0.125  # at the triplet lr 0.02
    assert st["ortho_weight"]["dsrh"]["chosen"] == 0.05 and table["not_selected"] == {}
    # each stage ran with the earlier stages' choices, its grid points in one batch (side by
    # side inside sweep.parallel)
    assert ("ninh", 0.02, 4.0, None) in seen and ("drh+", 0.02, 4.0, 0.25) in seen
    assert (
        batches == [10, 4, 4]
        and st["lr"]["dhn"]["threads"] == st["ortho_weight"]["dsrh"]["threads"]
    )
    assert tuning.quick_choice("ninh", 48, path=path)[0] == {"lr": 0.02, "margin": 6.0}
    # one stage for one method again: the table's other entries stay, its lr is used
    seen.clear()
    again = tuning.select(
        "digits",
        32,
        0,
        runs_dir=str(tmp_path),
        path=path,
        stages=("margin_per_bit",),
        methods_={"margin": ["ninh"]},
    )
    assert seen == [("ninh", 0.02, 1.0, None), ("ninh", 0.02, 4.0, None)]
    assert (
        again["stages"]["lr"] == st["lr"] and again["stages"]["ortho_weight"] == st["ortho_weight"]
    )
    assert again["stages"]["margin_per_bit"]["drh"] == st["margin_per_bit"]["drh"]
    assert "; then " in again["command"] and "--stages=margin_per_bit" in again["command"]
    with open(path) as f:
        assert json.load(f)["stages"] == again["stages"]
    full = tuning.select("digits", 32, 0, runs_dir=str(tmp_path), path=path)
    assert "; then " not in full["command"]  # a full selection replaces the table
    tuning._cache.clear()


def _scripted_lr_runs(seen: list, failed, low: float):
    """A ``sweep.run_specs`` stand-in: best validation mAP 0.95 at lr 0.1, else 0.90; ``low``
    for a spec where ``failed(spec)``; every spec is appended to ``seen``."""

    def fake_runs(specs, runs_dir, datasets=None, reuse="any"):
        seen.extend(specs)
        return [
            {"metrics": {"early_stopping": {"best_validation_map": (
                low if failed(s) else 0.95 if s.config.lr == 0.1 else 0.90
            )}}}
            for s in specs
        ]  # fmt: skip

    return fake_runs


def test_learning_rates_scored_over_code_lengths_lose_when_they_collapse_at_one(
    monkeypatch, tmp_path
):
    from deephash import sweep

    specs = []
    collapsed = lambda s: s.config.lr == 0.1 and s.bits == 16  # noqa: E731 - one code
    monkeypatch.setattr(sweep, "run_specs", _scripted_lr_runs(specs, collapsed, 0.40))
    kw = dict(runs_dir=str(tmp_path), path=None, stages=("lr",))
    kw["methods_"] = {"representative": {"hashnet": "hashnet"}}
    one = tuning.select("digits_multi", 32, 0, **kw)["stages"]["lr"]["hashnet"]
    assert one["chosen"] == 0.1 and "validation_map_by_bits" not in one
    specs.clear()
    table = tuning.select("digits_multi", 32, 0, lr_bits=(16, 32, 64), **kw)
    entry = table["stages"]["lr"]["hashnet"]
    seen = [(s.method, s.bits, s.config.lr) for s in specs]
    assert sorted(seen) == sorted(("hashnet", b, lr) for b in (16, 32, 64) for lr in (0.05, 0.1))
    assert entry["chosen"] == 0.05 and entry["bits"] == [16, 32, 64]
    assert entry["validation_map"] == {"0.05": pytest.approx(0.90), "0.1": pytest.approx(2.3 / 3)}
    assert entry["validation_map_by_bits"]["16"] == {"0.05": 0.90, "0.1": 0.40}
    assert "--lr_bits=16,32,64" in table["command"]


def test_settings_scored_over_seeds_lose_when_they_fail_on_one(monkeypatch, tmp_path):
    from deephash import sweep

    specs = []
    stuck = lambda s: s.config.lr == 0.1 and s.seed == 2 and s.bits == 64  # noqa: E731
    monkeypatch.setattr(sweep, "run_specs", _scripted_lr_runs(specs, stuck, 0.41))
    kw = dict(runs_dir=str(tmp_path), path=None, stages=("lr",))
    kw["methods_"] = {"representative": {"dpsh": "dpsh"}}
    table = tuning.select("digits_multi", 32, 0, lr_bits=(32, 64), seeds=(0, 2), **kw)
    entry = table["stages"]["lr"]["dpsh"]
    seen = [(s.bits, s.seed, s.config.lr) for s in specs]
    assert sorted(seen) == sorted(
        (b, s, lr) for b in (32, 64) for s in (0, 2) for lr in (0.05, 0.1)
    )
    # 0.1: (0.95 * 3 + 0.41) / 4 = 0.815 < 0.90
    assert entry["chosen"] == 0.05 and entry["seeds"] == [0, 2] and entry["bits"] == [32, 64]
    assert entry["validation_map"] == {"0.05": pytest.approx(0.90), "0.1": pytest.approx(0.815)}
    assert entry["validation_map_by_run"]["seed 2, 64 bits"] == {"0.05": 0.90, "0.1": 0.41}
    assert entry["validation_map_is"] == "mean over every seed and code length"
    assert "--lr_bits=32,64 --seeds=0,2" in table["command"]
    # the later stages too: DRH's margin 4 collapses on seed 2 only (as it did on digits)
    specs.clear()
    collapsed = lambda s: s.hparams.get("margin") == 4.0 and s.seed == 2  # noqa: E731
    monkeypatch.setattr(sweep, "run_specs", _scripted_lr_runs(specs, collapsed, 0.11))
    kw.update(stages=("margin_per_bit",), methods_={"margin": ["drh"]})
    entry = tuning.select("digits", 32, 0, seeds=(0, 1, 2), **kw)["stages"]["margin_per_bit"]
    assert sorted((s.hparams["margin"], s.seed) for s in specs) == sorted(
        (m, seed) for m in (1.0, 4.0) for seed in (0, 1, 2)
    )
    assert entry["drh"]["chosen"] == 1 / 32 and entry["drh"]["seeds"] == [0, 1, 2]
    assert entry["drh"]["validation_map_by_run"]["seed 2, 32 bits"]["0.125"] == 0.11


def test_select_hparams_script_names_bad_stages_families_methods_and_bits_before_training(tmp_path):
    import subprocess
    import sys

    script = os.path.join(REPO, "experiments", "select_hparams.py")
    for flag, says in (
        ("--stages=lr,nope", "unknown stage(s) nope"),
        ("--lr_families=triplet,nope", "unknown learning-rate famil(ies) nope"),
        ("--margin_methods=dsrh,dpsh", "no triplet margin to select for dpsh"),
        ("--ortho_methods=drh", "no orthogonality weight to select for drh"),
        ("--dataset=../x", "tuning: not a data set name. Received: dataset='../x'"),
        ("--lr_bits=16,x", "--lr_bits takes positive code lengths. Received: lr_bits='x'"),
        ("--lr_bits=0", "--lr_bits takes positive code lengths. Received: lr_bits='0'"),
        ("--seeds=0,-1", "--seeds takes seeds (integers >= 0). Received: seeds='-1'"),
    ):
        done = subprocess.run(
            [sys.executable, script, flag, f"--runs_dir={tmp_path}", f"--out={tmp_path / 't'}"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode != 0 and f"error: {says}" in done.stderr, done.stderr[-500:]
    assert os.listdir(tmp_path) == []  # nothing trained, no table written


def test_train_defaults_come_from_the_preset_and_a_flag_overrides_one_value(tmp_path):
    from _helpers import script_module
    from absl import flags

    class F:  # the flag values train.build reads, none of the training flags given
        method, dataset, bits, out, overwrite, hparams = (
            "hashnet",
            "digits",
            32,
            str(tmp_path / "r"),
            False,
            "",
        )
        backbone = weights = ortho_weight = features = root = preset = paper = checkpoint_dir = None
        epochs = batch_size = lr = momentum = weight_decay = lr_decay_steps = lr_decay_rate = None
        patience = validation_every = validation_fraction = None
        strategy, seed, mixed_precision, verbose, num_devices = "default", 0, False, "0", 0

    with script_module(
        os.path.join(REPO, "experiments", "train.py"), "train_defaults_under_test"
    ) as script:
        run = script.build(F)
        config, hparams = run.config, run.hparams
        quick = presets.spec("hashnet", "digits", 32)
        assert config.epochs == quick.config.epochs and config.patience == presets.QUICK_PATIENCE
        assert config.lr == quick.config.lr and hparams == quick.hparams
        assert set(run.sources["train"].values()) == {"preset quick"}
        assert run.selection == quick.selection
        run = script.build(type("G", (F,), {"lr": 0.003, "patience": 0}))
        config = run.config
        assert (
            config.lr == 0.003 and config.patience is None and config.epochs == quick.config.epochs
        )
        src = run.sources["train"]
        assert src["lr"] == src["patience"] == "flag" and src["epochs"] == "preset quick"
        assert "lr" not in run.selection
        run = script.build(type("P", (F,), {"dataset": "cifar10"}))
        assert (
            run.sources["preset"] == "paper" and run.config.epochs == presets.PAPER_BASELINE_EPOCHS
        )
        # the flags that are not the preset's default to TrainConfig's
        defaults = training.TrainConfig()
        for name in ("strategy", "seed", "mixed_precision", "checkpoint_dir"):
            assert flags.FLAGS[name].default == getattr(defaults, name)
        assert flags.FLAGS["verbose"].default == str(defaults.verbose)


# ---------------------------------------------------------------------- learning with the defaults
@pytest.fixture(scope="module")
def itq_map(digits):
    from deephash import experiment

    return experiment.run("itq", digits, 32)["map"]


DEFAULT_RUN_METHODS = ["dsrh", "drh", "drh+", "ninh", "cnnh", "dpsh", "dhn", "hashnet", "dseh"]


@pytest.fixture(scope="module")
def default_runs(request, tmp_path_factory):
    """``{method: run directory}`` of ``experiments/train.py --method=NAME --dataset=digits
    --bits=32`` with no training flags, for the methods whose test is selected: separate
    processes, as many at a time as there are cores (one TensorFlow thread each: these
    models cannot keep two busy; ``--threads`` is not a training setting)."""
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    wanted = [
        item.callspec.params["method"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_train_script_defaults_beat_itq_on_digits"
    ]
    root = tmp_path_factory.mktemp("default_runs")

    def train(method: str):
        out = str(root / method.replace("+", "_plus"))
        args = [sys.executable, os.path.join(REPO, "experiments", "train.py")]
        args += [f"--method={method}", "--dataset=digits", "--bits=32", f"--out={out}"]
        done = subprocess.run(
            [*args, "--verbose=0", "--threads=1"], capture_output=True, text=True, timeout=1200
        )
        return method, out, done

    with ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
        results = list(pool.map(train, dict.fromkeys(wanted)))
    return {m: (out, done) for m, out, done in results}


@pytest.mark.slow
@pytest.mark.parametrize("method", DEFAULT_RUN_METHODS)
def test_train_script_defaults_beat_itq_on_digits(method, digits, itq_map, default_runs):
    """experiments/train.py --method=NAME --dataset=digits --bits=32, no training flags."""
    out, done = default_runs[method]
    assert done.returncode == 0, done.stderr[-3000:]
    m = json.loads(open(os.path.join(out, "metrics.json")).read())
    assert m["checksum"] == digits.checksum
    assert m["map"] > itq_map, f"{method}: mAP {m['map']:.4f} <= ITQ {itq_map:.4f}"
    if method != "dseh":  # the DSEH family keeps its fixed alternating schedule
        es = m["early_stopping"]
        assert es["best_epoch"] <= es["epochs_run"] and es["validation_curve"]["map"]
        assert es["best_validation_map"] == max(es["validation_curve"]["map"])
    cfg = json.loads(open(os.path.join(out, "config.json")).read())
    assert cfg["sources"]["preset"] == "quick"


# ---------------------------------------------------------------- report: claims, spread, pictures
def _row(method, seed, value, dataset="digits", bits=32):
    return {
        "dataset": dataset,
        "method": method,
        "bits": bits,
        "seed": seed,
        "metrics": {"map": value},
    }


def test_claims_are_paired_by_seed_with_their_spread_by_hand():
    from deephash import claims

    rows = [
        _row("dsrh", 0, 0.9),
        _row("dsrh", 1, 0.8),
        _row("drh+", 0, 0.7),
        _row("drh+", 1, 0.76),
        _row("drh", 0, 0.75),
        _row("drh", 1, 0.7),
        _row("itq", 0, 0.6),
        _row("itq", 1, 0.65),
        _row("ksh", 0, 0.85),
        _row("ksh", 1, 0.5),
    ]
    out = {(r["claim"], r["comparison"]): r for r in claims.check(rows, "dsrh")}
    d = out[("DSRH > DRH+ > DRH", "dsrh - drh+")]["difference"]  # per seed +0.2, +0.04
    # sample std (ddof=1) of two values: |a - b| / sqrt(2)
    assert d == pytest.approx((0.12, 0.16 / np.sqrt(2), 2))
    assert out[("DSRH > DRH+ > DRH", "dsrh - drh+")]["verdict"] == "holds clearly"
    d = out[("DSRH > DRH+ > DRH", "drh+ - drh")]  # -0.05, +0.06: mean +0.005 < std 0.078
    assert (
        d["difference"] == pytest.approx((0.005, 0.11 / np.sqrt(2), 2))
        and d["verdict"] == "holds within the seed spread"
    )
    # the best shallow method by mean is ksh (0.675 against itq 0.625)
    low = out[("deep methods above shallow ones", "drh - ksh (best shallow)")]
    assert low["difference"] == pytest.approx((0.05, 0.3 / np.sqrt(2), 2))
    rows.append(_row("dseh", 0, 0.5))
    dseh = [r for r in claims.check(rows, "dseh") if r["claim"] == "DSEH above every baseline"]
    assert len(dseh) == 1 and dseh[0]["comparison"] == "dseh - dsrh (best baseline)"
    assert dseh[0]["difference"] == pytest.approx((-0.4, 0.0, 1)) and "not" in dseh[0]["verdict"]
    text = claims.markdown(claims.check(rows, None))
    assert (
        "DSRH > DRH+ > DRH** on digits: holds in 2 of 2" in text
        and "+0.1200 ± 0.1131 (2 seeds)" in text
    )


def test_claims_and_report_name_the_runs_whose_training_collapsed(tmp_path):
    from deephash import claims, report

    rows = [_row(m, seed, v) for m, seed, v in (
        ("dsrh", 0, 0.9), ("dsrh", 1, 0.8), ("drh+", 0, 0.7), ("drh+", 1, 0.76),
        ("drh", 0, 0.75), ("drh", 1, 0.41), ("ksh", 0, 0.6), ("ksh", 1, 0.6),
    )]  # fmt: skip
    rows[5]["metrics"]["early_stopping"] = {
        "collapsed_at_epoch": 40,
        "best_epoch": 25,
        "best_validation_map": 0.413,
    }
    rows[0]["metrics"]["early_stopping"] = {"collapsed_at_epoch": None}
    assert claims.collapsed(rows) == {("digits", "drh", 32): {1: 40}}
    out = {r["comparison"]: r for r in claims.check(rows, "dsrh")}
    assert out["drh+ - drh"]["collapsed"] == ["drh seed 1"]
    assert out["drh - ksh (best shallow)"]["collapsed"] == ["drh seed 1"]
    assert out["dsrh - drh+"]["collapsed"] == []
    text = claims.markdown(list(out.values()))
    assert "holds within the seed spread (training collapsed to one code: drh seed 1) |" in text
    assert "(1 of them pair a run whose training collapsed to one code)" in text
    ctx = report._Report(rows, {}, ["dsrh", "drh+", "drh", "ksh"], "dsrh", str(tmp_path),
                         None, None, None)  # fmt: skip
    section = "\n".join(report._flagged_section(ctx, "digits", "collapses"))
    assert (
        "- drh, 32 bits, seed 1: one code from epoch 40; the best weights kept are epoch 25's "
        "(validation mAP 0.4130), query mAP 0.4100" in section
    )
    assert ctx.headers["digits collapses"] in section
    assert report._flagged_section(ctx, "digits_multi", "collapses") == []


def test_claims_and_report_name_the_runs_that_trained_without_learning(tmp_path):
    from deephash import claims, report

    rows = [_row(m, seed, v, "digits_multi") for m, seed, v in (
        ("dsrh", 0, 0.80), ("dsrh", 1, 0.81), ("drh", 0, 0.45), ("drh", 1, 0.44),
        ("ksh", 0, 0.60), ("ksh", 1, 0.62),
    )]  # fmt: skip

    def es(best, chance=0.372, **more):
        return {"best_validation_map": best, "validation_chance_map": chance, **more}

    rows[0]["metrics"]["early_stopping"] = es(0.84)  # (0.84 - 0.372) / 0.628: 75% closed
    rows[1]["metrics"]["early_stopping"] = es(0.83)
    rows[2]["metrics"]["early_stopping"] = es(0.45)  # 12%: near chance
    rows[3]["metrics"]["early_stopping"] = es(0.40, collapsed_at_epoch=20)  # named as collapsed
    fractions = claims.near_chance(rows)
    assert list(fractions) == [("digits_multi", "drh", 32)]
    assert fractions[("digits_multi", "drh", 32)] == {0: pytest.approx((0.45 - 0.372) / 0.628)}
    rows[0]["metrics"]["early_stopping"] = es(0.5316)  # exactly a quarter: not near chance
    assert ("digits_multi", "dsrh", 32) not in claims.near_chance(rows)
    rows[0]["metrics"]["early_stopping"] = es(0.84)
    out = {r["comparison"]: r for r in claims.check(rows, "dsrh")}
    assert out["drh - ksh (best shallow)"]["near_chance"] == ["drh seed 0"]
    assert out["drh - ksh (best shallow)"]["collapsed"] == ["drh seed 1"]
    assert out["dsrh - ksh (best shallow)"]["near_chance"] == []
    text = claims.markdown(list(out.values()))
    assert (
        "does **not** hold (training collapsed to one code: drh seed 1) "
        "(near chance: drh seed 0) |" in text
    )
    assert "1 of them pair a run that trained without learning (near chance)" in text
    ctx = report._Report(rows, {}, ["dsrh", "drh", "ksh"], "dsrh", str(tmp_path),
                         None, None, None)  # fmt: skip
    section = "\n".join(report._flagged_section(ctx, "digits_multi", "near chance"))
    assert (
        "- drh, 32 bits, seed 0: best validation mAP 0.4500 against 0.3720 for a model that "
        "learned nothing (12% of the gap to 1 closed), query mAP 0.4500" in section
    )
    assert "seed 1" not in section and ctx.headers["digits_multi near chance"] in section
    assert report._flagged_section(ctx, "digits", "near chance") == []


def test_claims_and_report_name_the_runs_the_epoch_cap_cut_short(tmp_path):
    from deephash import claims, report

    rows = [_row(m, seed, v, "digits_multi") for m, seed, v in (
        ("dpsh", 0, 0.88), ("dpsh", 1, 0.89), ("drh", 0, 0.45), ("drh", 1, 0.44),
        ("ksh", 0, 0.60), ("ksh", 1, 0.62),
    )]  # fmt: skip

    def es(maps, stopped=False, patience=3, best=None, **more):
        return {
            "stopped_early": stopped, "patience": patience, "epoch_cap": 13,
            "best_validation_map": max(maps) if best is None else best,
            "validation_chance_map": 0.372,
            "validation_curve": {"epoch": [2 * (i + 1) for i in range(len(maps))], "map": maps},
            **more,
        }  # fmt: skip

    # dpsh seed 0: best 0.80 up to epoch 6 (before its last 3 validations), 0.85 by epoch 12
    rows[0]["metrics"]["early_stopping"] = es([0.70, 0.80, 0.79, 0.83, 0.85, 0.84])
    # dpsh seed 1: ended at the cap on a plateau (+0.008 over its last 3 validations)
    rows[1]["metrics"]["early_stopping"] = es([0.70, 0.84, 0.845, 0.848, 0.84])
    # drh seed 0: rising, but near chance (named as such, not twice)
    rows[2]["metrics"]["early_stopping"] = es([0.38, 0.39, 0.40, 0.42, 0.45])
    # drh seed 1: rising by 0.2, but early stopping fired: not cut short
    rows[3]["metrics"]["early_stopping"] = es([0.60, 0.70, 0.80, 0.80], stopped=True)
    gains = claims.still_improving(rows)
    assert dict(gains) == {("digits_multi", "dpsh", 32): {0: pytest.approx(0.05)}}
    assert claims.near_chance(rows)[("digits_multi", "drh", 32)].keys() == {0}
    # a curve no longer than the patience: the gain is measured from its first validation
    rows[1]["metrics"]["early_stopping"] = es([0.70, 0.75], patience=3)
    assert claims.still_improving(rows)[("digits_multi", "dpsh", 32)][1] == pytest.approx(0.05)
    # DSEH's phased record (patience per ImgNet phase) and patience off are not judged
    rows[1]["metrics"]["early_stopping"] = es([0.70, 0.75], patience_counts="per phase")
    rows[0]["metrics"]["early_stopping"] = es([0.70, 0.80, 0.79, 0.83, 0.85, 0.84], patience=0)
    assert claims.still_improving(rows) == {}
    rows[0]["metrics"]["early_stopping"] = es([0.70, 0.80, 0.79, 0.83, 0.85, 0.84])
    out = {r["comparison"]: r for r in claims.check(rows, "dsrh")}
    assert out["dpsh - ksh (best shallow)"]["still_improving"] == ["dpsh seed 0"]
    assert out["drh - ksh (best shallow)"]["still_improving"] == []
    text = claims.markdown(list(out.values()))
    assert "holds clearly (still improving at the epoch cap: dpsh seed 0) |" in text
    assert "1 of them pair a run cut short by the epoch cap while still improving" in text
    ctx = report._Report(rows, {}, ["dpsh", "drh", "ksh"], "dsrh", str(tmp_path),
                         None, None, None)  # fmt: skip
    section = "\n".join(report._flagged_section(ctx, "digits_multi", "still improving"))
    assert (
        "- dpsh, 32 bits, seed 0: best validation mAP 0.8000 up to epoch 6, 0.8500 by epoch 12 "
        "(epoch cap 13), query mAP 0.8800" in section
    )
    assert "drh" not in section and ctx.headers["digits_multi still improving"] in section
    assert report._flagged_section(ctx, "digits", "still improving") == []


def test_report_shows_mean_and_spread_and_draws_the_retrieval_figure(tmp_path):
    from deephash import experiment, report, runs

    dirs = []
    for seed in (0, 1):
        cfg = training.TrainConfig(seed=seed)
        for m in ("lsh", "itq"):
            d = str(tmp_path / f"{m}-{seed}")
            experiment.run(m, "digits", 8, cfg, d)
            dirs.append(d)
    rep = report.write_report(
        [str(tmp_path)], str(tmp_path / "out"), paper="dsrh", retrieval_bits=8
    )
    header, trows = rep["tables"][("digits", "map")]
    rows = report.collect(report.find_runs([str(tmp_path)]))
    itq = [r["metrics"]["map"] for r in rows if r["method"] == "itq"]
    assert [r for r in trows if r[0] == "itq"][0][
        2
    ] == f"{np.mean(itq):.4f} ± {np.std(itq, ddof=1):.4f}"
    csv_text = open(tmp_path / "out" / "digits_map.csv").read()
    assert f"{np.mean(itq):.4f}" in csv_text and "±" not in csv_text
    png = tmp_path / "out" / "digits_retrieval_8b.png"
    assert png.exists() and png.stat().st_size > 1000
    assert "deep methods above shallow" not in rep["markdown"]  # no deep runs: no such claim
    # the ranking the figure draws: Hamming distance, ties by database index
    codes = runs.load_codes(os.path.join(dirs[1], "codes.npz"))
    dist = (codes["query"][0][None, :] != codes["database"]).sum(1)
    top = np.argsort(dist, kind="stable")[:8]
    assert list(dist[top]) == sorted(dist)[:8] and all(np.diff(top[dist[top] == dist[top][0]]) > 0)


@pytest.mark.parametrize("method", ["dpsh", "drh", "dseh"])
def test_fast_validation_encoding_equals_encode(digits, method):
    _, val = early_stopping.carve(digits, 0.2, seed=0)
    model = methods.create(method, bits=16, dataset=digits)
    np.testing.assert_array_equal(
        early_stopping.fast_encode(model, val.combined()), model.encode(val.combined())
    )
