"""Constants shared by models (their declared defaults) and data pipelines (their transforms)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# timm's eval transform for the official image models: resize the shorter side to size / crop_pct, bicubic
IMAGENET_CROP_PCT = 0.9
