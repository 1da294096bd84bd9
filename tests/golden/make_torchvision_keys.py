"""Write torchvision_resnet_keys.json: torchvision's ResNet state_dict key names and shapes.

Run once, in a separate environment that has torchvision (it is not a torchsmith dependency):
    python tests/golden/make_torchvision_keys.py
"""

import json
from pathlib import Path

import torch
import torchvision

out: dict = {}
for name in ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]:
    model = getattr(torchvision.models, name)()
    out[name] = {k: list(v.shape) for k, v in model.state_dict().items()}
out["_source"] = (f"torchvision {torchvision.__version__} with torch {torch.__version__}: {{key: shape}} of "
                  "models.<name>().state_dict(), written by tests/golden/make_torchvision_keys.py")
(Path(__file__).parent / "torchvision_resnet_keys.json").write_text(json.dumps(out, indent=0))
