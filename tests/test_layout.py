"""The package's shape: data flows one way (no import cycle) and functions stay short."""
import ast
import os

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'fmnist_jax')
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


def test_no_import_cycle_inside_the_package():
  modules = _modules()
  graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
  assert graph['train'] and 'train' not in graph['evaluate']  # the check sees real edges
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
