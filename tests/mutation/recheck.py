"""Re-runs a session's surviving mutants against the current tests; prints those still alive.

    python tests/mutation/recheck.py tests/mutation/similarity.toml .mutation/similarity.sqlite

After tests are added for the survivors of ``run.sh``, this checks each survivor again (seconds
per mutant) instead of re-running the whole module. Each mutant is written into the source file,
its test command run, and the file restored with ``git checkout``.
"""

import json
import shlex
import subprocess
import sys
import tomllib


def main(config_path: str, session: str) -> None:
    with open(config_path, "rb") as f:
        config = tomllib.load(f)["cosmic-ray"]
    dump = subprocess.run(["cosmic-ray", "dump", session], check=True, capture_output=True, text=True).stdout
    survivors = []
    for line in dump.splitlines():
        item, result = json.loads(line)
        if result and result["worker_outcome"] == "normal" and result["test_outcome"] == "survived":
            survivors.append(item["mutations"][0])
    alive = 0
    for mutation in survivors:
        path = mutation["module_path"]
        subprocess.run(["cosmic-ray", "apply", path, mutation["operator_name"], str(mutation["occurrence"])], check=True)
        try:
            tests = subprocess.run(shlex.split(config["test-command"]), capture_output=True, timeout=config["timeout"])
            killed = tests.returncode != 0
        finally:
            subprocess.run(["git", "checkout", "--", path], check=True)
        where = f"{path}:{mutation['start_pos'][0]} {mutation['operator_name']} #{mutation['occurrence']}"
        print(("killed    " if killed else "SURVIVED  ") + where, flush=True)
        alive += not killed
    print(f"{alive} of {len(survivors)} former survivors still survive")


if __name__ == "__main__":
    main(*sys.argv[1:])
