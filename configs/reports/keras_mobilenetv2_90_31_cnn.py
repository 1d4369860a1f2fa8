"""'Fashion Images Classification Using Deep Learning and Transfer Learning Model', CNN (93,322 parameters): Adam 1e-3, Keras' default batch 32, 10 epochs. Reported 90.21 %.

(The report's MobileNetV2 transfer row is keras_mobilenetv2_90_31_transfer.py.)
"""
from configs.reports import _report


def get_config():
  return _report.report_config(
      file='keras-cnn-and-mobilenetv2-transfer-90.31.md', title='Fashion Images Classification Using Deep Learning and Transfer Learning Model', row='CNN',
      model='small_cnn', reported=0.9021, params=93_322, selected_on_test='yes: fit(validation_data=(test_images, test_labels))', seeds=5, batch_size=32, num_epochs=10)
