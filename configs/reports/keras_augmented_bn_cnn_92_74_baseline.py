"""'CNN Model for Image Classification on Fashion-MNIST Dataset', baseline CNN: Adam 1e-3, batch 64, 20 epochs, no augmentation. Reported 88.5 %."""
from configs.reports import _report


def get_config():
  return _report.report_config(
      file='keras-augmented-bn-cnn-92.74.md', title='CNN Model for Image Classification on Fashion-MNIST Dataset', row='Baseline CNN', model='vgg_cnn',
      reported=0.885, selected_on_test='unclear: hyperparameters "chosen based on testing"', batch_size=64, num_epochs=20)
