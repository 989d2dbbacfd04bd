"""Reading and writing: images (Pillow), data sets (IDX, image folders), weights (npz,
safetensors, PyTorch state dicts)."""
from cvcore._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "images": ["imread", "imdecode", "imwrite", "to_float", "to_uint8", "NotAnImageError"],
        "weights": ["save_npz", "load_npz", "save_safetensors", "load_safetensors", "load_torch",
                    "save_weights", "load_weights", "UnsafePickleError"],
        "datasets": ["Dataset", "load_idx", "load_mnist", "load_embedded", "load_dataset",
                     "ImageFolder", "load_image_folder", "to_nchw", "check", "CheckReport",
                     "decode_image"],
        "download": ["download", "DownloadError", "default_cache_dir", "sha256_file"],
    },
)
