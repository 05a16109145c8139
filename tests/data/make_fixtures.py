"""Write the reference fixtures of issue 39 from the code of commit d0c4c85 (run there, before the rework):

- ``initial_weights_depth8_seed0.json``: each CIFAR family's depth-8 member at seed 0, fingerprinted per tensor
  (sum, sum of magnitudes, first three values): ``tests/test_models.py`` checks that the parts-built CifarNet
  draws the same initial weights;
- ``ll_plain8_trained_d0c4c85.safetensors``: ll_plain8 after 3 SGD steps on random data, with its logits and
  input gradient on a fixed input: ``tests/test_crelu_memory.py`` checks it loads and agrees.

    git worktree add /tmp/old d0c4c85 && cd /tmp/old && python /path/to/tests/data/make_fixtures.py /path/to/tests/data
"""

import json
import sys
from pathlib import Path

import timm
import torch
from safetensors.torch import save_file

import timm_ll  # noqa: F401
from timm_ll.models.cifar import FAMILIES

out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)
fingerprints = {}
for family in FAMILIES:
    torch.manual_seed(0)
    model = timm.create_model(f"{family}8")
    fingerprints[family] = {
        name: [float(v.double().sum()), float(v.double().abs().sum()), [float(x) for x in v.flatten()[:3]]]
        for name, v in model.state_dict().items()
        if v.is_floating_point()
    }
record = {"commit": "d0c4c85", "seed": 0, "fingerprints": fingerprints}
(out / "initial_weights_depth8_seed0.json").write_text(json.dumps(record, separators=(",", ":")))

torch.manual_seed(1)
model = timm.create_model("ll_plain8")
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(3):  # no longer exactly looks-linear
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    opt.zero_grad()
model.eval()
x = torch.randn(4, 3, 32, 32)
state = {k: v.contiguous() for k, v in model.state_dict().items()}
state["__input__"] = x
with torch.no_grad():
    state["__logits__"] = model(x)
x = x.clone().requires_grad_()
model(x).square().sum().backward()
state["__input_grad__"] = x.grad
save_file(state, out / "ll_plain8_trained_d0c4c85.safetensors")
