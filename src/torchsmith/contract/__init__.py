"""What torchsmith knows about any model: its input, how to rebuild it, its device and dtype, its outputs.

Every command asks this module, never re-derives it with ``getattr`` in its own package:

* :func:`input_spec` -- what one sample looks like (shape without the batch, dtype, token ids or images,
  whether the model supports that one size only) and where that came from: the caller, torchsmith's
  ``default_input_size``, a transformers ``config``, timm's ``pretrained_cfg``, or the first layer.
* :func:`rebuild` / :func:`rebuild_source` -- a fresh, freshly initialised instance of the same architecture
  with the same ``state_dict`` keys: from the zoo or spec record, ``type(model)(model.config)`` for
  transformers, timm's builder, and otherwise a deep copy whose tensors are re-initialised.
* :func:`device_dtype` -- where the model lives.
* :func:`output_tensors` / :func:`primary_output` -- the tensors of any output structure (tensor, tuple,
  named tuple, dict, dataclass, transformers ``ModelOutput``), skipping caches and other non-tensors.
* :func:`as_found` -- a read-only call gives the model back with the attributes and hooks it had.

``input_size`` always means one sample *without* the batch dimension: ``(3, 32, 32)`` for images,
``(16,)`` for 16 token ids. The batch is its own argument (:meth:`InputSpec.example`).
"""

from __future__ import annotations

from torchsmith.contract._guard import as_found, hooks_set_aside, leaves_model_as_found
from torchsmith.contract._input import (
    DEFAULT_SEQ_LEN,
    HOW_TO_GIVE,
    REAL_FALLBACK_BYTES,
    InputSpec,
    cheap_to_run,
    input_spec,
    is_token_dtype,
    learned_positions,
)
from torchsmith.contract._outputs import output_tensors, primary_output
from torchsmith.contract._rebuild import device_dtype, rebuild, rebuild_source
from torchsmith.contract._several import (
    ModelInputs,
    forward_inputs,
    is_length_name,
    is_several,
    model_inputs,
    parse_inputs,
)
from torchsmith.contract._state import (
    MODULE_ATTRS,
    copy_model,
    fresh_lazy,
    lazy_tensors,
    materialise_lazy,
    scan_unregistered,
    unregistered_layers,
    walk_held,
)

__all__ = ["InputSpec", "input_spec", "rebuild", "rebuild_source", "device_dtype", "output_tensors",
           "primary_output", "is_token_dtype", "lazy_tensors", "copy_model", "materialise_lazy", "ModelInputs",
           "model_inputs", "forward_inputs", "is_several", "parse_inputs", "is_length_name",
           "scan_unregistered", "walk_held", "unregistered_layers", "MODULE_ATTRS", "fresh_lazy",
           "learned_positions", "DEFAULT_SEQ_LEN", "HOW_TO_GIVE", "as_found", "hooks_set_aside",
           "leaves_model_as_found", "REAL_FALLBACK_BYTES", "cheap_to_run"]
