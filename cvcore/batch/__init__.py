"""Folder jobs over many images (predict, features): in one process or on a Dask cluster,
streamed, resumable, written in atomic pieces."""
from cvcore._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "predict": ["predict_folder"],
        "features": ["extract_features", "FEATURE_KINDS", "FeatureKind", "load_features"],
        "files": ["walk_images", "sniff_image"],
        "job": ["JobReport", "parse_scheduler"],
    },
)
