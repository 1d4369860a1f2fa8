"""configs/cnn.py with the recipe the reports' own tuning picks: batch 64, dropout 0.25.

`experiments/sweep.py` over the grid the reports tried (batch size 32/64/128, learning rate
1e-3/5e-4/1e-4, dropout 0.25/0.5, Adam/SGD with momentum; 12 random trials of 3 epochs, ranked on
validation only: experiments/results/sweep_cnn/sweep.md) chose batch 64, Adam 1e-3, dropout 0.25.
Same architecture and parameter count as configs/cnn.py, same 30-epoch cosine schedule.
"""
from configs import cnn


def get_config():
  config = cnn.get_config()
  config.batch_size = 64
  config.dropout_rate = 0.25
  return config
