"""The model zoo. Importing this package registers every model family."""

from torchsmith.models.lenet import LeNet
from torchsmith.models.resnet import BasicBlock, Bottleneck, ResNet

__all__ = ["LeNet", "ResNet", "BasicBlock", "Bottleneck"]
