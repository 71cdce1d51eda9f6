"""qc's Prometheus metrics: what an SRE watches to see label quality (agreement, golden accuracy, flags)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class QcMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.finals = Counter("labelmesh_qc_final_labels_total", "Final labels decided", ["project", "provenance"],
                              registry=registry)
        self.flags = Counter("labelmesh_qc_flags_total", "Flags raised", ["project", "kind"], registry=registry)
        self.golden_accuracy = Gauge("labelmesh_qc_golden_accuracy", "Golden-set accuracy per annotator",
                                     ["project", "annotator"], registry=registry)
        self.golden_bound = Gauge("labelmesh_qc_golden_accuracy_bound",
                                  "One-sided 95% bounds of golden-set accuracy per annotator",
                                  ["project", "annotator", "bound"], registry=registry)
        self.spot_accuracy = Gauge("labelmesh_qc_auto_label_accuracy",
                                   "Accuracy of auto labels measured by spot checks", ["project"], registry=registry)
        self.agreement = Gauge("labelmesh_qc_agreement",
                               "Inter-annotator agreement over the project ('all') or the latest time window",
                               ["project", "window", "measure"], registry=registry)
        self.pair_kappa = Gauge("labelmesh_qc_pairwise_kappa", "Cohen's kappa per annotator pair, whole project",
                                ["project", "a", "b"], registry=registry)
        self.reliability = Gauge("labelmesh_qc_annotator_reliability",
                                 "Dawid-Skene estimate of each annotator's accuracy", ["project", "annotator"],
                                 registry=registry)
        self.label_issues = Gauge("labelmesh_qc_likely_label_errors",
                                  "Likely label errors found by the latest confident-learning pass", ["project"],
                                  registry=registry)
