"""Summarises a cosmic-ray session: counts, then each surviving mutant as file:line, operator, diff.

    python tests/mutation/survivors.py .mutation/similarity.sqlite
"""

import collections
import json
import subprocess
import sys


def main(session: str) -> None:
    dump = subprocess.run(["cosmic-ray", "dump", session], check=True, capture_output=True, text=True).stdout
    counts = collections.Counter()
    survivors = []
    for line in dump.splitlines():
        item, result = json.loads(line)
        if result is None:
            counts["pending"] += 1
            continue
        outcome = result["test_outcome"] if result["worker_outcome"] == "normal" else result["worker_outcome"]
        counts[outcome] += 1
        if outcome == "survived":
            survivors.append((item["mutations"][0], result.get("diff", "")))
    ran = counts["killed"] + counts["survived"]
    score = f"{counts['killed'] / ran:.1%}" if ran else "n/a"
    print(f"{session}: {dict(sorted(counts.items()))}; killed {counts['killed']}/{ran} = {score}")
    for mutation, diff in survivors:
        line = mutation["start_pos"][0]
        print(f"\nSURVIVED {mutation['module_path']}:{line} {mutation['operator_name']} #{mutation['occurrence']}")
        print("\n".join(l for l in diff.splitlines() if l.startswith(("+", "-")) and not l.startswith(("+++", "---"))))


if __name__ == "__main__":
    main(sys.argv[1])
