"""Run the kill -9 crash campaign from the command line and summarise it.

Example::

    python tests/stress_crash.py --trials 2000 --dir /tmp/journal-stress

Each trial starts writer processes on a journal, kills them with SIGKILL at random
moments and checks that every acknowledged event survived, exactly once and
unchanged, that seqs have no gaps, that verify() is clean and that appends
continue. Exits with status 1 when any trial finds a violation, 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import faultkit


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--trials", type=int, default=2000, help="number of trials (default: 2000)"
    )
    parser.add_argument(
        "--dir",
        default=None,
        help="directory for the journals (default: a new temporary one)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--modes",
        default="fsync,flush,batch",
        help="durability modes of the writers, comma-separated "
        "(default: fsync,flush,batch)",
    )
    parser.add_argument(
        "--max-writers",
        type=int,
        default=3,
        help="most writer processes per trial (default: 3)",
    )
    parser.add_argument(
        "--trials-per-journal",
        type=int,
        default=20,
        help="trials that reuse one journal before a new one starts (default: 20)",
    )
    parser.add_argument(
        "--segment-max-bytes",
        type=int,
        default=16384,
        help="segment size that triggers a roll, in bytes (default: 16384)",
    )
    parser.add_argument(
        "--exec",
        dest="use_exec",
        action="store_true",
        help="start writers as new interpreters instead of forks (slower; "
        "kills also land during import and open)",
    )
    parser.add_argument(
        "--max-violations",
        type=int,
        default=50,
        help="stop after this many violations (default: 50)",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    base = (
        Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="journal-stress-"))
    )
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    reported = 0

    def progress(trial: int, result: faultkit.CampaignResult) -> None:
        nonlocal reported
        if args.quiet:
            return
        for violation in result.violations[reported:]:
            print(f"VIOLATION {violation}", flush=True)
        reported = len(result.violations)
        if (trial + 1) % 100 == 0:
            print(f"after trial {trial + 1}: {result.summary()}", flush=True)

    result = faultkit.run_campaign(
        base,
        args.trials,
        modes=modes,
        writers=(1, args.max_writers),
        trials_per_journal=args.trials_per_journal,
        run_time=(0.1, 0.4) if args.use_exec else (0.03, 0.25),
        use_exec=args.use_exec,
        segment_max_bytes=args.segment_max_bytes,
        seed=args.seed,
        max_violations=args.max_violations,
        progress=progress,
    )
    print(f"journals in {base}")
    print(result.summary())
    return 1 if result.violations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
