"""What the command-line scripts share: configs by path or name, checks, errors, quiet TensorFlow.

A script looks like this::

    from neuroreg_tf import cli

    cli.quiet_tensorflow()                       # before TensorFlow is imported
    ...
    CONFIG = cli.define_config("demo.py")        # --config=FILE[:variant], --config.<key>=value
    WORKDIR = cli.define_workdir()

    def main(argv): ...

    if __name__ == "__main__":
        cli.run(main, check=trainer.check_config)

``define_config`` resolves the config file from any working directory (as given, else relative
to the repository), loads it and checks the variant and every ``--config.<key>`` override before
ml_collections sees them, so a typo is a one-line error with the accepted values, and ``--help``
lists the config's fields. ``run`` checks the final config, runs ``main``, and prints the
project's own errors (``neuroreg_tf.errors``: bad config, bad input, missing data, another run
in the workdir) as a short message with exit status 2; ``--debug`` shows their traceback. Any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import pathlib
import sys
from typing import Callable

from neuroreg_tf import plugins
from neuroreg_tf.quiet import quiet_tensorflow

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIGS_DIR = REPO_ROOT / "configs"
EXIT_USER_ERROR = 2

__all__ = ["define_config", "define_workdir", "fail", "load_config", "quiet_tensorflow", "run"]


def quiet_absl_info() -> None:
    """Shows absl/TensorFlow Python logs from WARNING up, unless --verbosity was given."""
    from absl import flags, logging

    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def fail(message: str) -> None:
    """Prints ``<script>: error: <message>`` to standard error and exits with status 2."""
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "neuroreg_tf"
    print(f"{script}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_USER_ERROR)


def resolve_config_path(spec: str) -> tuple[str, str | None]:
    """``"configs/demo.py:runlocal"`` -> (absolute path, "runlocal").

    The file is looked up as given (relative to the working directory), then relative to the
    repository root, then in ``configs/`` by name.
    """
    path, arg = spec, None
    head, _, tail = spec.rpartition(":")
    if head and tail and "/" not in tail and os.sep not in tail:
        path, arg = head, tail
    for candidate in (pathlib.Path(path), REPO_ROOT / path, CONFIGS_DIR / path):
        if candidate.is_file():
            return str(candidate.resolve()), arg
    from neuroreg_tf.errors import MissingDataError

    known = ", ".join(sorted(p.name for p in CONFIGS_DIR.glob("*.py")))
    raise MissingDataError(
        f"No config file {path!r} (looked in {os.getcwd()}, {REPO_ROOT} and {CONFIGS_DIR}). "
        f"The configs are: {known}. Received: --config={spec}"
    )


def _module(path: str):
    spec = importlib.util.spec_from_file_location(f"neuroreg_config_{pathlib.Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load(path: str, arg: str | None):
    return _module(path).get_config(arg or None)


def load_config(name: str, arg: str | None = None):
    """``get_config(arg)`` of ``configs/<name>``, e.g. ``load_config("build_target.py", "demo")``."""
    return _load(str(CONFIGS_DIR / name), arg)


def config_fields(config, prefix: str = "") -> list[tuple[str, object]]:
    """Every leaf field of a ConfigDict as (dotted key, value), in definition order."""
    fields = []
    for key, value in config.items():
        if hasattr(value, "items") and not isinstance(value, dict):
            fields += config_fields(value, f"{prefix}{key}.")
        else:
            fields.append((f"{prefix}{key}", value))
    return fields


def _check_override(config, key: str, config_spec: str, renamed: dict | None = None) -> None:
    """Raises ``ConfigError`` unless ``key`` (dotted, below ``config``) names an existing field.

    ``renamed``: the config file's ``RENAMED`` (old dotted key -> new), so an old spelling is
    refused with its new name.
    """
    from neuroreg_tf.errors import ConfigError

    for old, new in (renamed or {}).items():
        if key == old or key.startswith(old + "."):
            raise ConfigError(
                f"config.{old} is now config.{new} ({config_spec}): use --config.{new + key[len(old):]}. "
                f"Received: --config.{key}"
            )
    section, walked = config, []
    for part in key.split("."):
        known = list(section.keys()) if hasattr(section, "keys") else []
        if part not in known:
            where = "config" + "".join(f".{w}" for w in walked)
            close = difflib.get_close_matches(part, known, n=1)
            hint = f" Did you mean --{where}.{close[0]}?" if close else ""
            raise ConfigError(
                f"{where} has no field {part!r} ({config_spec}).{hint} Its fields: "
                f"{', '.join(known)}. Received: --config.{key}"
            )
        section = section[part]
        walked.append(part)


def _argv_config_spec(argv: list[str]) -> tuple[int | None, str | None]:
    for index, argument in enumerate(argv):
        if argument.startswith("--config="):
            return index, argument[len("--config="):]
        if argument == "--config" and index + 1 < len(argv):
            return index, argv[index + 1]
    return None, None


def define_config(default: str, help_text: str = "Config file", renamed_flags: dict[str, str] | None = None):
    """Defines ``--config`` (a config file, optionally ``FILE:variant``) after checking sys.argv.

    The config is loaded and the variant and every ``--config.<key>`` override are checked here,
    at definition (ml_collections applies overrides while it defines the flag), so a mistake is a
    one-line error instead of a traceback.

    Args:
        default: the default config, a file name in ``configs/`` (``"demo.py"``).
        help_text: the flag's help; the default config's fields are appended.
        renamed_flags: flags the script had before (``"--adversarial"``) -> what replaces them;
            given one, the script stops with a one-line error naming the replacement.

    Returns:
        The flag holder (``.value`` is the ConfigDict with overrides applied).
    """
    from absl import flags
    from ml_collections import config_flags

    from neuroreg_tf.errors import NeuroregError

    for old, new in (renamed_flags or {}).items():
        if any(a == old or a.startswith(old + "=") for a in sys.argv[1:]):
            fail(f"{old} is now {new}. Received: {old}")
    index, spec = _argv_config_spec(sys.argv)
    spec = spec or str(CONFIGS_DIR / default)
    try:
        plugins.load()  # kinds, losses, formats and conditions of your own, before any config
        path, arg = resolve_config_path(spec)
        module = _module(path)
        config = module.get_config(arg or None)
        for argument in sys.argv[1:]:
            if argument.startswith("--config."):
                _check_override(config, argument[len("--config."):].split("=", 1)[0], spec,
                                getattr(module, "RENAMED", None))
    except NeuroregError as error:
        fail(str(error))
    except ValueError as error:  # a config file's own argument check
        fail(f"{spec}: {error}")
    resolved = path + (f":{arg}" if arg else "")
    if index is not None:  # ml_collections wants --config=FILE before any --config.<key>
        del sys.argv[index:index + (2 if sys.argv[index] == "--config" else 1)]
        overrides = [i for i, a in enumerate(sys.argv) if a.startswith("--config.")]
        sys.argv.insert(overrides[0] if overrides else len(sys.argv), f"--config={resolved}")
    defaults = _load(str(CONFIGS_DIR / default), None)
    listed = "\n".join(f"  --config.{key}={value!r}" for key, value in config_fields(defaults))
    main = sys.modules.get("__main__")
    if main is not None and main.__doc__ is not None:  # --help shows the script's docstring
        main.__doc__ += (
            f"\nConfig fields of configs/{default} (any --config=FILE[:variant] has its own; "
            f"override each with --config.<field>=value):\n{listed}\n"
        )
    flags.DEFINE_bool("debug", False, "Show the traceback of the project's own errors too.")
    holder = config_flags.DEFINE_config_file(
        "config", str(CONFIGS_DIR / default),
        f"{help_text}, FILE[:variant] (default configs/{default}).", lock_config=True,
    )
    for name in ("config", "debug"):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])
    return holder


def define_workdir(required: bool = True, default: str | None = None):
    """Defines ``--workdir``."""
    from absl import flags

    holder = flags.DEFINE_string("workdir", default, "Directory for everything the script writes.")
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS["workdir"])
    if required:
        flags.mark_flag_as_required("workdir")
    return holder


def run(main: Callable, check: Callable | None = None) -> None:
    """``absl.app.run(main)``, with the config checked first and the project's errors short.

    Args:
        main: the script's ``main(argv)``.
        check: ``check(config)`` raising ``ConfigError`` for a config that cannot work; run
            before ``main``, so nothing starts on a bad config.
    """
    from absl import app, flags

    from neuroreg_tf.errors import NeuroregError

    def checked_main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
        quiet_absl_info()
        try:
            if check is not None:
                check(flags.FLAGS.config)
            return main(argv)
        except NeuroregError as error:
            if flags.FLAGS.debug:
                raise
            fail(f"{error}\n(run again with --debug to see where it was raised)")

    app.run(checked_main)
