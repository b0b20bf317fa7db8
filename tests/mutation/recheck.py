"""Re-runs listed surviving mutants against today's tests; says which are killed, explained, alive.

    python tests/mutation/recheck.py tests/mutation/noise.toml tests/mutation/survivors-2026-11-24/noise.txt
    python tests/mutation/recheck.py tests/mutation/noise.toml SURVIVORS --lines 57,61

After tests are added for the survivors of ``run.sh``, this checks each survivor again (seconds
per mutant) instead of re-running the whole module. Each mutant is written into the source file
with ``cosmic-ray apply``, compared with the diff recorded in the listing (a mismatch means the
source changed since the run: re-run ``run.sh``), its test command run, and the file restored with
``git checkout``. A mutant that still survives is "equivalent" when
``tests/mutation/equivalent/<module>.txt`` explains it, and "UNEXPLAINED" otherwise; the exit
status is 1 while any mutant is unexplained or moved.
"""

import argparse
import pathlib
import shlex
import subprocess
import sys
import tomllib

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import survivors as survivors_lib  # noqa: E402

EQUIVALENT_DIR = pathlib.Path(__file__).parent / "equivalent"


def equivalents(config_path: str) -> dict:
    path = EQUIVALENT_DIR / (pathlib.Path(config_path).stem + ".txt")
    if not path.exists():
        return {}
    return {s.key: s for s in survivors_lib.read(path.read_text())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", help="tests/mutation/<module>.toml")
    parser.add_argument("listing", help="a survivors listing written by survivors.py")
    parser.add_argument("--lines", help="only the mutants on these source lines, e.g. 57,61")
    args = parser.parse_args()
    with open(args.config, "rb") as f:
        config = tomllib.load(f)["cosmic-ray"]
    listed = survivors_lib.read(pathlib.Path(args.listing).read_text())
    if args.lines:
        wanted = {int(n) for n in args.lines.split(",")}
        listed = [s for s in listed if s.line in wanted]
    explained = equivalents(args.config)
    counts = {"killed": 0, "equivalent": 0, "UNEXPLAINED": 0, "MOVED": 0}
    for survivor in listed:
        subprocess.run(["cosmic-ray", "apply", survivor.path, survivor.operator, str(survivor.occurrence)], check=True)
        try:
            applied = survivors_lib.changed_lines(
                subprocess.run(["git", "diff", "-U0", "--", survivor.path], check=True, capture_output=True,
                               text=True).stdout)
            if [l.split() for l in applied] != [l.split() for l in survivor.diff]:
                verdict = "MOVED"
            else:
                tests = subprocess.run(shlex.split(config["test-command"]), capture_output=True,
                                       timeout=config["timeout"])
                verdict = ("killed" if tests.returncode != 0
                           else "equivalent" if survivor.key in explained else "UNEXPLAINED")
        finally:
            subprocess.run(["git", "checkout", "--", survivor.path], check=True)
        counts[verdict] += 1
        print(f"{verdict:<12}{survivor}", flush=True)
    print(", ".join(f"{n} {k}" for k, n in counts.items()) + f" of {len(listed)} listed survivors")
    return 1 if counts["UNEXPLAINED"] or counts["MOVED"] else 0


if __name__ == "__main__":
    sys.exit(main())
