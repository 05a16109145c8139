"""LightningCLI entry point: pick any timm model by name (e.g. ll_plain56) in a YAML config.

    python examples/lightning_cli/train.py fit --config examples/lightning_cli/config.yaml
    python examples/lightning_cli/train.py fit --config examples/lightning_cli/config.yaml \\
        --model.model_name cifar_resnet56 --data.source path/to/cifar10

The config's 200 steps of ll_plain56 at batch 128 take about 4 minutes on 2 CPU cores (a
smoke run, not a trained model: raise both max_steps for that). Logs and checkpoints go to
a folder under the system's temporary directory unless ``--trainer.default_root_dir`` says
otherwise; the run prints it.
"""

import tempfile
from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from timm_ll.app.training import ImageClassifier, ImageSourceDataModule


def main() -> None:
    default_root = Path(tempfile.gettempdir()) / "timm-ll-lightning-cli"
    cli = LightningCLI(
        ImageClassifier,
        ImageSourceDataModule,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"default_root_dir": str(default_root)},
    )
    print(f"logs and checkpoints: {cli.trainer.log_dir}")


if __name__ == "__main__":
    main()
