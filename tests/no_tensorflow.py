"""Runs `python -m <module> <args>` as on a machine without TensorFlow (used by the tests).

    python tests/no_tensorflow.py fmnist_jax.main --config ... --workdir ...

Every import finder is wrapped so that `tensorflow` is not found (`importlib.util.find_spec`
returns None and `import tensorflow` raises ModuleNotFoundError), as where it is not installed.
At exit it says on stderr whether anything imported TensorFlow anyway (it must not).
"""
import atexit
import os
import runpy
import sys

sys.path.insert(0, os.getcwd())


class _HideTensorFlow:

  def __init__(self, inner):
    self._inner = inner

  def find_spec(self, name, path=None, target=None):
    if name == 'tensorflow' or name.startswith('tensorflow.'):
      return None
    return self._inner.find_spec(name, path, target)

  def __getattr__(self, attr):
    return getattr(self._inner, attr)


sys.meta_path[:] = [_HideTensorFlow(f) for f in sys.meta_path]
# The terminal's stderr, kept: `main` sends file descriptor 2 to the workdir's log.txt.
_terminal = os.fdopen(os.dup(2), 'w')
atexit.register(lambda: print(f'TENSORFLOW_IMPORTED={"tensorflow" in sys.modules}',
                              file=_terminal, flush=True))
module, sys.argv = sys.argv[1], sys.argv[1:]
runpy.run_module(module, run_name='__main__', alter_sys=True)
