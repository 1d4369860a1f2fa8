"""'Fashion-MNIST Classification (ANN vs CNN, PyTorch)', CNN: Conv32-Conv64-pool-Dense128 (dropout 0.25): Adam 1e-3, batch 64, 10 epochs,
80/20 split. Reported about 90 % test (91 % validation).
"""
from configs.reports import _report


def get_config():
  return _report.report_config(
      file='pytorch-ann-vs-cnn-90.md', title='Fashion-MNIST Classification (ANN vs CNN, PyTorch)', row='CNN', model='torch_cnn', reported=0.90, selected_on_test='no: 80/20 split of train', seeds=5,
      note='reported as "about 90 %"; flattened size 64x14x14 as written', batch_size=64,
      num_epochs=10, train_split='train[:80%]', validation_split='train[80%:]')
