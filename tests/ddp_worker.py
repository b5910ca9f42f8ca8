"""One rank of the distributed-loss tests (tests/test_distributed.py launches it; not a test module).

argv: rank world_size port output_path. Every rank builds the same global batch, takes its shard,
computes each case's loss with ``distributed=True`` and the gradient of its shard, and saves them.
"""

import sys

import torch
import torch.distributed as dist

from medloss.calibration import (
    CalibrationAccumulator,
    TemperatureScaler,
    brier_score,
    classwise_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
    reliability_curve,
)
from medloss.losses import (
    AsymmetricFocalLoss,
    AsymmetricFocalTverskyLoss,
    AsymmetricUnifiedFocalLoss,
    CDWCELoss,
    CombinedLoss,
    ComboLoss,
    CORALLoss,
    CORNLoss,
    CrossEntropyLoss,
    CumulativeLinkLoss,
    DCALoss,
    DiceLoss,
    FocalLoss,
    FocalLossAdaptive,
    FocalTverskyLoss,
    GeneralizedDiceLoss,
    GIoULoss,
    HybridFocalLoss,
    JaccardLoss,
    MarginLabelSmoothingLoss,
    MCCLoss,
    MDCALoss,
    NeighborAwareCalibrationLoss,
    SoftF1Loss,
    SpatiallyVaryingLabelSmoothingLoss,
    SquaredEMDLoss,
    SymmetricFocalLoss,
    SymmetricFocalTverskyLoss,
    SymmetricUnifiedFocalLoss,
    TverskyLoss,
)
from medloss.metrics import mean_absolute_error, quadratic_weighted_kappa, sensitivity_specificity, within_k_accuracy

SHARDS = {2: [3, 5], 3: [3, 1, 4]}  # uneven shard sizes of one global batch of 8 images


def global_batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 6, 6, generator=g, dtype=torch.float64)
    t = torch.randint(0, 3, (8, 6, 6), generator=g)
    t[0, :2] = -100  # ignored pixels, on the first rank only
    t[-1] = 0  # the last rank's last image has no foreground at all
    t[3:4] = 0
    return x, t


CASES = {
    # train-time calibration losses: batch statistics (MDCA, DCA) and pixel means over every rank's pixels
    "focal_adaptive": lambda: FocalLossAdaptive(distributed=True),
    "mdca_weighted_focal": lambda: MDCALoss(weight=torch.tensor([0.5, 1.0, 2.0]), gamma=1.0, distributed=True),
    "dca_sum": lambda: DCALoss(reduction="sum", distributed=True),
    "mbls": lambda: MarginLabelSmoothingLoss(margin=1.0, distributed=True),
    "svls": lambda: SpatiallyVaryingLabelSmoothingLoss(distributed=True),
    "nacl_weighted": lambda: NeighborAwareCalibrationLoss(weight=torch.tensor([0.5, 1.0, 2.0]), distributed=True),
    "dice_batch": lambda: DiceLoss(batch=True, distributed=True),
    "dice_per_image": lambda: DiceLoss(distributed=True),
    "tversky_batch_no_background": lambda: TverskyLoss(batch=True, include_background=False, distributed=True),
    "jaccard_micro": lambda: JaccardLoss(average="micro", distributed=True),
    "dice_weighted_ignore_empty": lambda: DiceLoss(weight=torch.tensor([0.5, 1.0, 2.0]), ignore_empty=True,
                                                   distributed=True),
    "mcc_batch": lambda: MCCLoss(batch=True, distributed=True),
    "dice_sum": lambda: DiceLoss(reduction="sum", distributed=True),
    "generalized_dice_batch": lambda: GeneralizedDiceLoss(batch=True, distributed=True),
    "generalized_dice_per_image": lambda: GeneralizedDiceLoss(distributed=True),
    "focal_mean_ignore": lambda: FocalLoss(gamma=2.0, distributed=True),
    "cross_entropy_weighted": lambda: CrossEntropyLoss(weight=torch.tensor([0.2, 1.0, 3.0]), distributed=True),
    "focal_binary": lambda: BinaryView(FocalLoss(mode="binary", alpha=0.25, distributed=True)),
    "focal_tversky_multilabel_batch": lambda: MultilabelView(FocalTverskyLoss(mode="multilabel", batch=True,
                                                                              distributed=True)),
    "soft_f1_macro": lambda: SoftF1Loss(mode="multiclass", distributed=True),
    "soft_f1_micro_binary": lambda: BinaryView(SoftF1Loss(mode="binary", average="micro", distributed=True)),
    "combo_batch": lambda: ComboLoss(batch=True, beta=0.7, distributed=True),
    "combo_per_image_no_background": lambda: ComboLoss(include_background=False, distributed=True),
    "combo_binary": lambda: BinaryView(ComboLoss(mode="binary", alpha=0.3, distributed=True)),
    "symmetric_focal": lambda: SymmetricFocalLoss(distributed=True),
    "asymmetric_focal_sum": lambda: AsymmetricFocalLoss(reduction="sum", distributed=True),
    "symmetric_focal_tversky_batch": lambda: SymmetricFocalTverskyLoss(batch=True, distributed=True),
    "asymmetric_focal_tversky": lambda: AsymmetricFocalTverskyLoss(distributed=True),
    "symmetric_unified_per_image": lambda: SymmetricUnifiedFocalLoss(distributed=True),
    "asymmetric_unified_batch": lambda: AsymmetricUnifiedFocalLoss(batch=True, distributed=True),
    "asymmetric_unified_binary": lambda: BinaryView(AsymmetricUnifiedFocalLoss(mode="binary", batch=True,
                                                                               distributed=True)),
    "asymmetric_unified_probabilities": lambda: SoftmaxView(AsymmetricUnifiedFocalLoss(from_logits=False,
                                                                                       distributed=True)),
    "hybrid_weighted_batch": lambda: HybridFocalLoss(focal_weight=torch.tensor([0.5, 1.0, 2.0]), batch=True,
                                                     distributed=True),
    # one prediction per image (read off the batch's first pixels), the grade of its top-left pixel
    "cumulative_link": lambda: GradeView(CumulativeLinkLoss(3, learn_cutpoints=True, distributed=True), "score"),
    "cdw_ce_weighted": lambda: GradeView(CDWCELoss(3, weight=torch.tensor([1.0, 2.0, 0.5]), distributed=True)),
    "emd_sum": lambda: GradeView(SquaredEMDLoss(3, reduction="sum", distributed=True)),
    "coral": lambda: GradeView(CORALLoss(3, distributed=True), "tasks"),
    "corn": lambda: GradeView(CORNLoss(3, distributed=True), "tasks"),
    "giou": lambda: GradeView(GIoULoss(distributed=True), "boxes"),
    "combined_spec": lambda: CombinedView(CombinedLoss.from_spec("0.5*ce + 0.5*dice", batch=True, distributed=True)),
}


class _View(torch.nn.Module):
    """A loss applied to a transform of the shared batch; ``distributed`` is the wrapped loss's."""

    def __init__(self, loss, kind=None):
        super().__init__()
        self.loss, self.kind = loss, kind

    @property
    def distributed(self):
        return self.loss.distributed

    @distributed.setter
    def distributed(self, value):
        self.loss.distributed = value


class CombinedView(_View):
    """``distributed`` set on every term of a CombinedLoss."""

    @property
    def distributed(self):
        return all(term.distributed for term in self.loss.terms.values())

    @distributed.setter
    def distributed(self, value):
        for term in self.loss.terms.values():
            term.distributed = value

    def forward(self, x, t):
        return self.loss(x, t)


class MultilabelView(_View):
    """A multilabel loss against the one-hot target (ignored pixels: -100 in every channel)."""

    def forward(self, x, t):
        onehot = torch.nn.functional.one_hot(t.clamp_min(0), x.shape[1]).movedim(-1, 1).to(x.dtype)
        return self.loss(x, onehot.masked_fill((t < 0).unsqueeze(1), -100))


class SoftmaxView(_View):
    """The loss on probabilities (``from_logits=False``)."""

    def forward(self, x, t):
        return self.loss(torch.softmax(x, 1), t)


class GradeView(_View):
    """Per-image losses: grade = the top-left pixel's class (-100 on the first image), predictions
    from the first pixel row: K logits, one score, K - 1 task logits, or a box (x1, y1, x2, y2)."""

    def forward(self, x, t):
        grade = t[:, 0, 0]
        if self.kind == "score":
            return self.loss(x[:, 0, 0, 0], grade)
        if self.kind == "tasks":
            return self.loss(x[:, :2, 0, 0], grade)
        if self.kind == "boxes":
            corner = x[:, 0, 0, :2]
            box = torch.cat([corner, corner + x[:, 1, 0, :2].exp()], 1)
            return self.loss(box, torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=x.dtype).expand_as(box))
        return self.loss(x[:, :, 0, 0], grade)


class BinaryView(_View):
    """A binary loss on channel 1 of the shared batch (foreground = grade > 0; ignored pixels kept)."""

    def forward(self, x, t):
        return self.loss(x[:, 1:2], torch.where(t < 0, t, (t > 0).long()).unsqueeze(1))


def global_predictions():
    g = torch.Generator().manual_seed(1)
    probs = torch.softmax(2 * torch.randn(40, 4, generator=g, dtype=torch.float64), 1)
    labels = torch.randint(0, 4, (40,), generator=g)
    labels[:3] = -1  # ignored samples on the first rank
    weights = torch.rand(40, generator=g, dtype=torch.float64)
    return probs, labels, weights


def _accumulated(p, y, distributed):
    acc = CalibrationAccumulator(10).update(p, y)
    return (acc.all_reduce() if distributed else acc).compute()


def _torchmetrics_ece(p, y, distributed):
    # sync_on_compute under a process group sums the O(n_bins) states; without one it is the local value
    from medloss.integrations.torchmetrics import CalibrationError

    metric = CalibrationError(n_bins=10, sync_on_compute=distributed)
    metric.update(p[y >= 0], y[y >= 0])
    return float(metric.compute())


def _torchmetrics_qwk(p, y, distributed):
    from medloss.integrations.torchmetrics import QuadraticWeightedKappa

    metric = QuadraticWeightedKappa(4, sync_on_compute=distributed)
    metric.update(y.clamp_min(0), p.argmax(1))
    return float(metric.compute())


METRICS = {
    "ece": lambda p, y, w, d: expected_calibration_error(p, y, n_bins=10, ignore_index=-1, distributed=d),
    "ece_l2": lambda p, y, w, d: expected_calibration_error(p, y, n_bins=10, norm="l2", ignore_index=-1,
                                                            distributed=d),
    "ece_weighted": lambda p, y, w, d: expected_calibration_error(p, y.clamp_min(0), n_bins=10, sample_weight=w,
                                                                  distributed=d),
    "mce": lambda p, y, w, d: maximum_calibration_error(p, y, n_bins=10, ignore_index=-1, distributed=d),
    "classwise": lambda p, y, w, d: classwise_calibration_error(p, y, n_bins=10, ignore_index=-1, distributed=d),
    "brier_weighted": lambda p, y, w, d: brier_score(p, y.clamp_min(0), sample_weight=w, distributed=d),
    "nll": lambda p, y, w, d: negative_log_likelihood(p, y, ignore_index=-1, distributed=d),
    "reliability_counts": lambda p, y, w, d: float(
        reliability_curve(p, y, n_bins=10, ignore_index=-1, distributed=d).counts @ torch.arange(10).numpy()),
    "accumulator": lambda p, y, w, d: _accumulated(p[y >= 0], y[y >= 0], d),
    # the one temperature of the sharded validation set (logits: log p scaled up, over-confident)
    "qwk": lambda p, y, w, d: quadratic_weighted_kappa(p.argmax(1), y.clamp_min(0), 4, distributed=d),
    "mae": lambda p, y, w, d: mean_absolute_error(p.argmax(1), y.clamp_min(0), 4, distributed=d),
    "within_1": lambda p, y, w, d: within_k_accuracy(p.argmax(1), y.clamp_min(0), 1, 4, distributed=d),
    "sensitivity_grade_2_or_worse": lambda p, y, w, d: sensitivity_specificity(
        p.argmax(1), labels=y.clamp_min(0), num_classes=4, distributed=d)["threshold"]["sensitivity"][1],
    "torchmetrics_ece": lambda p, y, w, d: _torchmetrics_ece(p, y, d),
    "torchmetrics_qwk": lambda p, y, w, d: _torchmetrics_qwk(p, y, d),
    "temperature": lambda p, y, w, d: TemperatureScaler().fit(3 * p.log(), y.clamp_min(0), distributed=d).temperature_,
}
METRIC_SHARDS = {2: [15, 25], 3: [15, 5, 20]}
# cases also run under torch.compile(fullgraph=True): the all-reduce is traced, no graph break
COMPILED = ("dice_batch", "asymmetric_unified_batch", "soft_f1_macro", "focal_mean_ignore",
            "combo_per_image_no_background")


def main() -> None:
    rank, world, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    x, t = global_batch()
    start = sum(SHARDS[world][:rank])
    stop = start + SHARDS[world][rank]
    results = {}
    for name, make in CASES.items():
        xs = x[start:stop].clone().requires_grad_(True)
        loss = make()(xs, t[start:stop])
        loss.backward()
        # DDP averages gradients over the ranks: divide by the world size as it would
        results[name] = (loss.detach(), xs.grad / world)
    for name in COMPILED:
        xs = x[start:stop].clone().requires_grad_(True)
        loss = torch.compile(CASES[name](), fullgraph=True, backend="aot_eager", dynamic=False)(xs, t[start:stop])
        loss.backward()
        results[name + "@compiled"] = (loss.detach(), xs.grad / world)
    p, y, w = global_predictions()
    m0 = sum(METRIC_SHARDS[world][:rank])
    m1 = m0 + METRIC_SHARDS[world][rank]
    metrics = {name: fn(p[m0:m1], y[m0:m1], w[m0:m1], True) for name, fn in METRICS.items()}
    torch.save({"rank": rank, "start": start, "stop": stop, "results": results, "metrics": metrics}, out)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
