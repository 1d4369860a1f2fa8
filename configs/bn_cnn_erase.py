"""configs/bn_cnn_crop.py with random erasing (p 0.25), chosen on validation.

`experiments/sweep.py --config configs/bn_cnn_crop.py --grid augment.erase=0.25,0.5` on the 2-core
CPU (experiments/results/sweep_bn_cnn_erase/, 1 seed per trial): validation 0.9422 (p 0.25) and
0.9412 (p 0.5), against 0.9388 for bn_cnn_crop.py's seed 0 without erasing on the same CPU; the
winner read 0.9338 on test once. Same architecture and parameter count (242,442) as configs/bn_cnn.py.
"""
from configs import bn_cnn_crop


def get_config():
  config = bn_cnn_crop.get_config()
  config.augment.erase = 0.25
  return config
