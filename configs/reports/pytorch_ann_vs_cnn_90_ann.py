"""'Fashion-MNIST Classification (ANN vs CNN, PyTorch)', ANN 784-256-128-10 with dropout 0.2: Adam 1e-3, batch 64, 10 epochs, 80/20 split.

Reported about 85 % test (86 % validation).
"""
from configs.reports import _report


def get_config():
  return _report.report_config(
      file='pytorch-ann-vs-cnn-90.md', title='Fashion-MNIST Classification (ANN vs CNN, PyTorch)', row='ANN', model='mlp', reported=0.85, selected_on_test='no: 80/20 split of train', seeds=5,
      note='reported as "about 85 %"', batch_size=64, num_epochs=10,
      train_split='train[:80%]', validation_split='train[80%:]')
