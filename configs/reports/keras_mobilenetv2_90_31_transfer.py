"""'Fashion Images Classification Using Deep Learning and Transfer Learning Model', MobileNetV2 transfer: Adam 1e-3, Keras' default batch 32, 10 epochs. Reported 90.31 %.

28x28 upsampled to 96x96 -> Conv 3 3x3 same ReLU -> MobileNetV2 (ImageNet weights, no top,
frozen) -> Flatten -> Dense 128 ReLU -> Dropout 0.5 -> Dense 10: 3,733,992 parameters, 1,476,008
trainable. backbone.weights: 'imagenet' (Keras' file in ~/.keras/models, see README), a path to a
Keras weight file, or 'random' (a randomly initialised backbone, never called pretrained).
backbone.unfreeze_blocks=k trains the last k of the backbone's 19 units (fine-tuning).
"""
import ml_collections

from configs.reports import _report


def get_config():
  config = _report.report_config(
      file='keras-cnn-and-mobilenetv2-transfer-90.31.md', title='Fashion Images Classification Using Deep Learning and Transfer Learning Model', row='MobileNetV2 transfer',
      model='mobilenetv2_transfer', reported=0.9031, params=3_733_992, selected_on_test='yes: fit(validation_data=(test_images, test_labels))', seeds=1, batch_size=32, num_epochs=10,
      eval_batch_size=250)
  config.backbone = ml_collections.ConfigDict({'weights': 'imagenet', 'unfreeze_blocks': 0})
  return config
