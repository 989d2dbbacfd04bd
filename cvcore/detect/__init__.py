"""Object detection: boxes (IoU, NMS, OpenCV's grouping), average precision (COCO, VOC),
annotation formats, image pyramids, sliding-window HOG detectors (OpenCV's, and trained ones),
and Viola-Jones cascades."""
from cvcore._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "boxes": ["box_iou", "box_area", "nms", "group_rectangles", "clip_rects", "rects_to_boxes",
                  "boxes_to_rects"],
        "metrics": ["coco_evaluate", "voc_evaluate", "voc_ap", "DetectionResult"],
        "pyramid": ["resize_exact", "pyramid_scales", "image_pyramid"],
        "hog_detector": ["HOGDetector"],
        "training": ["ObjectDetector", "train_hog_detector", "load_annotated_images"],
        "draw": ["draw_boxes"],
        "cascade": ["HaarCascade", "opencv_cascade_path"],
        "annotations": ["ImageAnnotation", "read_annotations", "read_voc", "read_coco",
                        "read_imglab", "read_csv"],
    },
)
