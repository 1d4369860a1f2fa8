"""experiments/'s shape: scripts on top, shared code in experiments.lib, imports one way.

Read from the source (AST), nothing imported: a study may train or time things at import.
"""
import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = os.path.join(ROOT, 'experiments')


def _modules() -> dict[str, str]:
  """'experiments.<...>' -> its file, for every module under experiments/ (results/ has none)."""
  found = {}
  for folder, dirs, names in os.walk(EXPERIMENTS):
    dirs[:] = [d for d in dirs if d not in ('results', '__pycache__')]
    for name in names:
      if name.endswith('.py'):
        path = os.path.join(folder, name)
        parts = os.path.relpath(path, ROOT)[:-len('.py')].split(os.sep)
        found['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
  return found


SCRIPTS = sorted(m for m, p in _modules().items()
                 if os.path.dirname(p) == EXPERIMENTS and not p.endswith('__init__.py'))


def _imports(path: str, modules) -> set[str]:
  """experiments modules imported anywhere in the file (lazy imports inside functions too)."""
  found = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      for alias in node.names:
        full = f'{node.module}.{alias.name}'
        found.add(full if full in modules else node.module)
    elif isinstance(node, ast.Import):
      found |= {a.name for a in node.names}
  return {m for m in found if m in modules}


def test_the_layout_is_scripts_lib_and_studies():
  assert SCRIPTS == ['experiments.compare_architectures', 'experiments.reproduce_tables',
                     'experiments.sweep', 'experiments.time_to_accuracy',
                     'experiments.update_readme_table']
  modules = _modules()
  assert {'experiments.lib.common', 'experiments.lib.distribute', 'experiments.lib.runs',
          'experiments.lib.early_stopping'} <= set(modules)
  assert any(m.startswith('experiments.studies.') for m in modules)


# No import cycle among these modules (or with fmnist_jax's): tests/test_layout.py checks both
# packages in one graph.


def test_no_script_imports_another_script():
  modules = _modules()
  wrong = {m: sorted(_imports(p, modules) & set(SCRIPTS)) for m, p in modules.items()}
  assert not {m: s for m, s in wrong.items() if s}, 'import experiments.lib instead'


def test_no_sys_path_manipulation_in_experiments():
  edits = []
  for name, path in _modules().items():
    for node in ast.walk(ast.parse(open(path).read())):
      if (isinstance(node, ast.Attribute) and node.attr == 'path'
          and isinstance(node.value, ast.Name) and node.value.id == 'sys'):
        edits.append(f'{name}: line {node.lineno}')
  assert not edits, edits


def test_what_a_ray_worker_imports_before_pinning_its_cores_has_no_jax():
  """A worker unpickles its task (distribute._run_task, early_stopping._trial) by importing its
  module, then pins its cores, then imports JAX: those modules must not import JAX themselves."""
  code = ('import sys; from experiments.lib import distribute, early_stopping; '
          'print(sorted(m for m in sys.modules if m.split(".")[0] in ("jax", "jaxlib", "flax")))')
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                       check=True, timeout=120)
  assert out.stdout.strip() == '[]', out.stdout
