"""The package's import layering: data flows one way, no module reaches up the chain.

Layers, lowest first; a module may import its own component and any component of a lower layer,
never a higher layer or a sibling of its own layer (neural, training and robustness are
independent steps of the recordings -> target -> training -> saved model -> evaluation chain):

    0  errors
    1  fileio, progress, determinism, quiet, similarity, plugins
    2  workdir, config
    3  data
    4  targets
    5  models                 (the registered NeuralRegularizedModel lives here)
    6  neural | training | robustness
    7  study
    8  cli                    (script helpers, imported by the scripts only)
"""

from __future__ import annotations

import ast
import pathlib

from conftest import REPO_ROOT

PACKAGE = pathlib.Path(REPO_ROOT) / "neuroreg_tf"
LAYERS = [
    {"errors", "__init__"},
    {"fileio", "progress", "determinism", "quiet", "similarity", "plugins"},
    {"workdir", "config"},
    {"data"},
    {"targets"},
    {"models"},
    {"neural", "training", "robustness"},
    {"study"},
    {"cli"},
]
LAYER_OF = {component: index for index, layer in enumerate(LAYERS) for component in layer}


def component(module: str) -> str:
    """``neuroreg_tf.neural.simulation`` -> ``neural``; ``neuroreg_tf`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, module) of every neuroreg_tf import in ``path``, function-level ones included."""
    module = "neuroreg_tf." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            if name == "neuroreg_tf":  # from neuroreg_tf import data, targets (modules only)
                found += [
                    (node.lineno, f"neuroreg_tf.{alias.name}")
                    for alias in node.names
                    if (PACKAGE / alias.name).is_dir() or (PACKAGE / f"{alias.name}.py").is_file()
                ]
    return [(line, name) for line, name in found if name.startswith("neuroreg_tf.")]


def test_every_component_has_a_layer():
    components = {
        (p.stem if p.parent == PACKAGE else p.relative_to(PACKAGE).parts[0])
        for p in PACKAGE.rglob("*.py")
    }
    assert components <= set(LAYER_OF), f"add to LAYERS: {sorted(components - set(LAYER_OF))}"


def test_no_module_imports_upward_or_sideways():
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = path.stem if path.parent == PACKAGE else path.relative_to(PACKAGE).parts[0]
        for line, name in imported_modules(path):
            other = component(name)
            if other == own or other == "__init__":
                continue
            if LAYER_OF[other] >= LAYER_OF[own]:
                violations.append(f"{path.relative_to(REPO_ROOT)}:{line} imports {name} "
                                  f"({other}, layer {LAYER_OF[other]}; {own} is layer {LAYER_OF[own]})")
    assert not violations, "upward or sideways imports:\n" + "\n".join(violations)


def test_the_checker_sees_a_planted_upward_import():
    planted = PACKAGE / "training" / "_planted_for_test.py"
    planted.write_text("def f():\n    from neuroreg_tf.neural import simulation\n")
    try:
        assert (2, "neuroreg_tf.neural") in imported_modules(planted)
        try:
            test_no_module_imports_upward_or_sideways()
        except AssertionError as error:
            assert "_planted_for_test.py:2 imports neuroreg_tf.neural" in str(error)
        else:
            raise AssertionError("the planted upward import was not reported")
    finally:
        planted.unlink()
