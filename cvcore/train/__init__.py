"""Training and evaluation: the epoch loop with checkpoints and resume, metrics, report figures."""
from cvcore._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "metrics": ["accuracy", "top_k_accuracy", "confusion_matrix", "precision_recall_f1",
                    "evaluate", "format_report"],
        "report": ["plot_confusion_matrix", "plot_curves", "plot_confident_mistakes"],
    },
)
