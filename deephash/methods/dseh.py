"""DSEH (Li et al., IJCAI 2018): deep joint semantic-embedding hashing, and its ablations.

Two networks in one Keras model (inputs ``[images, labels]``):

* **LabNet** ``L -> 4096 (relu) -> 512 semantic F (tanh) -> K codes H (tanh) -> c labels Ŷ
  (sigmoid)``, randomly initialised, input the multi-hot label vector;
* **ImgNet** ``I -> backbone (CNN-F through fc7) -> 512 semantic (tanh) -> K hash logits``;
  image codes are ``sign`` of the hash logits (bit = logit > 0).

Losses (DESIGN.md §2; ``l(Θ, s) = softplus(Θ) - sΘ``, ``Θ_ij = ½ a_iᵀ b_j``,
``s_ij = positive_similarity`` when items i and j share a label, else 0):

* LabNet, per training item i of the batch:
  ``J1_i + α J2_i + β J3_i + γ J4_i`` with ``J1_i = mean_j l(½ F_iᵀ F_j)``,
  ``J2_i = mean_j l(½ H_iᵀ H_j)``, ``J3_i = || |H_i| - 1 ||_1``, ``J4_i = ||y_i - ŷ_i||²``;
* ImgNet: ``J1_i + η J2_i`` with ``J1_i = mean_j l(½ F^img_iᵀ F^lab_j)`` and ``J2_i`` the
  sigmoid cross-entropy between the hash logits of image i and ``sign(H^lab(y_i))``, summed
  over bits.

**Which j.** The pairwise sums run over every item j of the training split, against STORED
LabNet outputs ``F^lab_j, H^lab_j`` of all training labels (a (N, 512) and (N, K) table):
during an ImgNet phase LabNet is fixed, so the table is exact; during a LabNet phase it is
recomputed at the start of every epoch (gradients flow through the batch side only, as in
the authors' code). A per-item loss therefore does not depend on how the batch is split
over replicas: under ``MirroredStrategy`` each replica averages its items and the result
is divided by the replica count (``training.scale_to_replicas``), giving exactly the
global-batch mean. The paper writes the pairwise terms as sums over all pairs; we average
over j (divide by N) so that α..η keep their meaning whatever the training-set size.

**Algorithm 1.** ``rounds`` times: ``labnet_epochs`` epochs of LabNet (batch
``labnet_batch_size``, default 32, lr ``labnet_lr``, default ``lr_multiplier * config.lr``
since all its layers are new), then ``imgnet_epochs`` epochs of ImgNet with LabNet fixed
(batch ``config.batch_size``, the paper's 128; backbone at ``config.lr``, the new semantic
and hash layers at ``lr_multiplier * config.lr`` through gradient multipliers;
``lr_multiplier`` is 10 for a backbone loaded with pretrained weights, as in the paper, and
1 for a randomly initialised one, whose layers are all new). SGD with momentum and the
step schedule of ``config`` (a fresh optimiser per phase), Caffe-style weight decay on the
trained network's kernels.

**The authors' code** (lelan-li/DSEH, which produced the published numbers) differs from the
text above in named, selectable ways (docs/dseh.md has the table): ``loss_scale="authors"``
(every term a per-element mean, the label term halved), ``code_logit_scale=10`` and
``code_target=0.999`` (ImgNet's code cross-entropy), ``semantic_activation="relu"``,
``hash_input="pre_activation"`` (the hash layer reads the semantic layer before its ReLU),
``labnet_hidden=2048`` with ``labnet_lrn=True``, ``labnet_semantic_weight`` (0 on ImageNet),
``imgnet_similarity=0.999``, ``optimizer="adam"`` with ``clip_value`` /
``imgnet_clip_value``, ``lr_decay_epochs`` / ``lr_decay_rate`` / ``round_lr_decay`` (x10^-0.5
every 10 epochs and every round), per-round ``labnet_epochs``, ``joint_table="imgnet"``
(Algorithm 1: from round 2 LabNet's stored table starts as ImgNet's semantic features and
codes ``sign(y^v)``) and ``evaluation="authors"`` (Table 2 over training + database images at
full depth). ``presets.dseh_paper`` sets all of them for ``--preset=paper``.

**Variants** (Table 2): ``dseh-s`` ImgNet without its semantic term J1; ``dseh-ss`` neither
network uses semantic (F) supervision; ``dseh-l`` LabNet without the label term J4;
``dseh-a`` one round (LabNet once, then ImgNet once: one third of the training of ``dseh``
with the default 3 rounds; give it 3x the epochs for an equal budget).
"""

from __future__ import annotations

import logging
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from deephash import losses, training
from deephash.data import pipelines
from deephash.methods.base import register
from deephash.methods.hparams import (
    REQUIRED,
    HParam,
    choice,
    flag,
    integer,
    number,
    optional,
    protocol,
)
from deephash.methods.keras_method import KerasHashingMethod
from deephash.validation import check_int, fail

log = logging.getLogger(__name__)

VARIANTS = ("dseh", "dseh-s", "dseh-ss", "dseh-l", "dseh-a")
LOSS_SCALES = ("paper", "authors")  # sums as printed / per-element means of the released code
ACTIVATIONS = ("tanh", "relu")  # semantic layers: our choice / the released code
HASH_INPUTS = (
    "activated",
    "pre_activation",
)  # ImgNet's hash layer reads the semantic layer after / before it
OPTIMIZERS = ("sgd", "adam")  # the paper's text / the released code
JOINT_TABLES = (
    "own",
    "imgnet",
)  # LabNet's stored table: its own outputs / Algorithm 1's ImgNet outputs
EVALUATIONS = (
    "protocol",
    "authors",
)  # Table 2 on the protocol's database and depth / the released evaluate.py
DEFAULT_ROUNDS = 3
_LABNET_LAYERS = ("lab_fc1", "lab_semantic", "lab_hash", "lab_label")
_IMGNET_HEAD = ("img_semantic", "img_hash")


_TRACKERS = (
    "labnet_loss",
    "labnet_semantic",
    "labnet_hash",
    "labnet_quantization",
    "labnet_label",
    "imgnet_loss",
    "imgnet_semantic",
    "imgnet_codes",
)


def _image_mean(value, name, owner):
    """3 RGB values or an ``(h, w, 3)`` average image, as (nested) lists of floats."""
    m = np.asarray(value, np.float32)
    if not ((m.ndim == 1 and m.shape[0] == 3) or (m.ndim == 3 and m.shape[2] == 3)):
        fail(name, "3 (RGB) values or an (h, w, 3) average image", f"shape {m.shape}", owner)
    return m.tolist()


def _epochs(owner: str, name: str, value, rounds: int):
    """None, a positive int, or one positive int per round (a tuple of ``rounds`` values)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if len(value) != rounds:
            fail(name, f"one count per round ({rounds})", list(value), owner)
        return tuple(check_int(v, name, owner=owner) for v in value)
    return check_int(value, name, owner=owner)


def _pretrained(hp: dict, owner: str):
    """``(weights, image_mean)``: a named backbone's weights resolved ("imagenet" -> the
    cached published file) and, for cnn_f with weights and no ``image_mean``, the mean of
    the MatConvNet file (its full average image, which MatConvNet and the authors' code
    subtract; older files store only a per-channel mean)."""
    backbone, weights, image_mean = hp["backbone"], hp["weights"], hp["image_mean"]
    if not isinstance(backbone, str):
        return weights, image_mean
    from deephash.backbones.pretrained import resolve

    weights = resolve(backbone.lower(), weights)
    if image_mean is None and weights is not None and backbone.lower() == "cnn_f":
        from deephash.backbones.cnn_f import matconvnet_metadata

        meta = matconvnet_metadata(weights)
        average = meta.get("average_image")
        if average is not None and np.ndim(average) == 3:
            image_mean = _image_mean(average, "image_mean", owner)
        elif meta["mean"] is not None:
            image_mean = _image_mean([float(m) for m in meta["mean"]], "image_mean", owner)
    return weights, image_mean


def _imgnet_head(hp: dict) -> dict:
    """ImgNet's new layers: the semantic layer (``semantic_fc`` + its activation
    ``semantic`` when the hash layer reads the pre-activation), the hash logits and the
    tanh codes."""
    dim, act = hp["semantic_dim"], hp["semantic_activation"]
    layers = {}
    if hp["hash_input"] == "pre_activation":
        layers["semantic_fc"] = keras.layers.Dense(dim, dtype="float32", name="img_semantic_fc")
        layers["semantic"] = keras.layers.Activation(act, dtype="float32", name="img_semantic")
    else:
        layers["semantic"] = keras.layers.Dense(
            dim, activation=act, dtype="float32", name="img_semantic"
        )
    layers["hash"] = keras.layers.Dense(hp["bits"], dtype="float32", name="img_hash")
    layers["codes"] = keras.layers.Activation("tanh", dtype="float32", name="img_codes")
    return layers


def _labnet_layers(hp: dict) -> dict:
    """LabNet's layers: ``hidden`` (fc1 + ReLU, then the authors' LRN with MatConvNet's
    CNN-F parameters when ``labnet_lrn``), the semantic layer, the codes and the labels."""
    width = hp["labnet_hidden"]
    hidden = [keras.layers.Dense(width, activation="relu", name="lab_fc1")]
    if hp["labnet_lrn"]:
        from deephash.layers import LocalResponseNormalization

        hidden += [
            keras.layers.Reshape((1, 1, width), name="lab_lrn_in"),
            LocalResponseNormalization(2, 2.0, 1e-4, 0.75, name="lab_lrn"),
            keras.layers.Reshape((width,), name="lab_lrn_out"),
        ]
    return {
        "hidden": hidden,
        "semantic": keras.layers.Dense(
            hp["semantic_dim"],
            activation=hp["semantic_activation"],
            dtype="float32",
            name="lab_semantic",
        ),
        "hash": keras.layers.Dense(hp["bits"], activation="tanh", dtype="float32", name="lab_hash"),
        "label": keras.layers.Dense(
            hp["num_classes"], activation="sigmoid", dtype="float32", name="lab_label"
        ),
    }


class _Store:
    """Untracked holder of the stored LabNet outputs (not part of the saved model)."""

    def __init__(self, labels, semantic_dim: int, bits: int):
        n = labels.shape[0]
        self.labels = tf.Variable(labels, trainable=False, name="dseh_train_labels")
        self.semantic = tf.Variable(
            tf.zeros((n, semantic_dim)), trainable=False, name="dseh_lab_semantic"
        )
        self.codes = tf.Variable(tf.zeros((n, bits)), trainable=False, name="dseh_lab_codes")


@register("dseh")
@register("dseh-s")
@register("dseh-ss")
@register("dseh-l")
@register("dseh-a")
@keras.saving.register_keras_serializable(package="deephash")
class DSEH(KerasHashingMethod):
    """DSEH and its ablations as one Keras model (see the module docstring).

    Args:
        bits: code length K.
        num_classes: label vector length c.
        backbone: ImgNet's backbone, a name for ``deephash.backbones.get`` ("cnn_f",
            "small_cnn", "vgg19") or a ``keras.Model`` (images -> features (b, d)).
        variant: "dseh", "dseh-s", "dseh-ss", "dseh-l" or "dseh-a".
        rounds: alternating rounds of Algorithm 1 (default 3; "dseh-a" has 1).
        labnet_epochs / imgnet_epochs: epochs of each phase per round (None: ``config.epochs``).
        alpha, beta, gamma: LabNet weights of J2 (codes), J3 (quantization), J4 (labels).
        eta: ImgNet weight of J2 (code cross-entropy).
        positive_similarity: s_ij of a similar pair (1; the paper uses 5 on ImageNet).
        labnet_batch_size: LabNet's batch (the paper's 32); ImgNet uses ``config.batch_size``.
        labnet_lr: LabNet's learning rate (None: ``lr_multiplier * config.lr``).
        lr_multiplier: learning-rate factor of ImgNet's new layers (and LabNet) over the
            backbone: None = 10 when the backbone is loaded with pretrained ``weights`` (the
            paper), 1 when it starts from random initialisation (all layers are new then).
        semantic_dim, labnet_hidden: widths of the semantic layer (512) and LabNet's first
            layer (4096).
        image_shape: raw image shape (h, w, ch) the model encodes (None: file-based data).
        image_mean: per-channel RGB mean subtracted by the cnn_f preprocessing (None: taken
            from the MatConvNet file when ``weights`` is given, else ImageNet's).
        preprocessing: ``data.preprocessing.for_backbone`` name (derived from a named backbone).
        augment: augment training images (the backbone preprocessing's training mode).
        weights, input_shape: backbone weights file / input shape (construction only).
    """

    code_threshold = 0.0
    method = "dseh"
    HPARAMS = {
        **protocol("bits"),
        "num_classes": HParam(REQUIRED, integer()),
        **protocol("backbone", backbone="cnn_f"),
        "variant": HParam("dseh", choice(*VARIANTS, lower=True)),
        "rounds": HParam(None, optional(integer())),  # None: 1 for dseh-a, else DEFAULT_ROUNDS
        "labnet_epochs": HParam(None),  # None, an int, or one int per round (check_related)
        "imgnet_epochs": HParam(None),
        "alpha": HParam(1.0, number(minimum=0)),
        "beta": HParam(0.005, number(minimum=0)),
        "gamma": HParam(1.0, number(minimum=0)),
        "eta": HParam(1.0, number(minimum=0)),
        "positive_similarity": HParam(1.0, number(positive=True)),
        "labnet_batch_size": HParam(32, integer()),
        "labnet_lr": HParam(None, optional(number(minimum=0))),
        # None: 10 with pretrained weights, else 1 (check_related)
        "lr_multiplier": HParam(None, optional(number(positive=True))),
        "semantic_dim": HParam(512, integer()),
        "labnet_hidden": HParam(4096, integer()),
        **protocol("image_shape"),
        "image_mean": HParam(None, optional(_image_mean)),
        **protocol("preprocessing", "augment"),
        # the authors' code (module docstring)
        "loss_scale": HParam("paper", choice(*LOSS_SCALES)),
        "code_logit_scale": HParam(1.0, number(positive=True)),
        "code_target": HParam(1.0, number(positive=True, maximum=1)),
        "semantic_activation": HParam("tanh", choice(*ACTIVATIONS)),
        "hash_input": HParam("activated", choice(*HASH_INPUTS)),
        "labnet_lrn": HParam(False, flag),
        "labnet_semantic_weight": HParam(1.0, number(minimum=0)),
        "imgnet_similarity": HParam(None, optional(number(positive=True))),
        "optimizer": HParam("sgd", choice(*OPTIMIZERS), attr="optimizer_name"),
        "clip_value": HParam(None, optional(number(positive=True))),
        "imgnet_clip_value": HParam(None, optional(number(positive=True))),
        "lr_decay_epochs": HParam(None, optional(integer())),
        "lr_decay_rate": HParam(0.1, number(positive=True)),
        "round_lr_decay": HParam(1.0, number(positive=True)),
        "joint_table": HParam("own", choice(*JOINT_TABLES)),
        "evaluation": HParam("protocol", choice(*EVALUATIONS)),
        **protocol("weights", "input_shape"),
    }

    def __init__(self, bits: int, num_classes: int = REQUIRED, backbone: Any = None, **kwargs):
        hp = self.check_hparams(
            bits=bits, num_classes=num_classes, backbone=backbone, **self.pop_hparams(kwargs)
        )
        variant = hp["variant"]
        # === Layers ===
        hp["weights"], hp["image_mean"] = _pretrained(hp, variant)
        backbone_model, hp["preprocessing"] = self.make_backbone(hp, variant)
        img = _imgnet_head(hp)
        lab = _labnet_layers(hp)

        # === Functional model ===
        images = keras.Input(shape=tuple(backbone_model.input_shape[1:]), name="images")
        labels = keras.Input(shape=(hp["num_classes"],), name="labels")
        # ImgNet: backbone -> semantic layer -> hash logits (-> tanh codes)
        features = backbone_model(images)
        if hp["hash_input"] == "pre_activation":  # the authors' hash layer reads fc8 pre-ReLU
            img_pre = img["semantic_fc"](features)
            img_semantic = img["semantic"](img_pre)
            img_hash = img["hash"](img_pre)
        else:
            img_semantic = img["semantic"](features)
            img_hash = img["hash"](img_semantic)
        img_codes = img["codes"](img_hash)
        # LabNet: labels -> hidden (-> LRN) -> semantic -> codes -> labels
        hidden = labels
        for layer in lab["hidden"]:
            hidden = layer(hidden)
        lab_semantic = lab["semantic"](hidden)
        lab_codes = lab["hash"](lab_semantic)
        lab_labels = lab["label"](lab_codes)
        outputs = {
            "img_semantic": img_semantic,
            "img_hash": img_hash,
            "img_codes": img_codes,
            "lab_semantic": lab_semantic,
            "lab_codes": lab_codes,
            "lab_labels": lab_labels,
        }
        kwargs.setdefault("name", variant.replace("-", "_"))
        super().__init__(inputs=[images, labels], outputs=outputs, **kwargs)

        # === Config ===
        self.backbone = backbone_model
        self.set_hparams(hp)

        # === Training state ===
        # sub-networks share the layers above; set without Keras tracking (not saved twice)
        labnet_outputs = {"semantic": lab_semantic, "codes": lab_codes, "labels": lab_labels}
        object.__setattr__(self, "labnet", keras.Model(labels, labnet_outputs, name="labnet"))
        imgnet_outputs = {"semantic": img_semantic, "hash": img_hash}
        object.__setattr__(self, "imgnet", keras.Model(images, imgnet_outputs, name="imgnet"))
        object.__setattr__(self, "_phase", "imgnet")
        object.__setattr__(self, "_store", None)
        object.__setattr__(self, "_head_optimizer", None)
        object.__setattr__(self, "_skip_refresh", False)
        self._trackers = {name: keras.metrics.Mean(name=name) for name in _TRACKERS}

    @classmethod
    def check_related(cls, hp: dict, owner: str) -> dict:
        """Algorithm 1's rounds (dseh-a: one) and epochs per round; ``lr_multiplier``'s
        default (10 with pretrained ``weights``, else 1)."""
        if hp["rounds"] is None:
            hp["rounds"] = 1 if hp["variant"] == "dseh-a" else DEFAULT_ROUNDS
        if hp["variant"] == "dseh-a" and hp["rounds"] != 1:
            fail("rounds", "1 (dseh-a trains one round, no alternation)", hp["rounds"], owner)
        for key in ("labnet_epochs", "imgnet_epochs"):
            hp[key] = _epochs(owner, key, hp[key], hp["rounds"])
        if hp["lr_multiplier"] is None:  # new layers learn 10x faster than a PRETRAINED backbone
            hp["lr_multiplier"] = 10.0 if hp["weights"] is not None else 1.0
        return hp

    def hparams(self) -> dict:
        """The method's hyper-parameters (for config.json); an average image as its shape."""
        out = super().hparams()
        if self.image_mean is not None and np.ndim(self.image_mean) == 3:  # not 150k numbers
            out["image_mean"] = f"average image {tuple(np.shape(self.image_mean))}"
        return out

    # ------------------------------------------------------------------ models and encoding
    def preprocessor(self):
        if self.preprocessing in (None, "none"):
            return None
        from deephash.data import preprocessing

        kw = (
            {"mean": self.image_mean}
            if self.image_mean is not None and self.preprocessing == "cnn_f"
            else {}
        )
        return preprocessing.for_backbone(
            self.preprocessing, input_shape=tuple(self.inputs[0].shape[1:]), **kw
        )

    def hash_model(self) -> keras.Model:
        """Preprocessed images -> relaxed ImgNet codes ``tanh(hash logits)`` in (-1, 1),
        ``(b, bits)``."""
        return keras.Model(
            self.inputs[0], self.get_layer("img_codes").output, name=f"{self.name}_hash"
        )

    def code_logits_model(self) -> keras.Model:
        return keras.Model(
            self.inputs[0], self.get_layer("img_hash").output, name=f"{self.name}_hash_logits"
        )

    def _labels(self, labels) -> np.ndarray:
        y = np.asarray(getattr(labels, "labels", labels))
        if y.ndim != 2 or y.shape[1] != self.num_classes or y.shape[0] == 0:
            raise ValueError(
                f"{self.name}: labels must be (n, {self.num_classes}) multi-hot, "
                f"got shape {y.shape}"
            )
        if not np.all(np.isfinite(y.astype(np.float64))):
            raise ValueError(f"{self.name}: labels contain NaN or infinite values")
        return y.astype(np.float32)

    def _labnet_outputs(self, labels, batch_size: int = 4096) -> dict:
        y = self._labels(labels)
        parts = [
            self.labnet(y[i : i + batch_size], training=False) for i in range(0, len(y), batch_size)
        ]
        return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}

    def encode_labels(self, labels) -> np.ndarray:
        """LabNet codes of multi-hot label vectors (or a Split's labels): bool ``(n, bits)``
        = H > 0."""
        return self._labnet_outputs(labels)["codes"] > 0

    def semantic_features(self, images=None, labels=None):
        """Semantic-layer features, float32 ``(n, semantic_dim)``: ImgNet's of ``images`` (raw
        [0, 255] or a Split) and/or LabNet's of ``labels``; both given -> ``(image_features,
        label_features)``."""
        if images is None and labels is None:
            raise ValueError(f"{self.name}: semantic_features needs images and/or labels")
        out = []
        if images is not None:
            sem = keras.Model(self.inputs[0], self.get_layer("img_semantic").output)
            out.append(self._predict(sem, images, 256))
        if labels is not None:
            out.append(self._labnet_outputs(labels)["semantic"].astype(np.float32))
        return out[0] if len(out) == 1 else tuple(out)

    def extra_metrics(self, dataset, query_codes: np.ndarray, db_codes: np.ndarray) -> dict:
        """Table 2's quantities. ``n_h`` = distinct LabNet codes of the TRAINING labels (as
        the authors' DSEH.py counts them in ``save_all_label_hash``; ``n_h_database`` over the
        database labels as well). With ``evaluation="protocol"``: ``map_l`` = mAP of LabNet
        codes of the query labels against those of the database labels, ``map_i`` = mAP of
        the ImgNet codes (equal to ``map``), both at the protocol's depth. With
        ``evaluation="authors"`` (the released evaluate.py, full ranking): ``map_l`` against
        the database labels' LabNet codes, ``map_i`` against the ImgNet codes of the
        training AND database images (``test_label`` / ``test_image`` in DSEH.py)."""
        from deephash import metrics

        q, db = dataset.query.labels, dataset.database.labels
        lab_q, lab_db = self.encode_labels(q), self.encode_labels(db)
        out = {"n_h_database": metrics.distinct_codes(lab_db), "table2_evaluation": self.evaluation}
        train = getattr(dataset, "train", None)
        if train is not None and getattr(train, "labels", None) is not None and len(train.labels):
            out["n_h"] = metrics.distinct_codes(self.encode_labels(train.labels))
            out["n_h_set"] = "training labels"
        else:
            out["n_h"] = out["n_h_database"]
            out["n_h_set"] = "database labels"
        if self.evaluation == "authors":
            train_codes = self.encode(train)
            retrieval_codes = np.concatenate(
                [np.asarray(train_codes, bool), np.asarray(db_codes, bool)]
            )
            retrieval_labels = np.concatenate([np.asarray(train.labels), np.asarray(db)])
            out["map_l"] = float(metrics.mean_average_precision(lab_q, lab_db, q, db))
            out["map_i"] = float(
                metrics.mean_average_precision(query_codes, retrieval_codes, q, retrieval_labels)
            )
            out["map_i_set"] = "training + database images, full depth"
        else:
            depth = dataset.protocol.map_depth
            out["map_l"] = float(metrics.mean_average_precision(lab_q, lab_db, q, db, top_k=depth))
            out["map_i"] = float(
                metrics.mean_average_precision(query_codes, db_codes, q, db, top_k=depth)
            )
        return out

    # ------------------------------------------------------------------ training
    @property
    def metrics(self):
        prefix = getattr(self, "_phase", "imgnet") + "_"
        return [t for name, t in getattr(self, "_trackers", {}).items() if name.startswith(prefix)]

    def _layer_weights(self, names) -> list:
        return [w for n in names for w in self.get_layer(n).trainable_weights]

    def labnet_weights(self) -> list:
        return self._layer_weights(_LABNET_LAYERS)

    def imgnet_weights(self) -> tuple[list, list]:
        """(backbone weights, new head weights) of ImgNet."""
        head = (("img_semantic_fc",) if self.hash_input == "pre_activation" else ()) + _IMGNET_HEAD
        return list(self.backbone.trainable_weights), self._layer_weights(head)

    def _pairwise(self, a, b, s):
        return tf.reduce_mean(losses.pairwise_likelihood_loss(a, b, s, reduction="none"), axis=1)

    def labnet_losses(self, y, training_mode: bool = True) -> dict:
        """Per-item LabNet terms ``(b,)`` against the stored table (see the module docstring)."""
        out = self.labnet(y, training=training_mode)
        store = self._store
        s = losses.similarity_matrix(y, store.labels, self.positive_similarity)
        terms = {}
        if self.variant != "dseh-ss":
            terms["semantic"] = self._pairwise(out["semantic"], store.semantic, s)
        terms["hash"] = self._pairwise(out["codes"], store.codes, s)
        authors = self.loss_scale == "authors"
        terms["quantization"] = losses.quantization_loss(
            out["codes"], over="mean" if authors else "sum"
        )
        if self.variant != "dseh-l":
            label = losses.label_regression_loss(
                y, out["labels"], over="mean" if authors else "sum"
            )
            terms["label"] = 0.5 * label if authors else label  # the authors' tf.nn.l2_loss halves
        return terms

    def _labnet_total(self, terms: dict):
        weights = {
            "semantic": self.labnet_semantic_weight,
            "hash": self.alpha,
            "quantization": self.beta,
            "label": self.gamma,
        }
        return tf.add_n([weights[k] * v for k, v in terms.items()])

    def imgnet_losses(self, images, y, training_mode: bool = True) -> dict:
        out = self.imgnet(images, training=training_mode)
        target = self.labnet(y, training=False)["codes"]
        terms = {}
        if self.variant not in ("dseh-s", "dseh-ss"):
            positive = (
                self.positive_similarity
                if self.imgnet_similarity is None
                else self.imgnet_similarity
            )
            s = losses.similarity_matrix(y, self._store.labels, positive)
            terms["semantic"] = self._pairwise(out["semantic"], self._store.semantic, s)
        terms["codes"] = losses.code_cross_entropy(
            out["hash"],
            tf.stop_gradient(target),
            over="mean" if self.loss_scale == "authors" else "sum",
            logit_scale=self.code_logit_scale,
            target_value=self.code_target,
        )
        return terms

    def _imgnet_total(self, terms: dict):
        return terms.get("semantic", 0.0) + self.eta * terms["codes"]

    def train_step(self, data):
        wd = float(getattr(self, "_weight_decay", 0.0) or 0.0)
        if self._phase == "labnet":
            y = tf.cast(data, tf.float32)
            variables = self.labnet_weights()
            with tf.GradientTape() as tape:
                terms = self.labnet_losses(y)
                total = training.scale_to_replicas(tf.reduce_mean(self._labnet_total(terms)))
                total += training.scale_to_replicas(training.weight_decay_loss(variables, wd))
                scaled = self.optimizer.scale_loss(total)
            grads = tape.gradient(scaled, variables)
        else:
            images, y = data
            y = tf.cast(y, tf.float32)
            base, head = self.imgnet_weights()
            variables = base + head
            with tf.GradientTape() as tape:
                terms = self.imgnet_losses(images, y)
                total = training.scale_to_replicas(tf.reduce_mean(self._imgnet_total(terms)))
                total += training.scale_to_replicas(training.weight_decay_loss(variables, wd))
                scaled = self.optimizer.scale_loss(total)
            grads = tape.gradient(scaled, variables)
            n_base = len(base)
            if self._head_optimizer is not None:  # Adam: a second optimiser at lr_multiplier x lr
                self._head_optimizer.apply_gradients(
                    [(g, v) for g, v in zip(grads[n_base:], head) if g is not None]
                )
                grads, variables = grads[:n_base], base
            else:  # SGD: a gradient multiplier equals a learning-rate multiplier
                grads = grads[:n_base] + [
                    None if g is None else g * self.lr_multiplier for g in grads[n_base:]
                ]
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
        if pairs:
            self.optimizer.apply_gradients(pairs)
        return self._update_trackers(terms)

    def _update_trackers(self, terms: dict) -> dict:
        phase = self._phase
        total = self._labnet_total(terms) if phase == "labnet" else self._imgnet_total(terms)
        self._trackers[f"{phase}_loss"].update_state(tf.reduce_mean(total))
        for k, v in terms.items():
            self._trackers[f"{phase}_{k}"].update_state(tf.reduce_mean(v))
        keys = [f"{phase}_loss", *(f"{phase}_{k}" for k in terms)]
        return {k: self._trackers[k].result() for k in keys}

    def refresh_from_imgnet(self, images) -> None:
        """Algorithm 1's joint step: set LabNet's stored table from ImgNet's outputs of the
        training ``images`` (a Split or raw images): semantic features, and codes
        ``h^l = sign(y^v)`` of the hash logits (as in the authors' DSEH.py ``train_label``)."""
        if self._store is None:
            raise RuntimeError(
                f"{self.name}: no training labels yet; call refresh_store(labels) or fit_dataset"
            )
        semantic = self.semantic_features(images=images)
        logits = self._predict(self.code_logits_model(), images, 256)
        if len(semantic) != self._store.labels.shape[0]:
            raise ValueError(
                f"{self.name}: {len(semantic)} images for a table of "
                f"{self._store.labels.shape[0]} labels"
            )
        self._store.semantic.assign(np.asarray(semantic, np.float32))
        self._store.codes.assign(np.where(np.asarray(logits) >= 0, 1.0, -1.0).astype(np.float32))

    def refresh_store(self, labels=None) -> None:
        """Recompute the stored LabNet outputs of all training labels; ``labels`` (n, c)
        starts a new table (``fit_dataset`` does this with the training split's labels)."""
        if labels is not None:
            labels = self._labels(labels)
            with self.distribute_strategy.scope():
                object.__setattr__(self, "_store", _Store(labels, self.semantic_dim, self.bits))
        if self._store is None:
            raise RuntimeError(
                f"{self.name}: no training labels yet; call refresh_store(labels) or fit_dataset"
            )
        out = self._labnet_outputs(self._store.labels.numpy())
        self._store.semantic.assign(out["semantic"])
        self._store.codes.assign(out["codes"])

    def phases(self, config: training.TrainConfig) -> list[tuple[str, int]]:
        """Algorithm 1's schedule: ``[(phase, epochs), ...]``, LabNet then ImgNet per round
        (``labnet_epochs`` / ``imgnet_epochs`` may give one count per round)."""

        def per_round(v, r):
            if v is None:
                return int(config.epochs)
            return int(v[r]) if isinstance(v, (list, tuple)) else int(v)

        return [
            p
            for r in range(self.rounds)
            for p in (
                ("labnet", per_round(self.labnet_epochs, r)),
                ("imgnet", per_round(self.imgnet_epochs, r)),
            )
        ]

    def make_optimizer(
        self, phase_config, steps: int, round_index: int, clip: float | None, lr_factor: float = 1.0
    ):
        """The optimiser of one phase: ``config``'s SGD (momentum, step schedule) or Adam;
        the learning rate is ``lr_factor * config.lr * round_lr_decay ** round_index``,
        times ``lr_decay_rate`` every ``lr_decay_epochs`` epochs when that is set;
        gradients clipped elementwise to ``[-clip, clip]`` when ``clip`` is set."""
        lr0 = float(phase_config.lr) * lr_factor * self.round_lr_decay**round_index
        lr: Any = lr0
        if self.lr_decay_epochs is not None:
            lr = keras.optimizers.schedules.ExponentialDecay(
                lr0, self.lr_decay_epochs * steps, self.lr_decay_rate, staircase=True
            )
        elif phase_config.lr_decay_steps:
            lr = keras.optimizers.schedules.ExponentialDecay(
                lr0,
                int(phase_config.lr_decay_steps),
                float(phase_config.lr_decay_rate),
                staircase=True,
            )
        kw = {} if clip is None else {"clipvalue": float(clip)}
        if self.optimizer_name == "adam":
            return keras.optimizers.Adam(learning_rate=lr, **kw)
        return keras.optimizers.SGD(learning_rate=lr, momentum=float(phase_config.momentum), **kw)

    def fit_dataset(
        self, dataset, config: training.TrainConfig | None = None, callbacks=None
    ) -> dict:
        """Train by Algorithm 1 on ``dataset.train``; returns ``{metric: [value per epoch]}``
        (``labnet_*`` and ``imgnet_*`` keys, each over that network's epochs in order).

        With ``config.checkpoint_dir`` the weights are checkpointed after every phase and a
        re-run resumes after the last finished phase (each phase starts a fresh optimiser,
        so this equals an uninterrupted run).
        """
        config = config if config is not None else training.TrainConfig()
        split = dataset.train if hasattr(dataset, "train") else dataset
        labels = np.asarray(split.labels, np.float32)
        if labels.ndim != 2 or labels.shape[1] != self.num_classes:
            raise ValueError(
                f"{self.name}: training labels have shape {labels.shape}, "
                f"expected (n, {self.num_classes})"
            )
        self._weight_decay = float(config.weight_decay)
        self._train_split = split
        self.refresh_store(labels)
        holder = _WeightsOnly(self)
        done, history = training.resume(
            holder, config.checkpoint_dir, self.distribute_strategy, unit="phase"
        )
        schedule = self.phases(config)
        try:
            # the chief checkpoints to checkpoint_dir, other workers of a cluster to a temporary one
            with training.worker_dir(config.checkpoint_dir, self.distribute_strategy) as ckpt_dir:
                for k, (phase, epochs) in enumerate(schedule):
                    if k < done:
                        continue
                    result = self._fit_phase(phase, epochs, split, labels, config, k, callbacks)
                    for key, values in result.history.items():
                        history.setdefault(key, []).extend(float(x) for x in values)
                    if ckpt_dir:
                        training.save_checkpoint(holder, ckpt_dir, k + 1, history)
        finally:
            object.__setattr__(self, "_phase", "imgnet")
        return history

    def _fit_phase(
        self, phase: str, epochs: int, split, labels: np.ndarray, config, k: int, callbacks
    ):
        """Phase ``k`` of Algorithm 1's schedule: ``epochs`` epochs of ``phase``."""
        seed = int(config.seed) * 1000 + k
        round_index = k // 2
        object.__setattr__(self, "_head_optimizer", None)
        if phase == "labnet":
            phase_config, batch, ds, refresh = self._labnet_stream(
                split, labels, config, epochs, seed, round_index
            )
            clip = self.clip_value
        else:
            phase_config, batch, ds, refresh = self._imgnet_stream(split, config, seed)
            clip = self.imgnet_clip_value
        steps = max(1, len(labels) // batch)
        object.__setattr__(self, "_phase", phase)
        self._compile_phase(phase, phase_config, steps, round_index, clip)
        self.train_function = None  # retrace train_step for this phase
        log.info(
            "%s: round %d, %s for %d epochs of %d steps",
            self.name,
            k // 2 + 1,
            phase,
            epochs,
            steps,
        )
        verbose, bar = training.progress(
            config, int(epochs), desc=f"{self.name} round {k // 2 + 1} {phase}"
        )
        return self.fit(
            ds,
            epochs=int(epochs),
            steps_per_epoch=steps,
            callbacks=refresh + bar + list(callbacks or []),
            verbose=verbose,
            shuffle=False,
        )  # the stateless pipeline orders the batches

    def _labnet_stream(self, split, labels, config, epochs: int, seed: int, round_index: int):
        """``(phase config, batch, label batches, callbacks)`` of a LabNet phase: its own
        batch and learning rate; from round 2 with ``joint_table="imgnet"`` the table starts
        as ImgNet's features and codes (Algorithm 1), else it is refreshed every epoch."""
        lr = self.labnet_lr if self.labnet_lr is not None else self.lr_multiplier * float(config.lr)
        phase_config = config.replace(lr=lr, batch_size=self.labnet_batch_size)
        batch = min(self.labnet_batch_size, len(labels))
        ds = _label_batches(labels, batch, epochs, seed)
        joint = self.joint_table == "imgnet" and round_index > 0
        if joint:
            self.refresh_from_imgnet(split)
        return phase_config, batch, ds, [_Refresh(self, skip_first=joint)]

    def _imgnet_stream(self, split, config, seed: int):
        """``(phase config, batch, image batches, callbacks)`` of an ImgNet phase, LabNet's
        table fixed: a stateless stream (the same batches under any strategy) starting at
        step 0, since checkpoints are taken between phases."""
        from deephash import data

        batch = min(int(config.batch_size), len(split))
        self.refresh_store()  # LabNet is fixed during this phase
        ds = data.labeled_dataset(
            split,
            batch,
            seed=seed,
            shuffle=True,
            repeat=True,
            preprocess=self.preprocessor(),
            augment=self.augment,
            drop_remainder=True,
            start_step=0,
        )
        return config, batch, ds, []

    def _compile_phase(self, phase: str, phase_config, steps: int, round_index: int, clip):
        """Compile with the phase's optimiser: the project's SGD (the unchanged default) or
        :meth:`make_optimizer`; ImgNet under Adam with ``lr_multiplier != 1`` also gets a
        second optimiser for the new layers (Adam normalises a gradient multiplier away; the
        authors' two AdamOptimizers), built here, not in the step."""
        with self.distribute_strategy.scope():
            plain = self.optimizer_name == "sgd" and self.lr_decay_epochs is None
            if plain and self.round_lr_decay == 1 and clip is None:
                optimizer = training.make_optimizer(phase_config)
            else:
                optimizer = self.make_optimizer(phase_config, steps, round_index, clip)
            if phase == "imgnet" and self.optimizer_name == "adam" and self.lr_multiplier != 1:
                head_optimizer = self.make_optimizer(
                    phase_config, steps, round_index, clip, lr_factor=self.lr_multiplier
                )
                head_optimizer.build(self.imgnet_weights()[1])
                object.__setattr__(self, "_head_optimizer", head_optimizer)
            self.compile(optimizer=optimizer)


def _label_batches(labels: np.ndarray, batch: int, epochs: int, seed: int):
    """LabNet's batches: a fresh permutation of the training labels each epoch, drawn in
    numpy up front so that the order is the same under any tf.distribute strategy."""
    rng = np.random.default_rng([seed, 0xD5E4])
    steps = max(1, len(labels) // batch)
    order = np.concatenate([rng.permutation(len(labels))[: steps * batch] for _ in range(epochs)])
    table = tf.constant(labels)
    ds = tf.data.Dataset.from_tensor_slices(order).batch(batch, drop_remainder=True).repeat()
    ds = ds.map(lambda idx: tf.gather(table, idx)).prefetch(tf.data.AUTOTUNE)
    return pipelines.shard_global_batches(ds)


class _Refresh(keras.callbacks.Callback):
    """Recompute the stored LabNet table at the start of every LabNet epoch (after the
    first with ``skip_first``: that epoch keeps the table Algorithm 1 set from ImgNet)."""

    def __init__(self, method: DSEH, skip_first: bool = False):
        super().__init__()
        self._method = method
        self._skip_first = skip_first

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 0 and self._skip_first:
            return
        self._method.refresh_store()


class _WeightsOnly:
    """View of a model for training.save/restore_checkpoint: weights, no optimiser state."""

    def __init__(self, model):
        self.weights = model.weights
        self.variables = model.variables  # weights and random-seed states
        self.optimizer = None
        self.distribute_strategy = model.distribute_strategy


__all__ = ["DSEH", "VARIANTS"]
