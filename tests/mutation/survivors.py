"""Surviving mutants: summarised from a cosmic-ray session, and read back from such a summary.

    python tests/mutation/survivors.py .mutation/similarity.sqlite > survivors/similarity.txt

The summary gives the counts, then each surviving mutant as ``SURVIVED file:line operator
#occurrence`` followed by its diff's removed and added lines. ``recheck.py`` reads it back.
"""

import collections
import dataclasses
import json
import re
import subprocess
import sys

HEADER = re.compile(r"^(?:SURVIVED )?(?P<path>\S+):(?P<line>\d+) (?P<operator>\S+) #(?P<occurrence>\d+)$")


@dataclasses.dataclass(frozen=True)
class Survivor:
    path: str
    line: int
    operator: str
    occurrence: int
    diff: tuple[str, ...] = ()  # the mutant's removed ("-") and added ("+") lines

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.path, self.operator, self.occurrence)

    def __str__(self) -> str:
        return f"{self.path}:{self.line} {self.operator} #{self.occurrence}"


def changed_lines(diff: str) -> tuple[str, ...]:
    return tuple(l for l in diff.splitlines() if l.startswith(("+", "-")) and not l.startswith(("+++", "---")))


def read(text: str) -> list[Survivor]:
    """The survivors of a summary (or of an equivalence list: headers without ``SURVIVED``)."""
    survivors, current, diff = [], None, []
    for raw in text.splitlines() + [""]:
        match = HEADER.match(raw)
        if match or not raw.strip():
            if current:
                survivors.append(dataclasses.replace(current, diff=tuple(diff)))
            current, diff = None, []
            if match:
                current = Survivor(match["path"], int(match["line"]), match["operator"], int(match["occurrence"]))
        elif current and raw.startswith(("+", "-")):
            diff.append(raw)
    return survivors


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
            mutation = item["mutations"][0]
            survivors.append(Survivor(mutation["module_path"], mutation["start_pos"][0], mutation["operator_name"],
                                      mutation["occurrence"], changed_lines(result.get("diff", ""))))
    ran = counts["killed"] + counts["survived"]
    score = f"{counts['killed'] / ran:.1%}" if ran else "n/a"
    print(f"{session}: {dict(sorted(counts.items()))}; killed {counts['killed']}/{ran} = {score}")
    for survivor in survivors:
        print(f"\nSURVIVED {survivor}")
        print("\n".join(survivor.diff))


if __name__ == "__main__":
    main(sys.argv[1])
