"""The package's shape: data flows one way (no import cycle in fmnist_jax/ or experiments/),
functions stay short, the config is read in a few places only, and no model is named outside its
definition."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, 'fmnist_jax')
MAX_LINES = 80


def _modules():
  return {f[:-3]: os.path.join(PACKAGE, f) for f in os.listdir(PACKAGE) if f.endswith('.py')}


def _imports(path, names):
  """fmnist_jax modules imported anywhere in the file, lazy imports inside functions included."""
  found = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.ImportFrom) and node.module == 'fmnist_jax':
      found |= {a.name for a in node.names if a.name in names}
    elif isinstance(node, ast.ImportFrom) and (node.module or '').startswith('fmnist_jax.'):
      found.add(node.module.split('.')[1])
    elif isinstance(node, ast.Import):
      found |= {a.name.split('.')[1] for a in node.names if a.name.startswith('fmnist_jax.')}
  return found


def _dotted_modules():
  """Every module of fmnist_jax/ and experiments/ (subpackages included), by dotted name."""
  out = {}
  for package in ('fmnist_jax', 'experiments'):
    for path in _python_files(os.path.join(ROOT, package)):
      name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, '.')
      out[name[:-len('.__init__')] if name.endswith('.__init__') else name] = path
  return out


def _dotted_imports(path, names):
  """The modules of `names` that the file imports anywhere (lazy imports inside functions too):
  `import a.b`, `from a import b` (b a module) and `from a.b import c`."""
  found = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.ImportFrom) and node.module:
      for alias in node.names:
        found.add(f'{node.module}.{alias.name}' if f'{node.module}.{alias.name}' in names
                  else node.module)
    elif isinstance(node, ast.Import):
      found |= {a.name for a in node.names}
  return found & set(names)


def test_no_import_cycle_in_the_package_or_the_experiments():
  modules = _dotted_modules()
  graph = {m: _dotted_imports(p, modules) - {m} for m, p in modules.items()}
  # The check sees real edges, in both packages.
  assert 'fmnist_jax.train' in graph['experiments.lib.runs'] and graph['fmnist_jax.train']
  assert 'experiments.lib.common' in graph['experiments.compare_architectures']
  state = {}

  def visit(m, path):
    state[m] = 'open'
    for n in sorted(graph[m]):
      assert state.get(n) != 'open', 'import cycle: ' + ' -> '.join(path + [n])
      if n not in state:
        visit(n, path + [n])
    state[m] = 'done'

  for m in sorted(graph):
    if m not in state:
      visit(m, [m])


def _is_module_class(node):
  return any(isinstance(b, ast.Attribute) and b.attr == 'Module' for b in node.bases)


def test_no_function_over_80_lines_except_model_definitions():
  long = []
  for name, path in _modules().items():
    tree = ast.parse(open(path).read())
    model_methods = {id(f) for c in ast.walk(tree) if isinstance(c, ast.ClassDef)
                     and _is_module_class(c) for f in c.body if isinstance(f, ast.FunctionDef)}
    for node in ast.walk(tree):
      if isinstance(node, ast.FunctionDef) and id(node) not in model_methods:
        lines = node.end_lineno - node.lineno + 1
        if lines > MAX_LINES:
          long.append(f'{name}.{node.name}: {lines} lines')
  assert not long, long


# The modules that read the config: the loop and the builder it reads it with, the check, the
# defaults, the command line (main, and the evaluate and predict commands, which read a workdir's
# saved config). Every other module takes plain values or the small specs made here.
CONFIG_READERS = {'fmnist_jax.train', 'fmnist_jax.build', 'fmnist_jax.config_check',
                  'fmnist_jax.defaults', 'fmnist_jax.cli', 'fmnist_jax.main',
                  'fmnist_jax.evaluate', 'fmnist_jax.predict'}
# Functions that take the whole config only to write it as it is (config.json): a serializer
# reads no field.
SERIALIZERS = {('fmnist_jax.results', 'write_json'), ('fmnist_jax.files', 'write_json'),
               ('fmnist_jax.files', 'atomic')}


def _whole_config(value) -> bool:
  """A whole config, as a ConfigDict or as the JSON dict of one (config.json)."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  return (isinstance(value, (ml_collections.ConfigDict, dict)) and 'model' in value
          and 'optimizer' in value and 'batch_size' in value)


def test_the_config_is_read_and_received_by_a_short_list_of_modules(tmp_path, monkeypatch):
  """A 1-epoch synthetic training with every read of a ConfigDict recorded (the module that asked,
  past ml_collections' own frames), and every Python call whose arguments include a whole config
  recorded (however the parameter is named): both only in CONFIG_READERS."""
  import sys  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  from configs import default  # pylint: disable=g-import-not-at-top
  from fmnist_jax import input_pipeline, train  # pylint: disable=g-import-not-at-top
  from tests.test_train import _synthetic_data  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(input_pipeline, 'load', _synthetic_data)
  readers, receivers = set(), set()
  here = os.path.dirname(os.path.abspath(ml_collections.__file__))

  def asker():
    frame = sys._getframe(2)  # pylint: disable=protected-access
    while frame.f_code.co_filename.startswith(here):
      frame = frame.f_back
    return frame.f_globals.get('__name__', '?')

  for method in ('__getattr__', '__getitem__', 'get', 'items', 'keys', 'values', 'to_dict',
                 'to_json_best_effort', '__contains__', '__iter__'):
    real = getattr(ml_collections.ConfigDict, method)
    def recording(self, *args, real=real, **kwargs):
      readers.add(asker())
      return real(self, *args, **kwargs)
    monkeypatch.setattr(ml_collections.ConfigDict, method, recording)

  def profile(frame, event, arg):
    del arg
    if event == 'call' and frame.f_code.co_filename.startswith(PACKAGE):
      code = frame.f_code
      module = frame.f_globals.get('__name__', '?')
      if (module, code.co_name) in SERIALIZERS:
        return
      for name in code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]:
        if _whole_config(frame.f_locals.get(name)):
          receivers.add(module)

  config = default.get_config()
  config.update(model='mlp', num_epochs=1, batch_size=64, progress_bar='off',
                data_dir=str(tmp_path / 'unused'))
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from fmnist_jax import evaluate, predict  # pylint: disable=g-import-not-at-top
  Image.new('L', (28, 28)).save(tmp_path / 'blank.png')
  sys.setprofile(profile)
  try:
    results = train.train_and_evaluate(config, str(tmp_path / 'w'))
    evaluate.evaluate_workdir(str(tmp_path / 'w'))  # the commands that read a saved config
    predict.predict_files(str(tmp_path / 'w'), [str(tmp_path / 'blank.png')])
  finally:
    sys.setprofile(None)
  assert results['epochs'] == 1
  assert 'fmnist_jax.train' in readers and 'fmnist_jax.build' in receivers  # it sees real reads
  assert readers - CONFIG_READERS - {'configs.default', __name__} == set(), readers
  assert receivers - CONFIG_READERS == set(), receivers


def _python_files(folder):
  for root, _, files in os.walk(folder):
    for f in files:
      if f.endswith('.py'):
        yield os.path.join(root, f)


def _is_model_field(node) -> bool:
  """`x.model` or `x['model']`: where a config or record names its model."""
  if isinstance(node, ast.Attribute):
    return node.attr == 'model'
  return (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
          and node.slice.value == 'model')


def test_no_module_outside_a_models_definition_branches_on_a_model_name():
  """A model's name and its own config fields appear only in its definition (models.py, and the
  weight reader it uses) and in configs/: no `config.model == 'x'`, no `.backbone`, no
  'backbone' key elsewhere, so a model is added in one place."""
  from fmnist_jax import models  # pylint: disable=g-import-not-at-top
  own_fields = {path.split('.')[0] for paths in models.CONFIG_FIELDS.values()
                for path in paths.values()}
  root = os.path.dirname(PACKAGE)
  found = []
  for folder in (PACKAGE, os.path.join(root, 'experiments')):
    for path in _python_files(folder):
      if os.path.basename(path) in ('models.py', 'pretrained.py'):
        continue
      for node in ast.walk(ast.parse(open(path).read())):
        sides = [node.left, *node.comparators] if isinstance(node, ast.Compare) else []
        names_a_model = any(isinstance(c, ast.Constant) and c.value in models.MODELS
                            for c in sides) and any(_is_model_field(c) for c in sides)
        field = ((isinstance(node, ast.Attribute) and node.attr in own_fields)
                 or (isinstance(node, ast.Constant) and node.value in own_fields))
        if names_a_model or field:
          found.append(f'{os.path.relpath(path, root)}:{node.lineno}')
  assert not found, found
