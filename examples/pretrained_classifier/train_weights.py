"""How examples/pretrained_classifier/weights.safetensors was made: train ``BrightnessNet`` on
160 clips of its own (``make_data.make`` with another seed than the example's dataset: a
pretrained model has seen other data), 4 s excerpts at 16 kHz, with plain torch; report its
accuracy on the example's 40 clips; save the weights with safetensors. Run once from the
repository root:

    python examples/pretrained_classifier/train_weights.py

It prints the accuracy on the validation and test clips. Seeded: the same run gives the same
weights on the same machine.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_data import make  # noqa: E402
from model import WEIGHTS, BrightnessNet  # noqa: E402

from robustmer.data import prepare_data  # noqa: E402

RATE, SECONDS, STEPS = 16000, 4.0, 600


def accuracy(model: torch.nn.Module, dataset: torch.utils.data.Dataset) -> float:
    items = [dataset[i] for i in range(len(dataset))]
    with torch.no_grad():
        logits = model(torch.stack([it["x"] for it in items]))
    labels = torch.stack([it["label"] for it in items])
    return float((logits.argmax(1) == labels).float().mean())


def main() -> None:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        own = make(Path(tmp) / "own", seed=99, clips=160, split=["train"] * 7 + ["val"])
        data = prepare_data(own, cache_dir=Path(tmp) / "cache")
        train = data.wave_dataset("train", sample_rate=RATE, seconds=SECONDS, mode="random")
        val = data.wave_dataset("val", sample_rate=RATE, seconds=SECONDS)
        example = prepare_data(make(Path(tmp) / "example"), cache_dir=Path(tmp) / "cache")
        test = example.wave_dataset("all", sample_rate=RATE, seconds=SECONDS)
        print("classes", data.table.classes)
        model = BrightnessNet(len(data.table.classes))
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(0)
        for step in range(STEPS):
            train.set_epoch(step)
            idx = torch.randint(len(train), (8,), generator=g).tolist()
            batch = [train[i] for i in idx]
            x = torch.stack([it["x"] for it in batch])
            y = torch.stack([it["label"] for it in batch])
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 150 == 149:
                model.eval()
                print(f"step {step + 1}: loss {loss.item():.3f}, val accuracy "
                      f"{accuracy(model, val):.3f}")
                model.train()
        model.eval()
        print(f"validation accuracy {accuracy(model, val):.3f} ({len(val)} clips), accuracy "
              f"on the example's {len(test)} clips {accuracy(model, test):.3f}")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(WEIGHTS))
    print(f"wrote {WEIGHTS}")


if __name__ == "__main__":
    main()
