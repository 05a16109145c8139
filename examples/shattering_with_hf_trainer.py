"""The shattering measurer in a Hugging Face ``Trainer``: a GPT-2 from a config, trained with labels.

    pip install -e ".[hf]"
    python examples/shattering_with_hf_trainer.py [--steps 60] [--out DIR]

About half a minute on 2 CPU cores; no download (the model is built from a config, the data is
random token sequences, which is enough to watch the measurement, not to learn language). The
values go through the Trainer's own reporting (here TensorBoard, under ``train/shattering/...``,
as the Trainer prefixes every training key) and the figures to ``<out>/shattering/``.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from lightning_callbacks import ShatteringCallback


class RandomTokens(torch.utils.data.Dataset):
    """Token sequences with the causal LM's labels (the model shifts them itself)."""

    def __init__(self, size: int = 512, length: int = 64, vocab: int = 512) -> None:
        self.ids = torch.randint(0, vocab, (size, length), generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "labels": self.ids[index]}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", default=None, help="output folder (default: a new temporary folder)")
    args = parser.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="timm-ll-hf-example-")
    config = GPT2Config(n_layer=4, n_embd=128, n_head=4, vocab_size=512, n_positions=64, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config)
    training = TrainingArguments(
        output_dir=out,
        max_steps=args.steps,
        per_device_train_batch_size=16,
        learning_rate=1e-3,
        logging_steps=10,
        save_strategy="no",
        report_to=["tensorboard"],
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=training, train_dataset=RandomTokens())
    callback = ShatteringCallback.attach(trainer, every_n_steps=20)  # <- the one line
    trainer.train()
    for result in callback.history:
        corr, kernel = result.statistics["neighbor_corr"][0], result.statistics["kernel"][0]
        print(f"step {result.step:>3}: neighbour correlation {corr:.3f} (input embeddings), kernel {kernel:.3f}")
    print(f"TensorBoard events and figures: {out}")
    return callback.history


if __name__ == "__main__":
    main()
