"""Peak memory of a command and every process it starts: the whole process tree, summed.

  python benchmarks/process_tree_rss.py [--interval=0.05] -- COMMAND ARGS...

Samples VmRSS of the command and all its descendants (found through /proc) every
`interval` seconds and prints one JSON line: the peak of the sum over the tree, the peak
of the command's own process, the largest number of processes seen at once, the exit
status and the seconds it ran. getrusage's ru_maxrss cannot say this: it is one process's
peak. Linux only. Used for the dataset preparation in a child process (README, "Your own
images"): the trainer's process against the tree with the preparing child.
"""

import argparse
import json
import os
import subprocess
import sys
import time


def _children() -> dict[int, list[int]]:
  tree = {}
  for name in os.listdir('/proc'):
    if not name.isdigit():
      continue
    try:
      with open(f'/proc/{name}/stat') as f:
        ppid = int(f.read().rsplit(')', 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
      continue
    tree.setdefault(ppid, []).append(int(name))
  return tree


def _rss_mb(pid: int) -> float:
  try:
    with open(f'/proc/{pid}/status') as f:
      for line in f:
        if line.startswith('VmRSS:'):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  return 0.0


def _tree(root: int) -> list[int]:
  children, out, todo = _children(), [], [root]
  while todo:
    pid = todo.pop()
    out.append(pid)
    todo.extend(children.get(pid, []))
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--interval', type=float, default=0.05)
  parser.add_argument('command', nargs=argparse.REMAINDER)
  args = parser.parse_args(argv)
  command = args.command[1:] if args.command[:1] == ['--'] else args.command
  start = time.monotonic()
  process = subprocess.Popen(command)
  peak_tree = peak_root = 0.0
  most = 0
  while process.poll() is None:
    pids = _tree(process.pid)
    total = sum(_rss_mb(p) for p in pids)
    peak_tree, most = max(peak_tree, total), max(most, len(pids))
    peak_root = max(peak_root, _rss_mb(process.pid))
    time.sleep(args.interval)
  print(json.dumps({'peak_tree_rss_mb': round(peak_tree), 'peak_command_rss_mb': round(peak_root),
                    'most_processes': most, 'exit_status': process.returncode,
                    'seconds': round(time.monotonic() - start, 1)}), flush=True)
  return process.returncode


if __name__ == '__main__':
  sys.exit(main())
