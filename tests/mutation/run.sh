#!/usr/bin/env bash
# Mutation testing with cosmic-ray over the modules where a silent numeric bug corrupts results.
# Outside CI (tens of minutes per module on 2 cores); see tests/MUTATION.md.
#
#   bash tests/mutation/run.sh                 # every module, in a clean checkout
#   bash tests/mutation/run.sh similarity noise
#
# cosmic-ray writes each mutant into the source file while its tests run: use a checkout that
# nothing else imports from (a killed run can leave a mutant behind: `git checkout neuroreg_tf`).
# Sessions are kept in .mutation/<module>.sqlite, so an interrupted run continues where it stopped;
# the survivors are listed in .mutation/<module>.survivors.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/.venv/bin:$PATH"
python -c "import cosmic_ray" 2>/dev/null || pip install -q "cosmic-ray==8.7.0"
if ! git diff --quiet -- neuroreg_tf; then
  echo "neuroreg_tf/ has uncommitted changes (a mutant left by a killed run?); commit or 'git checkout neuroreg_tf' first." >&2
  exit 2
fi
modules=("$@")
[ ${#modules[@]} -gt 0 ] || modules=(similarity statistics targets noise scoring search regularized study_statistics workdir streaming)
mkdir -p .mutation
for module in "${modules[@]}"; do
  config="tests/mutation/$module.toml"
  session=".mutation/$module.sqlite"
  [ -f "$config" ] || { echo "unknown module '$module': tests/mutation/ has no $module.toml" >&2; exit 2; }
  if [ ! -f "$session" ]; then
    cosmic-ray init "$config" "$session"
    cr-filter-operators "$session" "$config"
    cr-filter-pragma "$session"
  fi
  echo "== $module: $(date -u +%H:%M:%S) =="
  cosmic-ray exec "$config" "$session"
  python tests/mutation/survivors.py "$session" | tee ".mutation/$module.survivors.txt"
done
