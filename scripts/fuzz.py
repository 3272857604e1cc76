"""Long, coverage-guided fuzzing of Theater's input parsers and codecs (atheris, libFuzzer).

    python scripts/fuzz.py --minutes 10                   # every target, 10 minutes each
    python scripts/fuzz.py --minutes 2 --target codec     # one target
    python scripts/fuzz.py --list

The targets are those of tests/fuzz_targets.py (the suite runs them briefly, with hypothesis).
Each runs in a process of its own under libFuzzer, its working corpus in a temporary folder
seeded from tests/fuzz_corpus/<target>/; an input that makes a target fail (an exception it
does not promise, or a crash) is written to tests/fuzz_corpus/<target>/crash-<sha1>, where
tests/test_fuzz.py runs it from then on: fix the bug, keep the file. Prints, per target, the
executions, the coverage (libFuzzer's edges, ``cov``, and features, ``ft``) and any crash.
Needs ``pip install atheris``.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "fuzz_corpus"
TARGETS = ("protocol", "manifest", "codec", "export", "http_response")


def child(target: str, argv: list[str]) -> None:
    """Runs inside the fuzzing process: instruments Theater's modules, then hands over to libFuzzer."""
    import atheris

    sys.path.insert(0, str(ROOT))
    with atheris.instrument_imports(include=["theater", "worker", "tests.fuzz_targets"]):
        from tests import fuzz_targets
    fn, expected = fuzz_targets.TARGETS[target], fuzz_targets.EXPECTED

    def one(data: bytes) -> None:
        with contextlib.suppress(*expected):
            fn(data)

    atheris.Setup([sys.argv[0], *argv], one)
    atheris.Fuzz()


def run(target: str, seconds: int) -> dict[str, object]:
    seeds = CORPUS / target
    seeds.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"fuzz-{target}-"))
    try:
        for f in seeds.iterdir():
            if f.is_file():
                shutil.copy(f, work / f.name)
        argv = [str(work), f"-max_total_time={seconds}", f"-artifact_prefix={seeds}/", "-print_final_stats=1",
                "-max_len=4096", "-timeout=20", "-rss_limit_mb=2048"]
        p = subprocess.run([sys.executable, __file__, "--child", target, *argv], capture_output=True, text=True,
                           cwd=ROOT)
        log = p.stderr
        done = re.findall(r"#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+)", log) or re.findall(
            r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+)", log)
        execs, cov, ft = (int(x) for x in done[-1]) if done else (0, 0, 0)
        crashes = re.findall(r"Test unit written to (\S+)", log)
        return {"target": target, "seconds": seconds, "executions": execs, "cov": cov, "ft": ft,
                "corpus": len(list(work.iterdir())), "crashes": crashes, "status": p.returncode,
                "tail": "" if p.returncode == 0 else "\n".join(log.splitlines()[-25:])}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=1.0, help="per target (default %(default)s)")
    ap.add_argument("--target", action="append", choices=TARGETS, help="only this target (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the targets")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args, rest = ap.parse_known_args()
    if args.child:
        child(args.child, rest)
        return 0
    if args.list:
        print("\n".join(TARGETS))
        return 0
    if args.minutes <= 0:
        print("fuzz.py: --minutes must be above 0", file=sys.stderr)
        return 2
    failed = False
    print(f"{'target':<15}{'executions':>12}{'exec/s':>9}{'cov':>7}{'ft':>7}{'corpus':>8}  result")
    for target in args.target or TARGETS:
        r = run(target, max(1, round(args.minutes * 60)))
        rate = int(r["executions"]) / int(r["seconds"])
        verdict = "ok" if r["status"] == 0 else f"FAILED ({', '.join(r['crashes']) or 'see below'})"
        print(f"{target:<15}{r['executions']:>12}{rate:>9.0f}{r['cov']:>7}{r['ft']:>7}{r['corpus']:>8}  {verdict}",
              flush=True)
        if r["status"] != 0:
            failed = True
            print(r["tail"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
