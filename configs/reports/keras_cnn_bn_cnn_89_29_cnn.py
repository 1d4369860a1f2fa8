"""'Mini-project: Image Classification of Fashion Items Using Deep Learning', basic CNN: Adam, batch 64, 15 epochs, no augmentation.

The report gives no final test accuracy for its basic CNN (only 84 % validation in early epochs).
"""
from configs.reports import _report


def get_config():
  return _report.report_config(
      file='keras-cnn-and-bn-cnn-89.29.md', title='Mini-project: Image Classification of Fashion Items Using Deep Learning', row='Basic CNN', model='cnn',
      reported=None, selected_on_test='yes: its validation set is the test set', seeds=5, note='no final figure reported (84 % validation in early epochs)',
      batch_size=64, num_epochs=15)
