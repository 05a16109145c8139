"""LightningCLI entry point: pick any timm model by name (e.g. ll_plain56) in a YAML config.

    python examples/lightning_cli/train.py fit --config examples/lightning_cli/config.yaml
    python examples/lightning_cli/train.py fit --config examples/lightning_cli/config.yaml \\
        --model.model_name cifar_resnet56 --data.source ../shared/data/cifar10-jpeg.zip
"""

from lightning.pytorch.cli import LightningCLI

from timm_ll.training import ImageClassifier, ImageSourceDataModule


def main() -> None:
    LightningCLI(ImageClassifier, ImageSourceDataModule, save_config_kwargs={"overwrite": True})


if __name__ == "__main__":
    main()
