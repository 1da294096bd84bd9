"""The memory plan: what a training step needs per device, computed on fake tensors (:func:`memory`).

``compute`` runs the step and assembles the plan, ``result`` holds the data objects (:class:`MemoryPlan`),
``render`` draws them, ``ways`` tabulates the ways to train a model on a given device (``torchsmith plan``).
"""

from torchsmith._memory.compute import memory
from torchsmith._memory.result import FRAGMENTATION_MARGIN, MemoryPlan, ModuleMemory
from torchsmith._memory.ways import TrainingPlan, Way, plan_training

__all__ = ["memory", "MemoryPlan", "ModuleMemory", "FRAGMENTATION_MARGIN", "plan_training", "TrainingPlan", "Way"]
